"""The selection rules (jaxloss.search.selection) and select_until, exact on small populations."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxloss import search
from jaxloss.search import selection, strategies
from tests.test_search_common import MLP_TASK, config, dataset


def _population(b=8, seed=0):
  """A population with a float matrix, an int counter and a typed key per copy."""
  rng = np.random.default_rng(seed)
  return {"w": jnp.asarray(rng.normal(size=(b, 3, 2)), jnp.float32),
          "bn": {"mean": jnp.asarray(rng.normal(size=(b, 2)), jnp.float64)},
          "step": jnp.arange(b, dtype=jnp.int32) * 10,
          "key": jax.random.split(jax.random.key(0), b)}


def test_best_broadcasts_the_best_valid_copy():
  pop = _population()
  rewards = jnp.array([0.1, 0.9, 0.3, 0.95, 0.2, 0.4, 0.5, 0.6])
  valid = jnp.array([True, True, True, False, True, True, True, True])
  new, index = selection.Best().select(None, pop, rewards, valid)
  assert int(index) == 1
  np.testing.assert_array_equal(new["w"], np.broadcast_to(pop["w"][1], pop["w"].shape))


def test_guarded_never_replaces_the_mean_copy_when_the_copies_tie():
  pop = _population(4)
  examples = jnp.asarray(np.random.default_rng(1).integers(0, 2, (1, 500)), jnp.float32)
  examples = jnp.broadcast_to(examples, (4, 500))             # every copy right on the same ones
  rewards = jnp.array([0.5, 0.5, 0.5, 0.5])
  new, index = selection.Guarded(k=0.0).select(None, pop, rewards, jnp.ones(4, bool), examples)
  assert int(index) == 0
  np.testing.assert_array_equal(new["w"], np.broadcast_to(pop["w"][0], pop["w"].shape))


def test_guarded_moves_only_beyond_k_paired_standard_errors():
  rng = np.random.default_rng(2)
  base = rng.integers(0, 2, 1000).astype(np.float32)
  small = base.copy()
  small[np.flatnonzero(base == 0)[:2]] = 1                    # +2 examples: lead 0.002
  large = base.copy()
  large[np.flatnonzero(base == 0)[:60]] = 1                   # +60 examples: lead 0.06
  examples = jnp.asarray(np.stack([base, small, large]))
  rewards = jnp.mean(examples, axis=1)
  valid = jnp.ones(3, bool)
  rule = selection.Guarded(k=2.0)
  lead, se = rule.leads(examples)
  d = np.asarray(examples) - np.asarray(examples)[:1]
  np.testing.assert_allclose(se, d.std(axis=1, ddof=1) / np.sqrt(1000), rtol=1e-6)
  np.testing.assert_allclose(lead, [0, 0.002, 0.06], atol=1e-7)
  _, index = rule.select(None, _population(3), rewards, valid, examples)
  assert float(lead[2]) > 2 * float(se[2]) and float(lead[1]) < 2 * float(se[1])
  assert int(index) == 2                                       # the best, and far enough ahead
  _, index = rule.select(None, _population(3), rewards.at[2].set(0.0),
                         valid.at[2].set(False), examples)
  assert int(index) == 0                                       # copy 1 leads by less: noise


@pytest.mark.parametrize("rule", [selection.Average(), selection.Average(top_k=3),
                                  selection.Average(weighted=True),
                                  selection.Average(top_k=2, weighted=True)])
def test_average_is_the_exact_weighted_mean_of_every_float_leaf(rule):
  pop = _population()
  rewards = jnp.array([0.1, 0.9, 0.3, 0.95, 0.2, 0.4, 0.5, 0.6])
  valid = jnp.array([True, True, True, False, True, True, True, True])
  new, index = rule.select(None, pop, rewards, valid)
  r, v = np.asarray(rewards, np.float64), np.asarray(valid)
  keep = v.copy()
  if rule.top_k is not None:
    order = np.argsort(np.where(v, -r, np.inf))
    keep[:] = False
    keep[order[:rule.top_k]] = True
  w = np.where(keep, r if rule.weighted else 1.0, 0.0)
  w /= w.sum()
  for name in ("w",):
    want = np.tensordot(w, np.asarray(pop[name], np.float64), axes=1)
    np.testing.assert_allclose(new[name], np.broadcast_to(want, pop[name].shape), rtol=1e-6)
  want = np.tensordot(w, np.asarray(pop["bn"]["mean"]), axes=1)
  np.testing.assert_allclose(new["bn"]["mean"], np.broadcast_to(want, (8, 2)), rtol=1e-12)
  assert int(index) == 1                                       # the best valid copy
  np.testing.assert_array_equal(new["step"], np.full(8, 10))   # integers: the best copy's
  np.testing.assert_array_equal(jax.random.key_data(new["key"]),
                                np.broadcast_to(jax.random.key_data(pop["key"][1]), (8, 2)))


def test_truncation_replaces_only_the_worst_quarter_by_best_quarter_copies():
  pop = _population()
  rewards = jnp.array([0.1, 0.9, 0.3, 0.8, 0.2, 0.4, 0.5, 0.6])
  valid = jnp.ones(8, bool)
  for seed in range(5):
    new, index = selection.Truncation().select(jax.random.key(seed), pop, rewards, valid)
    assert int(index) == 1
    source = np.asarray(selection.Truncation().sources(jax.random.key(seed), rewards, valid))
    assert set(source[[0, 4]]) <= {1, 3}                        # the worst two: from the best two
    np.testing.assert_array_equal(source[[1, 2, 3, 5, 6, 7]], [1, 2, 3, 5, 6, 7])
    np.testing.assert_array_equal(new["w"], np.asarray(pop["w"])[source])


def test_rules_validate_their_options():
  for bad in (lambda: selection.Guarded(k=-1), lambda: selection.Guarded(k=float("nan")),
              lambda: selection.Average(top_k=0), lambda: selection.Average(weighted="yes"),
              lambda: selection.Truncation(fraction=0.75), lambda: selection.Truncation(0)):
    with pytest.raises(ValueError):
      bad()
  with pytest.raises(ValueError, match="`selection`"):
    config(selection="greedy")
  with pytest.raises(ValueError, match="`select_until`"):
    config(select_until=1.5)


def test_guarded_needs_per_example_scores():
  train, val, _ = dataset()
  with pytest.raises(ValueError, match="per_example=True"):
    search.run(MLP_TASK, config(selection="guarded", epochs=1), train, val)


def test_select_until_stops_the_selection_at_the_fraction_of_the_run():
  train, val, _ = dataset()
  cfg = config(strategy="paper", epochs=4, select_until=0.5)
  assert [cfg.selects_after(e) for e in range(4)] == [True, True, False, False]
  assert config(epochs=3, select_until=lambda e: e == 1).selects_after(1)
  states = []
  result = search.run(MLP_TASK, cfg, train, val,
                      callback=lambda record, state: states.append(jax.device_get(
                          state.population.params["w2"])))
  assert [r["selected"] for r in result.records] == [True, True, False, False]
  for epoch, w in enumerate(states):
    same = all(np.array_equal(w[0], w[i]) for i in range(1, len(w)))
    assert same == (epoch < 2), epoch                          # broadcast, then independent


def test_none_never_broadcasts_and_fixed_trains_cross_entropy_copies():
  train, val, _ = dataset()
  result = search.run(MLP_TASK, config(strategy=strategies.FIXED, selection="none", epochs=2),
                      train, val)
  w = np.asarray(result.search_state.population.params["w2"])
  assert not np.array_equal(w[0], w[1])
  assert all(np.array_equal(t, result.records[0]["thetas"][0]) for t in result.records[0]["thetas"])
