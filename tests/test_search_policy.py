"""The paper's Gaussian policy (``strategies.PAPER``, ``strategies.Gaussian``): sampling,
reward normalisation, the REINFORCE step on ``mu``."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy import stats

from jaxloss.search import resume, strategies

PAPER = strategies.PAPER

# Jitted once per shape: op-by-op dispatch compiles every primitive separately, which costs
# seconds on the shared CI cores.
normalize = jax.jit(strategies.normalize_rewards)
ask = jax.jit(lambda strategy, key, state, num: strategy.ask(key, state, num),
              static_argnums=(0, 3))
tell = jax.jit(lambda strategy, state, thetas, rewards, valid: strategy.tell(
    state, thetas, rewards, valid), static_argnums=0)


def test_paper_is_sigma_02_and_adam_005():
  assert PAPER == strategies.Gaussian() == strategies.Gaussian(sigma=0.2, optimizer="adam",
                                                               learning_rate=0.05)
  assert hash(PAPER) == hash(strategies.Gaussian())  # a cache key
  assert not (PAPER.antithetic or PAPER.mean_copy or PAPER.whiten) and PAPER.update_mean
  assert PAPER.fitness == "zscore" and PAPER.drift_guard == 0
  assert "0x" not in resume.describe(PAPER)


def test_samples_have_standard_deviation_sigma_not_variance():
  mu = jnp.array([0.5, -1.0, 2.0, 0.0], jnp.float32)
  thetas = ask(PAPER, jax.random.key(0), PAPER.init(mu), 20000)
  assert thetas.shape == (20000, 4) and thetas.dtype == jnp.float32
  std = np.std(np.asarray(thetas), axis=0)
  # The standard error of a sample standard deviation is sigma / sqrt(2n) = 0.001: 5 SE.
  np.testing.assert_allclose(std, 0.2, atol=0.005)
  np.testing.assert_allclose(np.mean(np.asarray(thetas), axis=0), mu,
                             atol=5 * 0.2 / math.sqrt(20000))
  # Independent samples: their correlations are at the noise level (1 / sqrt(n) ~ 0.007).
  corr = np.corrcoef(np.asarray(thetas), rowvar=False)
  assert np.abs(corr - np.eye(4)).max() < 0.03


def test_the_step_follows_the_gradient_of_the_log_density_that_is_sampled():
  """REINFORCE: ``ascent = (1/B) sum_i z_i grad_mu log N(theta_i; mu, sigma^2)``, and that
  gradient is ``(theta_i - mu) / sigma^2`` (the density of the samples, scipy's)."""
  rng = np.random.default_rng(0)
  mu = jnp.asarray(rng.normal(size=(6,)))
  state = PAPER.init(mu)
  thetas = PAPER.ask(jax.random.key(1), state, 5)
  log_density = lambda theta, m: jnp.sum(jax.scipy.stats.norm.logpdf(theta, m, 0.2))
  np.testing.assert_allclose(jax.vmap(log_density, (0, None))(thetas, mu),
                             stats.norm.logpdf(thetas, loc=mu, scale=0.2).sum(axis=-1),
                             rtol=1e-12)
  grad = jax.vmap(jax.grad(log_density, argnums=1), (0, None))(thetas, mu)
  np.testing.assert_allclose(grad, (thetas - mu) / 0.04, rtol=1e-12)
  rewards = jnp.asarray([0.1, 0.5, 0.2, 0.9, 0.4])
  _, info = PAPER.tell(state, thetas, rewards, jnp.ones(5, bool))
  z = normalize(rewards)
  np.testing.assert_allclose(info["ascent"], jnp.mean(z[:, None] * grad, axis=0), rtol=1e-10)


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
  g = jax.jit(jax.grad(lambda r: jnp.sum(strategies.normalize_rewards(r) ** 2)))(
      jnp.array([0.1, 0.2, 0.4]))
  assert np.all(np.isfinite(g))


def test_reinforce_estimator_matches_analytic_gradient_of_expected_quadratic_reward():
  # R(theta) = -|theta - theta*|^2, theta ~ N(mu, sigma^2 I):
  # E[R] = -|mu - theta*|^2 - D sigma^2, so grad_mu E[R] = -2 (mu - theta*). The paper's
  # step uses the z-scored rewards (R - mean) / std: its expectation is grad_mu E[R] / std(R)
  # (the mean is a baseline: it changes the variance, not the expectation, up to O(1/n)).
  # n = 2000: Gaussian.tell builds an (n, n) averaging matrix (3.2 GB at n = 20000).
  d, n, sigma = 6, 2000, 0.2
  rng = np.random.default_rng(1)
  mu = jnp.asarray(rng.uniform(-1, 1, d))
  target = jnp.asarray(rng.uniform(-1, 1, d))
  state = PAPER.init(mu)
  thetas = ask(PAPER, jax.random.key(3), state, n)
  rewards = -jnp.sum((thetas - target) ** 2, axis=-1)
  _, info = tell(PAPER, state, thetas, rewards, jnp.ones(n, bool))
  estimate = np.asarray(info["ascent"])
  analytic = np.asarray(-2 * (mu - target)) / float(jnp.std(rewards))
  # Per-coordinate standard error of the mean of the n per-sample terms.
  terms = np.asarray(info["normalized_rewards"][:, None] * (thetas - mu) / sigma ** 2)
  stderr = terms.std(axis=0, ddof=1) / math.sqrt(n)
  # The test has power: the standard error is small next to the gradient (a sigma-for-
  # variance mistake would scale the estimate by 1/sigma = 5).
  assert np.all(stderr < 0.1 * np.abs(analytic).max())
  # 4 standard errors per coordinate: a false alarm has probability < 6 * 6.3e-5 (CLT),
  # and the seed is fixed.
  assert np.all(np.abs(estimate - analytic) < 4 * stderr), (estimate, analytic, stderr)


def test_the_optimizer_gets_the_negated_normalised_estimate():
  gaussian = strategies.Gaussian(sigma=0.2, optimizer=optax.sgd(1.0))
  mu = jnp.array([0.3, -0.2, 0.0])
  state = gaussian.init(mu)
  thetas = gaussian.ask(jax.random.key(0), state, 8)
  rewards = jnp.arange(8.0)
  z = normalize(rewards)
  ascent = jnp.mean(z[:, None] * (thetas - mu) / 0.04, axis=0)
  # A minimising optax step on the gradient -ascent ascends the reward: with sgd(1),
  # mu + ascent, towards the high-reward samples.
  new, info = gaussian.tell(state, thetas, rewards, jnp.ones(8, bool))
  np.testing.assert_allclose(info["ascent"], ascent, rtol=1e-12)
  np.testing.assert_allclose(new.mu, mu + ascent, rtol=1e-12)
  assert float(jnp.dot(new.mu - mu, thetas[-1] - thetas[0])) > 0


def test_the_paper_step_is_one_adam_step_of_rate_005():
  mu = jnp.array([0.3, -0.2, 0.0, 1.0])
  state = PAPER.init(mu)
  thetas = PAPER.ask(jax.random.key(2), state, 8)
  rewards = jnp.asarray([0.1, 0.5, 0.3, 0.9, 0.4, 0.45, 0.2, 0.8])
  new, info = PAPER.tell(state, thetas, rewards, jnp.ones(8, bool))
  adam = optax.adam(0.05)
  updates, _ = adam.update(-info["ascent"], adam.init(mu), mu)
  np.testing.assert_allclose(new.mu, mu + updates, rtol=1e-12)
  # Adam's first step moves every coordinate by the learning rate, along the ascent.
  np.testing.assert_allclose(np.abs(new.mu - mu), 0.05, rtol=1e-6)
  np.testing.assert_array_equal(np.sign(new.mu - mu), np.sign(info["ascent"]))
  assert int(new.count) == 1


def test_reinforce_with_adam_drives_mu_to_the_optimum():
  d, b = 6, 32
  target = jnp.asarray(np.random.default_rng(2).uniform(-1, 1, d), jnp.float32)

  @jax.jit
  def train(key):
    def step(state, k):
      thetas = PAPER.ask(k, state, b)
      rewards = -jnp.sum((thetas - target) ** 2, axis=-1)
      return PAPER.tell(state, thetas, rewards, jnp.ones(b, bool))[0], None
    state, _ = jax.lax.scan(step, PAPER.init(jnp.zeros(d, jnp.float32)),
                            jax.random.split(key, 400))
    return state.mu

  mu = train(jax.random.key(0))
  assert mu.dtype == jnp.float32
  # From |mu0 - theta*| ~ 1.4 to Adam's noise floor: near the optimum the normalised
  # gradient's sign is noisy and Adam steps by about lr = 0.05 per coordinate, so mu
  # jitters around theta* by O(lr); allow 3 steps per coordinate.
  assert float(jnp.linalg.norm(target)) > 1.0
  assert float(jnp.max(jnp.abs(mu - target))) < 0.15, (mu, target)


def test_gaussian_validation():
  with pytest.raises(ValueError, match="sigma"):
    strategies.Gaussian(sigma=-0.2)
  with pytest.raises(ValueError, match="optax"):
    strategies.Gaussian(optimizer=0.05)


def test_tell_normalises_once_and_keeps_the_dtype():
  state = PAPER.init(jnp.array([0.3, -0.2, 0.0, 1.0], jnp.float32))
  thetas = ask(PAPER, jax.random.key(4), state, 8)
  rewards = jnp.array([0.1, 0.5, jnp.nan, 0.9, 0.4, 0.4, 0.2, 0.8], jnp.float32)
  valid = jnp.isfinite(rewards).at[5].set(False)
  told, info = tell(PAPER, state, thetas, rewards, valid)
  np.testing.assert_allclose(info["normalized_rewards"], normalize(rewards, valid), rtol=1e-6)
  assert np.all(np.asarray(info["normalized_rewards"])[[2, 5]] <= -1)  # the worst
  np.testing.assert_array_equal(PAPER.mean(told), told.mu)
  assert isinstance(told, strategies.GaussianState) and told.mu.dtype == jnp.float32
