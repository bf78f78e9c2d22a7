"""Tests of jaxloss.search.strategies (ask/tell strategies), without the engine: fast, CPU."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxloss
from jaxloss.search import strategies as st
from jaxloss.search.strategies import normalize_rewards

M = 6
D = 4 * M
MU0 = jaxloss.identity_theta(M)


def _key(i=0):
  return jax.random.key(i)


# ------------------------------------------------------------------------------ paper


def test_strategies_are_hashable_and_jittable():
  for strategy in (st.PAPER, st.DEFAULT, st.RANDOM, st.FIXED, st.Grid([MU0.tolist()] * 3)):
    hash(strategy)
    assert "(" in repr(strategy)
  s = st.DEFAULT.init(MU0)
  thetas = jax.jit(st.DEFAULT.ask, static_argnums=2)(_key(), s, 8)
  new, info = jax.jit(st.DEFAULT.tell)(s, thetas, jnp.arange(8.0), jnp.ones(8, bool))
  assert thetas.shape == (8, D) and new.mu.shape == (D,)
  assert info["normalized_rewards"].shape == (8,)


# ------------------------------------------------------------------------------ antithetic


@pytest.mark.parametrize("num,mean_copy", [(8, False), (9, True), (7, False), (8, True)])
def test_antithetic_samples_are_mirrored(num, mean_copy):
  g = st.Gaussian(antithetic=True, mean_copy=mean_copy)
  s = g.init(MU0)
  thetas = np.asarray(g.ask(_key(3), s, num))
  start = 1 if mean_copy else 0
  eps = thetas[start:] - np.asarray(MU0)
  n = num - start
  half = n // 2
  np.testing.assert_allclose(eps[:half], -eps[half:2 * half], rtol=0, atol=1e-6)
  assert np.all(np.abs(eps[:half]) > 0)
  if n % 2:  # the unpaired one is a fresh draw, not a mirror
    assert not np.any(np.all(np.isclose(eps[-1], -eps[:half]), axis=1))


def test_antithetic_equal_rewards_do_not_move_mu():
  """A pair with equal rewards cancels: the estimate is (R+ - R-) eps / (2 sigma)."""
  g = st.Gaussian(antithetic=True, optimizer="sgd", learning_rate=1.0)
  s = g.init(MU0)
  thetas = g.ask(_key(), s, 4)
  rewards = jnp.asarray([1.0, 0.0, 1.0, 0.0])  # pair (0, 2) equal, pair (1, 3) equal
  new, info = g.tell(s, thetas, rewards, jnp.ones(4, bool))
  np.testing.assert_allclose(info["ascent"], 0, atol=1e-6)
  np.testing.assert_allclose(new.mu, MU0, atol=1e-6)


# ------------------------------------------------------------------------------ mean copy


def test_mean_copy_trains_with_mu_exactly():
  g = st.Gaussian(mean_copy=True)
  mu = MU0 + 0.1 * jnp.arange(D, dtype=jnp.float32) / D
  s = g.init(mu)
  thetas = g.ask(_key(1), s, 8)
  assert np.array_equal(np.asarray(thetas[0]), np.asarray(mu))
  assert not np.any(np.all(np.asarray(thetas[1:]) == np.asarray(mu), axis=1))


def test_mean_copy_adds_nothing_to_the_estimate():
  """mu's reward is left out of the fitness statistics: the update equals that of the samples."""
  g = st.Gaussian(mean_copy=True, optimizer="sgd", learning_rate=1.0)
  plain = st.Gaussian(optimizer="sgd", learning_rate=1.0)
  s = g.init(MU0)
  thetas = g.ask(_key(2), s, 8)
  rewards = jnp.asarray([0.99, 0.3, 0.5, 0.2, 0.8, 0.4, 0.6, 0.1])
  new, info = g.tell(s, thetas, rewards, jnp.ones(8, bool))
  ref, ref_info = plain.tell(plain.init(MU0), thetas[1:], rewards[1:], jnp.ones(7, bool))
  np.testing.assert_allclose(new.mu, ref.mu, rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(info["normalized_rewards"][1:], ref_info["normalized_rewards"],
                             rtol=1e-6)
  # copy 0's entry: its reward on the samples' scale (0.99 is above all of them).
  assert info["normalized_rewards"][0] > info["normalized_rewards"][1:].max()


def test_invalid_mean_copy_is_worst():
  g = st.Gaussian(mean_copy=True)
  s = g.init(MU0)
  thetas = g.ask(_key(), s, 5)
  rewards = jnp.asarray([jnp.nan, 0.1, 0.2, 0.3, 0.4])
  _, info = g.tell(s, thetas, rewards, jnp.asarray([False, True, True, True, True]))
  z = np.asarray(info["normalized_rewards"])
  assert z[0] <= z[1:].min() and z[0] <= -1


# ------------------------------------------------------------------------------ rank shaping


def test_rank_shaping_is_invariant_to_monotone_transforms():
  r = jnp.asarray([0.3, 0.1, 0.7, 0.7, 0.2, 0.9, 0.05, 0.4])
  base = st.centered_ranks(r)
  for f in (lambda x: jnp.exp(10 * x), lambda x: x ** 3 - 5, lambda x: jnp.log(x) * 7 + 2,
            lambda x: 1 / (1 + jnp.exp(-50 * (x - 0.5)))):
    np.testing.assert_allclose(st.centered_ranks(f(r)), base, rtol=1e-6, atol=1e-6)
  # ties share a value; zero mean, unit variance
  assert base[2] == base[3]
  np.testing.assert_allclose(jnp.mean(base), 0, atol=1e-6)
  np.testing.assert_allclose(jnp.std(base), 1, atol=1e-6)


def test_rank_update_is_invariant_to_monotone_transforms():
  g = st.Gaussian(fitness="rank")
  s = g.init(MU0)
  thetas = g.ask(_key(5), s, 8)
  r = jnp.asarray([0.3, 0.1, 0.7, 0.75, 0.2, 0.9, 0.05, 0.4])
  a, _ = g.tell(s, thetas, r, jnp.ones(8, bool))
  b, _ = g.tell(s, thetas, jnp.exp(20 * r) - 3, jnp.ones(8, bool))
  np.testing.assert_allclose(a.mu, b.mu, rtol=1e-6, atol=1e-7)
  # the z-score is not invariant
  z = st.Gaussian()
  c, _ = z.tell(s, thetas, r, jnp.ones(8, bool))
  d, _ = z.tell(s, thetas, jnp.exp(20 * r) - 3, jnp.ones(8, bool))
  assert not np.allclose(c.mu, d.mu)


def test_rank_invalid_and_constant():
  r = jnp.asarray([0.5, jnp.nan, 0.2, 0.9])
  z = st.centered_ranks(r, jnp.asarray([True, False, True, True]))
  assert z[1] <= -1 and z[1] <= z[2]
  np.testing.assert_array_equal(st.centered_ranks(jnp.ones(4)), jnp.zeros(4))


# ------------------------------------------------------------------------------ sigma parts


def test_sigma_per_part():
  sig = (0.1, 0.0, 0.3, 0.02)
  g = st.Gaussian(sigma=sig)
  s = g.init(MU0)
  thetas = np.asarray(g.ask(_key(), s, 4000))
  eps = thetas - np.asarray(MU0)
  std = eps.reshape(4000, 4, M).std(axis=(0, 2))
  np.testing.assert_allclose(std, sig, rtol=0.05, atol=1e-7)
  # a zero part never moves
  new, _ = g.tell(s, jnp.asarray(thetas[:8]), jnp.arange(8.0), jnp.ones(8, bool))
  np.testing.assert_array_equal(np.asarray(new.mu)[M:2 * M], np.asarray(MU0)[M:2 * M])
  assert not np.allclose(np.asarray(new.mu)[:M], np.asarray(MU0)[:M])


def test_sigma_vector_forms():
  np.testing.assert_allclose(st.sigma_vector(0.2, D), np.full(D, 0.2))
  np.testing.assert_allclose(st.sigma_vector((1, 2, 3, 4), D), np.repeat([1, 2, 3, 4], M))
  np.testing.assert_allclose(st.sigma_vector(tuple(range(1, D + 1)), D), np.arange(1, D + 1))
  with pytest.raises(ValueError):
    st.sigma_vector((1, 2, 3), D)
  # A theta with a label-smoothing coordinate (4 M + 1): 4 values freeze it, 5 give its own.
  np.testing.assert_allclose(st.sigma_vector((1, 2, 3, 4), D + 1),
                             np.append(np.repeat([1, 2, 3, 4], M), 0.0))
  np.testing.assert_allclose(st.sigma_vector((1, 2, 3, 4, 5), D + 1),
                             np.append(np.repeat([1, 2, 3, 4], M), 5.0))
  with pytest.raises(ValueError, match="need a theta of 4 M \\+ 1 numbers"):
    st.sigma_vector((1, 2, 3, 4, 5), D)
  with pytest.raises(ValueError):
    st.Gaussian(sigma=-1.0)
  with pytest.raises(ValueError):
    st.Gaussian(fitness="softmax")


def test_default_with_a_frozen_smoothing_coordinate_never_moves_it():
  mu0 = jaxloss.identity_theta(M, label_smoothing=0.1)
  g = st.DEFAULT
  state = g.init(mu0)
  thetas = g.ask(jax.random.key(1), state, 8)
  np.testing.assert_array_equal(np.asarray(thetas)[:, -1], np.float32(0.1))
  new, _ = g.tell(state, thetas, jnp.arange(8.0), jnp.ones(8, bool))
  assert float(new.mu[-1]) == np.float32(0.1)
  searched = dataclasses.replace(g, sigma=g.sigma + (0.05,))
  thetas = searched.ask(jax.random.key(1), searched.init(mu0), 8)
  assert np.std(np.asarray(thetas)[:, -1]) > 0.01


def test_per_part_score_is_the_reinforce_estimate():
  """ascent = mean_i R_i (theta_i - mu) / sigma_j^2 per coordinate."""
  sig = st.sigma_vector((0.1, 0.05, 0.2, 0.02), D)
  g = st.Gaussian(sigma=(0.1, 0.05, 0.2, 0.02))
  s = g.init(MU0)
  thetas = g.ask(_key(9), s, 6)
  r = jnp.asarray([0.1, 0.5, 0.2, 0.8, 0.3, 0.4])
  _, info = g.tell(s, thetas, r, jnp.ones(6, bool))
  expected = jnp.mean(normalize_rewards(r)[:, None] * (thetas - MU0) / sig ** 2, axis=0)
  np.testing.assert_allclose(info["ascent"], expected, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------------ drift guard


def test_drift_guard_blocks_noise_and_passes_signal():
  g = st.Gaussian(drift_guard=2.0)
  s = g.init(MU0)
  thetas = g.ask(_key(4), s, 64)
  noise = jax.random.uniform(_key(7), (64,))
  new, info = g.tell(s, thetas, noise, jnp.ones(64, bool))
  assert float(jnp.mean(info["moved"])) < 0.25       # ~5% of coordinates pass at k=2
  moved = np.asarray(info["moved"])
  np.testing.assert_array_equal(np.asarray(new.mu)[~moved], np.asarray(MU0)[~moved])
  # a reward that depends on coordinate 0 moves coordinate 0
  signal = thetas[:, 0] - MU0[0]
  new2, info2 = g.tell(s, thetas, signal, jnp.ones(64, bool))
  assert bool(info2["moved"][0]) and new2.mu[0] > MU0[0]


def test_random_never_moves():
  s = st.RANDOM.init(MU0)
  thetas = st.RANDOM.ask(_key(), s, 8)
  new, _ = st.RANDOM.tell(s, thetas, jnp.arange(8.0), jnp.ones(8, bool))
  np.testing.assert_array_equal(new.mu, MU0)


def test_custom_optax_optimizer():
  g = st.Gaussian(optimizer=optax.sgd(0.0))
  s = g.init(MU0)
  new, _ = g.tell(s, g.ask(_key(), s, 4), jnp.arange(4.0), jnp.ones(4, bool))
  np.testing.assert_array_equal(new.mu, MU0)


# ------------------------------------------------------------------------------ grid


def test_grid_copies_keep_their_thetas():
  thetas = [jaxloss.identity_theta(M), jaxloss.cosface_theta(0.1, M),
            jaxloss.cosface_theta(0.35, M), jaxloss.arcface_theta(0.2, M)]
  g = st.Grid([np.asarray(t).tolist() for t in thetas])
  hash(g)
  s = g.init(MU0)
  for epoch in range(3):
    asked = g.ask(_key(epoch), s, 4)
    np.testing.assert_allclose(asked, jnp.stack(thetas), rtol=0, atol=0)
    s2, info = g.tell(s, asked, jax.random.uniform(_key(epoch), (4,)), jnp.ones(4, bool))
    assert jax.tree.all(jax.tree.map(lambda a, b: bool(jnp.all(a == b)), s, s2))
    assert info["normalized_rewards"].shape == (4,)
  with pytest.raises(ValueError):
    g.ask(_key(), s, 5)


def test_grid_of_user_loss_parameters():
  g = st.Grid([0.0, 0.05, 0.1, 0.2])       # e.g. label-smoothing values: one number each
  s = g.init()
  np.testing.assert_allclose(g.ask(_key(), s, 4), [[0.0], [0.05], [0.1], [0.2]])
  with pytest.raises(ValueError):
    st.Grid([[1.0, 2.0], [1.0]])


# ------------------------------------------------------------------------------ evosax


def test_evosax_open_es_drives_mu():
  pytest.importorskip("evosax.algorithms")
  es = st.EvosaxStrategy("Open_ES", population_size=8, sigma=0.2, learning_rate=0.05)
  hash(es)
  s = es.init(MU0)
  np.testing.assert_allclose(es.mean(s), MU0)
  thetas = jax.jit(es.ask, static_argnums=2)(_key(), s, 8)
  assert thetas.shape == (8, D)
  # reward = first coordinate: the mean must move up along it
  for i in range(5):
    thetas = es.ask(_key(i), s, 8)
    s, info = jax.jit(es.tell)(s, thetas, thetas[:, 0], jnp.ones(8, bool))
  assert float(es.mean(s)[0]) > float(MU0[0])
  assert info["normalized_rewards"].shape == (8,)
  # invalid copies do not break it
  s, _ = es.tell(s, thetas, thetas[:, 0].at[3].set(jnp.nan), jnp.ones(8, bool).at[3].set(False))
  assert bool(jnp.all(jnp.isfinite(es.mean(s))))
  with pytest.raises(ValueError):
    es.ask(_key(), s, 4)


def test_replace_keeps_hashable():
  g = dataclasses.replace(st.PAPER, sigma=[0.1, 0.1, 0.2, 0.2])
  hash(g)
  assert g.sigma == (0.1, 0.1, 0.2, 0.2)


# ------------------------------------------------------------------------------ engine


def test_engine_runs_the_strategies():
  """Through the engine: grid copies keep their thetas; the mean copy trains with mu."""
  from jaxloss import search  # pylint: disable=import-outside-toplevel
  from tests.test_search_common import MLP_TASK, config, dataset, identity_theta
  train, val, _ = dataset()
  mu0 = np.asarray(identity_theta())
  m = mu0.size // 4
  grid = st.Grid([np.asarray(t).tolist() for t in (
      jaxloss.identity_theta(m), jaxloss.cosface_theta(0.1, m), jaxloss.cosface_theta(0.2, m),
      jaxloss.cosface_theta(0.3, m))])
  result = search.run(MLP_TASK, config(strategy=grid, epochs=2), train, val)
  for record in result.records:
    np.testing.assert_allclose(record["thetas"], np.asarray(grid.thetas), rtol=0, atol=1e-7)
  np.testing.assert_allclose(result.mu, np.mean(np.asarray(grid.thetas), 0), atol=1e-6)
  strategy = st.Gaussian(sigma=(0.1, 0.05, 0.05, 0.01), mean_copy=True, antithetic=True,
                         fitness="rank", whiten=True, learning_rate=0.25, drift_guard=0.5)
  result = search.run(MLP_TASK, config(strategy=strategy, epochs=3), train, val)
  for record in result.records:
    thetas, mu = np.asarray(record["thetas"], np.float32), np.asarray(record["mu"], np.float32)
    np.testing.assert_array_equal(thetas[0], mu)
    np.testing.assert_allclose(thetas[1] - mu, -(thetas[2] - mu), atol=1e-6)


def test_a_grid_trains_each_copy_with_its_own_theta_and_selects():
  """``strategy=Grid(...)``: the thetas never move; the best copy is selected each epoch."""
  from jaxloss import search  # pylint: disable=import-outside-toplevel
  from tests.test_search_common import MLP_TASK, config, dataset, identity_theta
  train, val, _ = dataset()
  m = np.asarray(identity_theta()).size // 4
  grid = [np.asarray(t).tolist() for t in (
      jaxloss.identity_theta(m), jaxloss.cosface_theta(0.1, m), jaxloss.cosface_theta(0.2, m),
      jaxloss.cosface_theta(0.3, m))]
  cfg = config(strategy=st.Grid(grid), epochs=2)
  assert cfg.selection == "best" and cfg.resolved_init == "shared"
  result = search.run(MLP_TASK, cfg, train, val)
  for record in result.records:
    np.testing.assert_allclose(record["thetas"], grid, rtol=0, atol=1e-7)
    assert 0 <= record["best_index"] < 4 and record["strategy"] == "Grid"
  with pytest.raises(ValueError, match="Grid: 3 thetas for a population of 4"):
    config(strategy=st.Grid(grid[:3]))
  with pytest.raises(ValueError, match="one theta per copy, each of 8 values"):
    config(strategy=st.Grid([[0.1]] * 4))


def test_the_library_default_runs_through_the_engine():
  """SearchConfig's default strategy is strategies.DEFAULT: mean copy, mirrored samples."""
  from jaxloss import search  # pylint: disable=import-outside-toplevel
  from tests.test_search_common import MLP_TASK, config, dataset
  train, val, _ = dataset()
  result = search.run(MLP_TASK, config(strategy="default", population_size=5, epochs=2),
                      train, val)
  for record in result.records:
    thetas, mu = np.asarray(record["thetas"], np.float32), np.asarray(record["mu"], np.float32)
    np.testing.assert_array_equal(thetas[0], mu)                      # the mean copy
    np.testing.assert_allclose(thetas[1] - mu, -(thetas[3] - mu), atol=1e-6)  # mirrored
    sigma = np.asarray(st.sigma_vector(st.DEFAULT.sigma, mu.size))
    np.testing.assert_array_equal(np.abs(thetas[1:] - mu) > 0, np.broadcast_to(sigma > 0,
                                                                                thetas[1:].shape))
