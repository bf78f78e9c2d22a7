"""The Gaussian policy of the search: sampling, log-density, reward normalisation, REINFORCE."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy import stats

from jaxloss import search
from jaxloss.search import policy as pol

# Jitted once per shape: op-by-op dispatch compiles every primitive separately, which costs
# seconds on the shared CI cores.
normalize = jax.jit(pol.normalize_rewards)


def test_samples_have_standard_deviation_sigma_not_variance():
  mu = jnp.array([0.5, -1.0, 2.0, 0.0], jnp.float32)
  thetas = pol.sample(jax.random.key(0), mu, 0.2, 20000)
  assert thetas.shape == (20000, 4) and thetas.dtype == jnp.float32
  std = np.std(np.asarray(thetas), axis=0)
  # The standard error of a sample standard deviation is sigma / sqrt(2n) = 0.001: 5 SE.
  np.testing.assert_allclose(std, 0.2, atol=0.005)
  np.testing.assert_allclose(np.mean(np.asarray(thetas), axis=0), mu,
                             atol=5 * 0.2 / math.sqrt(20000))


def test_log_prob_is_the_density_that_is_sampled_and_its_gradient_is_the_score():
  rng = np.random.default_rng(0)
  mu = rng.normal(size=(6,))
  theta = rng.normal(size=(5, 6))
  expected = stats.norm.logpdf(theta, loc=mu, scale=0.2).sum(axis=-1)
  np.testing.assert_allclose(pol.log_prob(jnp.asarray(theta), jnp.asarray(mu), 0.2), expected,
                             rtol=1e-12)
  grad = jax.vmap(jax.grad(pol.log_prob, argnums=1), (0, None, None))(theta, mu, 0.2)
  np.testing.assert_allclose(grad, pol.score(theta, mu, 0.2), rtol=1e-12)
  np.testing.assert_allclose(pol.score(theta, mu, 0.2), (theta - mu) / 0.04, rtol=1e-12)


def test_normalize_rewards_zero_mean_unit_variance():
  r = jnp.array([0.1, 0.5, 0.2, 0.9, 0.4])
  z = np.asarray(normalize(r))
  assert abs(z.mean()) < 1e-12 and abs(z.std() - 1) < 1e-12
  np.testing.assert_allclose(z, (r - r.mean()) / r.std(), rtol=1e-12)


def test_normalize_rewards_over_finite_copies_only():
  r = jnp.array([0.1, jnp.nan, 0.2, 0.9, jnp.inf, 0.4])
  z = np.asarray(normalize(r))
  finite = np.array([0.1, 0.2, 0.9, 0.4])
  np.testing.assert_allclose(z[[0, 2, 3, 5]], (finite - finite.mean()) / finite.std(), rtol=1e-12)
  # Diverged copies: never better than a finite one, at least one std below the mean.
  worst = min(-1.0, z[[0, 2, 3, 5]].min())
  np.testing.assert_allclose(z[[1, 4]], worst)
  # An explicit mask (e.g. non-finite parameters) excludes a finite reward too.
  valid = jnp.array([True, False, True, True, False, False])
  z = np.asarray(normalize(r, valid))
  kept = np.array([0.1, 0.2, 0.9])
  np.testing.assert_allclose(z[[0, 2, 3]], (kept - kept.mean()) / kept.std(), rtol=1e-12)
  assert np.all(z[[1, 4, 5]] == min(-1.0, z[[0, 2, 3]].min()))


def test_normalize_rewards_degenerate_cases():
  np.testing.assert_array_equal(normalize(jnp.full((4,), 0.5)), 0.0)
  tied = normalize(jnp.array([0.5, 0.5, jnp.nan]))
  np.testing.assert_array_equal(tied, [0.0, 0.0, -1.0])
  np.testing.assert_array_equal(normalize(jnp.full((3,), jnp.nan)), 0.0)
  g = jax.jit(jax.grad(lambda r: jnp.sum(pol.normalize_rewards(r) ** 2)))(
      jnp.array([0.1, 0.2, 0.4]))
  assert np.all(np.isfinite(g))


def test_reinforce_estimator_matches_analytic_gradient_of_expected_quadratic_reward():
  # R(theta) = -|theta - theta*|^2, theta ~ N(mu, sigma^2 I):
  # E[R] = -|mu - theta*|^2 - D sigma^2, so grad_mu E[R] = -2 (mu - theta*).
  d, n, sigma = 6, 20000, 0.2
  rng = np.random.default_rng(1)
  mu = jnp.asarray(rng.uniform(-1, 1, d))
  target = jnp.asarray(rng.uniform(-1, 1, d))
  thetas = pol.sample(jax.random.key(3), mu, sigma, n)
  rewards = -jnp.sum((thetas - target) ** 2, axis=-1)
  estimate = np.asarray(pol.reinforce_ascent(thetas, mu, rewards, sigma))
  analytic = np.asarray(-2 * (mu - target))
  # Per-coordinate standard error of the mean of the n i.i.d. per-sample terms.
  terms = np.asarray(rewards[:, None] * pol.score(thetas, mu, sigma))
  stderr = terms.std(axis=0, ddof=1) / math.sqrt(n)
  # The test has power: the standard error is small next to the gradient (a sigma-for-
  # variance mistake would scale the estimate by 1/sigma = 5).
  assert np.all(stderr < 0.1 * np.abs(analytic).max())
  # 4 standard errors per coordinate: a false alarm has probability < 6 * 6.3e-5 (CLT),
  # and the seed is fixed.
  assert np.all(np.abs(estimate - analytic) < 4 * stderr), (estimate, analytic, stderr)


def test_policy_gradient_is_the_negated_normalised_estimate():
  policy = search.GaussianPolicy(sigma=0.2, optimizer=optax.sgd(1.0))
  mu = jnp.array([0.3, -0.2, 0.0])
  thetas = policy.sample(jax.random.key(0), mu, 8)
  rewards = jnp.arange(8.0)
  z = normalize(rewards)
  expected = -jnp.mean(z[:, None] * (thetas - mu) / 0.04, axis=0)
  np.testing.assert_allclose(policy.gradient(thetas, mu, rewards), expected, rtol=1e-12)
  # A minimising optax step ascends the reward: mu moves towards high-reward samples.
  state = policy.init(mu)
  new = policy.update(state, thetas, rewards)
  np.testing.assert_allclose(new.mu, mu - expected, rtol=1e-12)
  assert float(jnp.dot(new.mu - mu, thetas[-1] - thetas[0])) > 0


def test_reinforce_with_adam_drives_mu_to_the_optimum():
  d, b = 6, 32
  target = jnp.asarray(np.random.default_rng(2).uniform(-1, 1, d), jnp.float32)
  policy = search.GaussianPolicy()  # sigma 0.2, adam(0.05): the paper's settings
  assert policy.sigma == 0.2

  @jax.jit
  def train(key):
    def step(state, k):
      thetas = policy.sample(k, state.mu, b)
      rewards = -jnp.sum((thetas - target) ** 2, axis=-1)
      return policy.update(state, thetas, rewards), None
    state, _ = jax.lax.scan(step, policy.init(jnp.zeros(d, jnp.float32)),
                            jax.random.split(key, 400))
    return state.mu

  mu = train(jax.random.key(0))
  assert mu.dtype == jnp.float32
  # From |mu0 - theta*| ~ 1.4 to Adam's noise floor: near the optimum the normalised
  # gradient's sign is noisy and Adam steps by about lr = 0.05 per coordinate, so mu
  # jitters around theta* by O(lr); allow 3 steps per coordinate.
  assert float(jnp.linalg.norm(target)) > 1.0
  assert float(jnp.max(jnp.abs(mu - target))) < 0.15, (mu, target)


def test_policy_validation():
  with pytest.raises(ValueError, match="sigma"):
    search.GaussianPolicy(sigma=-0.2)
  with pytest.raises(ValueError, match="optax"):
    search.GaussianPolicy(optimizer=0.05)


def test_ask_tell_is_the_sample_update_pair_and_normalises_once():
  policy = search.GaussianPolicy(sigma=0.2, optimizer=optax.adam(0.05))
  state = policy.init(jnp.array([0.3, -0.2, 0.0, 1.0], jnp.float32))
  key = jax.random.key(4)
  # Two compiled programs each time: equal up to float32 rounding (not asserted bitwise).
  close = lambda a, b: jax.tree.map(
      lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7), a, b)
  thetas = jax.jit(policy.ask, static_argnums=2)(key, state, 8)
  close(thetas, jax.jit(policy.sample, static_argnums=2)(key, state.mu, 8))
  rewards = jnp.array([0.1, 0.5, jnp.nan, 0.9, 0.4, 0.4, 0.2, 0.8], jnp.float32)
  valid = jnp.isfinite(rewards).at[5].set(False)
  told, info = jax.jit(policy.tell)(state, thetas, rewards, valid)
  updated = jax.jit(policy.update)(state, thetas, rewards, valid)
  close(told, updated)
  close(info["normalized_rewards"], normalize(rewards, valid))
  assert np.all(np.asarray(info["normalized_rewards"])[[2, 5]] <= -1)  # the worst
  np.testing.assert_array_equal(policy.mean(told), told.mu)
  assert isinstance(told, search.PolicyState) and told.mu.dtype == jnp.float32
  assert "sigma=0.2" in policy.spec() and "0x" not in policy.spec()
  assert hash(policy) == hash(search.GaussianPolicy(0.2, policy.optimizer))  # a cache key
