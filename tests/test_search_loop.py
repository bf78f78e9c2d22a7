"""The refactored engine's contracts: one program per StepSpec, the ask/tell strategy slot,
``stop_after``, ``metadata`` and ``read_records``, and the outer step's shape."""

import dataclasses
import inspect
import os
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxloss import search
from jaxloss.search import engine as engine_module
from jaxloss.search import outer_step as outer_step_module
from jaxloss.search import strategies
from tests.test_search_common import (
  MLP_TASK,
  assert_trees_equal,
  config,
  dataset,
  identity_theta,
  strip_times,
)


def _evaluate_again(state, batch):
  return MLP_TASK.evaluate(state, batch)


# How to change each field of StepSpec through the public API. A field added to StepSpec
# without an entry here fails the test: every field the step reads must key its program.
_CHANGES = {
    "task": lambda: (dataclasses.replace(MLP_TASK, evaluate=_evaluate_again), {}),
    "strategy": lambda: (MLP_TASK, dict(strategy=strategies.Gaussian(sigma=0.3))),
    "selection": lambda: (MLP_TASK, dict(selection="none")),
    "reward_fn": lambda: (MLP_TASK, dict(reward_fn=lambda t: t["correct"] / t["count"] - 1.0)),
    "population_size": lambda: (MLP_TASK, dict(population_size=2)),
    "batch_size": lambda: (MLP_TASK, dict(batch_size=64)),
    "eval_batch_size": lambda: (MLP_TASK, dict(eval_batch_size=64)),
    "common_random_numbers": lambda: (MLP_TASK, dict(common_random_numbers=False)),
    "scan_unroll": lambda: (MLP_TASK, dict(scan_unroll=2)),
    "compiler_options": lambda: (MLP_TASK, dict(compiler_options={
        "xla_backend_optimization_level": 1})),
}


def _program_key(task, **changes):
  """The cache key of the outer step the engine compiles for these options: the program
  is compiled anew exactly when the key is new (Engine.compile looks it up first)."""
  train, val, _ = dataset()
  engine = search.Engine(task, config(**{"epochs": 1, **changes}))
  train, val = engine.put_data(train), engine.put_data(val)
  state = engine.abstract_state()
  return engine.spec, engine.compile(state, train, val).compiled


def test_a_change_of_any_field_the_step_reads_compiles_a_new_program(monkeypatch):
  assert set(_CHANGES) == {f.name for f in dataclasses.fields(search.StepSpec)}
  real = engine_module._cached
  monkeypatch.setattr(engine_module, "_cached",
                      lambda key, build: key if key[0] == "step" else real(key, build))
  base_spec, base = _program_key(MLP_TASK)
  again_spec, again = _program_key(MLP_TASK, seed=3, epochs=7, init="per_copy",  # inputs
                                   initial_mu=np.asarray(identity_theta()) + 0.1)
  assert again_spec == base_spec and again == base  # inputs: the same program
  for name, change in _CHANGES.items():
    task, options = change()
    spec, key = _program_key(task, **options)
    assert getattr(spec, name) != getattr(base_spec, name), name
    assert key != base, name


def test_unrolling_the_whole_epoch_is_not_the_loop_of_one_step():
  # True == 1 in Python (and they hash alike): as cache keys they must still differ.
  full, one, off = (search.Engine(MLP_TASK, config(scan_unroll=u)).spec for u in (True, 1, False))
  assert full != one and full.unroll is True
  assert off == one and one.unroll == 1


def test_the_program_cache_hits_for_the_same_spec():
  train, val, _ = dataset()
  programs = []
  for seed in (0, 1):
    engine = search.Engine(MLP_TASK, config(seed=seed))
    programs.append(engine.compile(engine.init(), engine.put_data(train),
                                   engine.put_data(val)).compiled)
  assert programs[0] is programs[1]


def test_init_programs_share_the_cache_and_its_eviction(monkeypatch):
  monkeypatch.setattr(engine_module, "_COMPILED", {})
  monkeypatch.setattr(engine_module, "_MAX_COMPILED", 2)
  for b in (1, 2, 4):  # three initialisation programs
    search.Engine(MLP_TASK, config(population_size=b)).init()
  assert len(engine_module._COMPILED) == 2
  assert all(key[0] == "init" for key in engine_module._COMPILED)


def test_outer_step_is_five_named_calls_on_one_screen():
  source = inspect.getsource(outer_step_module.outer_step)
  assert len(source.splitlines()) <= 30
  body = source[source.index('"""One epoch'):]
  calls = [name + "(" for name in ("sample", "train_epoch", "score", "update_mean",
                                   "select")]
  positions = [body.index(call) for call in calls]
  assert positions == sorted(positions)  # in the order of algorithm 1


class _ListState(NamedTuple):
  mu: jax.Array


@dataclasses.dataclass(frozen=True)
class FixedList:
  """A grid strategy through the ask/tell slot: ``ask`` ignores the key and returns its
  thetas, ``tell`` keeps the state (no engine special case)."""
  thetas: tuple

  def init(self, mu):
    return _ListState(mu=jnp.asarray(mu))

  def ask(self, key, state, num):
    del key
    return jnp.asarray(self.thetas, state.mu.dtype)[:num]

  def tell(self, state, thetas, rewards, valid):
    return state, {"normalized_rewards": strategies.normalize_rewards(rewards, valid)}

  def mean(self, state):
    return state.mu


def test_a_strategy_plugs_into_the_outer_step():
  train, val, _ = dataset()
  mu0 = np.asarray(identity_theta())
  grid = tuple(tuple((mu0 + 0.05 * i).tolist()) for i in range(4))
  result = search.run(MLP_TASK, config(epochs=2, strategy=FixedList(grid)), train, val)
  for r in result.records:
    np.testing.assert_allclose(r["thetas"], grid, rtol=1e-6)
    assert r["mu"] == r["mu_next"] == mu0.tolist()
  assert result.records[-1]["best_reward"] > 0.5
  assert result.records[0]["strategy"] == "FixedList"
  # The named strategies go through the same slot.
  engine = search.Engine(MLP_TASK, config())
  assert engine.strategy == strategies.PAPER == strategies.Gaussian(sigma=0.2,
                                                                    learning_rate=0.05)
  # The library's default is the measured one; the paper's stays available by name.
  assert search.Engine(MLP_TASK, config(strategy="default")).strategy == strategies.DEFAULT
  assert search.SearchConfig(initial_mu=mu0).resolved_strategy == strategies.DEFAULT
  with pytest.raises(ValueError, match=r"does not fit `initial_mu` of shape \(3,\)"):
    config(strategy="default", initial_mu=np.zeros(3))  # per-part sigma: 4 M values
  with pytest.raises(ValueError, match="`strategy` must be one of"):
    config(strategy="papers")
  with pytest.raises(ValueError, match="or an object with init/ask/tell/mean methods"):
    config(strategy=object())


def test_stop_after_checkpoints_and_resumes_to_the_same_run(tmp_path):
  train, val, _ = dataset()
  out = str(tmp_path / "run")
  cfg = config(epochs=3, output_dir=out)
  whole = search.run(MLP_TASK, config(epochs=3), train, val)
  first = search.run(MLP_TASK, cfg, train, val, stop_after=1, metadata={"note": "a"})
  assert not first.finished and first.epochs_completed == 1
  assert sorted(os.listdir(os.path.join(out, "checkpoints"))) == ["1"]
  second = search.run(MLP_TASK, cfg, train, val, resume=True, stop_after=1,
                      metadata={"note": "a"})
  assert not second.finished and second.epochs_completed == 2
  with pytest.raises(ValueError, match=r"different run \(metadata.note\)"):
    search.run(MLP_TASK, cfg, train, val, resume=True, metadata={"note": "b"})
  with pytest.raises(ValueError, match=r"different run \(metadata.note\)"):
    search.run(MLP_TASK, cfg, train, val, resume=True)
  last = search.run(MLP_TASK, cfg, train, val, resume=True, metadata={"note": "a"})
  assert last.finished and last.metadata == {"note": "a"}
  assert_trees_equal(last.search_state, whole.search_state)
  assert strip_times(last.records) == strip_times(whole.records)
  assert search.read_records(out) == last.records
  assert search.run(MLP_TASK, cfg, train, val, resume=True, stop_after=0,
                    metadata={"note": "a"}).finished
  with pytest.raises(ValueError, match="`stop_after`"):
    search.run(MLP_TASK, cfg, train, val, resume=True, stop_after=-1)
  with pytest.raises(ValueError, match="`metadata` must be a dict of JSON values"):
    search.run(MLP_TASK, cfg, train, val, resume=True, metadata={"f": object()})


def test_one_way_to_say_each_thing():
  """The removed aliases stay removed (issue 21): the strategy object is the one way."""
  for name in ("TrainState", "score", "Flags", "MODES", "GaussianPolicy", "PolicyState",
               "default_mu_optimizer", "normalize_rewards"):
    assert not hasattr(search, name), name
  fields = {f.name for f in dataclasses.fields(search.SearchConfig)}
  assert not fields & {"mode", "sigma", "mu_optimizer", "grid", "select_best"}
  engine = search.Engine(MLP_TASK, config())
  assert not hasattr(engine, "policy") and not hasattr(engine, "run")
  with pytest.raises(ValueError, match="`epochs` must be a positive int"):
    config(epochs=0)
