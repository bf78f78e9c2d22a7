"""The outer step and the search loop on one device: strategies, selection, randomness, faults."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxloss import search
from tests.test_search_common import (
  LINEN_TASK,
  MLP_TASK,
  NNX_TASK,
  assert_trees_equal,
  config,
  dataset,
  dataset64,
  identity_theta,
  strip_times,
)

CHANCE = 0.25


def _copies_equal(population):
  """True iff every leaf has the same value in every copy."""
  for a in jax.tree.leaves(population):
    a = np.asarray(a)
    if not all(np.array_equal(a[0], a[i]) for i in range(1, a.shape[0])):
      return False
  return True


def _copy(population, i):
  return jax.tree.map(lambda a: np.asarray(a)[i], population)


@pytest.fixture(scope="module")
def amlfs_run():
  train, val, _ = dataset()
  return search.run(MLP_TASK, config(epochs=3), train, val)


def test_paper_strategy_records_learning_and_broadcast(amlfs_run):
  result = amlfs_run
  records = result.records
  assert [r["epoch"] for r in records] == [0, 1, 2]
  for r in records:
    assert np.shape(r["thetas"]) == (4, 8) and len(r["rewards"]) == 4
    assert len(r["train_loss"]) == 4 and all(np.isfinite(r["train_loss"]))
    assert all(r["finite"]) and 0 <= r["best_index"] < 4
    assert r["best_reward"] == max(r["rewards"])
    assert set(r["val"]) == {"correct", "count"} and r["val"]["count"] == [128] * 4
    assert {"step_s", "log_s", "wall_s"} <= set(r["time"])
    # The thetas are samples around the mean used in that epoch.
    assert np.abs(np.asarray(r["thetas"]) - np.asarray(r["mu"])).max() < 5 * 0.2
  assert "compile_s" in records[0]["time"] and "compile_s" not in records[1]["time"]
  # mu takes a step every epoch; the next epoch samples around the updated mean.
  for prev, cur in zip(records, records[1:]):
    assert prev["mu_next"] == cur["mu"]
  assert not np.allclose(records[0]["mu"], records[-1]["mu_next"])
  np.testing.assert_array_equal(result.mu, np.asarray(records[-1]["mu_next"], np.float32))
  # The population learns, and after the broadcast every copy is the best one.
  assert records[-1]["best_reward"] > CHANCE + 0.3
  assert _copies_equal(result.search_state.population)
  assert_trees_equal(result.state, _copy(result.search_state.population, 0))
  test = search.evaluate_dataset(MLP_TASK, result.state, dataset()[2])
  assert test["count"] == 128 and test["accuracy"] > CHANCE + 0.3


def test_same_seed_same_run_and_another_seed_differs(amlfs_run):
  train, val, _ = dataset()
  again = search.run(MLP_TASK, config(epochs=3), train, val)
  assert strip_times(again.records) == strip_times(amlfs_run.records)
  assert_trees_equal(again.search_state, amlfs_run.search_state)
  other = search.run(MLP_TASK, config(epochs=1, seed=1), train, val)
  assert other.records[0]["thetas"] != amlfs_run.records[0]["thetas"]


def _without_monitor(records):
  return [{k: v for k, v in r.items() if k != "monitor"} for r in strip_times(records)]


def test_monitor_watches_the_best_copy_without_changing_the_search(amlfs_run):
  train, val, test = dataset()
  watch = lambda data: search.run(MLP_TASK, config(epochs=3), train, val,
                                  monitor={"test": data})
  watched = watch(test)
  # Other monitored data of the same shapes: the same compiled program, so the search
  # itself (thetas, rewards, mu, selection, states) must be bitwise the same.
  other = watch((test[0], np.roll(test[1], 1)))
  assert _without_monitor(other.records) == _without_monitor(watched.records)
  assert_trees_equal(other.search_state, watched.search_state)
  assert other.records[-1]["monitor"] != watched.records[-1]["monitor"]
  # The unmonitored run is another program (its rounding may differ: no bitwise check);
  # the first epoch's thetas are drawn before any training.
  np.testing.assert_allclose(watched.records[0]["thetas"], amlfs_run.records[0]["thetas"],
                             rtol=1e-6)
  # Each record carries the best copy's totals and score on the monitored split.
  for r in watched.records:
    assert set(r["monitor"]) == {"test"} and r["monitor"]["test"]["count"] == 128
  # evaluate_dataset is a third program (other batch shapes): float32 rounding may move
  # an example across a class boundary, so the counts agree to one example.
  final = search.evaluate_dataset(MLP_TASK, watched.state, test)
  last = watched.records[-1]["monitor"]["test"]
  assert abs(last["correct"] - final["correct"]) <= 1
  assert last["score"] == pytest.approx(last["correct"] / 128)


def test_unrolled_epoch_trains_the_same_population():
  train, val, _ = dataset()
  looped = search.run(MLP_TASK, config(epochs=1), train, val)
  unrolled = search.run(MLP_TASK, config(epochs=1, scan_unroll=True), train, val)
  # Two compiled programs (a loop, an unrolled epoch): equal up to float32 rounding only.
  np.testing.assert_allclose(unrolled.records[0]["thetas"], looped.records[0]["thetas"],
                             rtol=1e-6)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
               unrolled.search_state.population, looped.search_state.population)


def test_low_level_step_donates_the_state_and_keeps_the_data():
  train, val, _ = dataset()
  engine = search.Engine(MLP_TASK, config())  # the fixture's program
  state = engine.init()
  assert int(state.epoch) == 0 and _copies_equal(state.population)
  train, val = engine.put_data(train), engine.put_data(val)
  new, outputs = engine.step(state, train, val)
  assert all(a.is_deleted() for a in jax.tree.leaves(state.population))  # donated buffers
  assert not train[0].is_deleted() and not val[0].is_deleted()
  assert int(new.epoch) == 1 and int(outputs["epoch"]) == 0
  assert outputs["thetas"].shape == (4, 8) and outputs["rewards"].shape == (4,)


def test_random_strategy_samples_around_the_fixed_initial_mean():
  train, val, _ = dataset()
  result = search.run(MLP_TASK, config(strategy="random", epochs=2), train, val)
  mu0 = identity_theta().tolist()
  for r in result.records:
    assert r["mu"] == mu0 and r["mu_next"] == mu0
    assert np.std(r["thetas"], axis=0).min() > 0
  assert result.records[0]["thetas"] != result.records[1]["thetas"]
  assert _copies_equal(result.search_state.population)  # best copy broadcast by default


def test_fixed_strategy_without_selection_is_independent_copies():
  train, val, _ = dataset()
  result = search.run(MLP_TASK, config(strategy="fixed", selection="none", epochs=2), train, val)
  mu0 = identity_theta().tolist()
  for r in result.records:
    assert r["mu"] == mu0 and r["mu_next"] == mu0 and r["thetas"] == [mu0] * 4
  # Default for selection='none': per-copy initialisation, nothing broadcast: independent runs.
  assert not _copies_equal(result.search_state.population)
  assert result.best_index == result.records[-1]["best_index"]
  assert_trees_equal(result.state, _copy(result.search_state.population, result.best_index))
  # Selection is configurable: with it, every copy continues from the best one.
  chosen = search.run(MLP_TASK, config(strategy="fixed", init="per_copy", epochs=1), train, val)
  assert _copies_equal(chosen.search_state.population)


def test_baseline_single_copy_is_plain_cross_entropy_training():
  train, val, _ = dataset()
  single = search.run(MLP_TASK, config(strategy="fixed", selection="none",
                                           population_size=1, epochs=2), train,
                      val)
  assert single.records[-1]["best_reward"] > CHANCE + 0.3
  assert single.records[-1]["thetas"] == [identity_theta().tolist()]


def test_broadcast_is_the_whole_training_state_of_the_best_copy():
  # linen + BatchNorm + SGD momentum + a schedule: params, batch_stats, momentum and
  # step counters must all come from the best copy.
  train, val, _ = dataset()
  kept = search.run(LINEN_TASK, config(epochs=1, selection="none", init="shared"), train, val)
  chosen = search.run(LINEN_TASK, config(epochs=1, selection="best"), train, val)
  # The same epoch (the records differ only in naming the selection).
  unnamed = lambda result: [{k: v for k, v in r.items() if k != "selection"}
                            for r in strip_times(result.records)]
  assert unnamed(kept) == unnamed(chosen)
  best = chosen.records[0]["best_index"]
  before, after = kept.search_state.population, chosen.search_state.population
  assert not _copies_equal(before)  # the copies differ (different thetas) before selection
  for i in range(4):
    assert_trees_equal(_copy(after, i), _copy(before, best))
  state = chosen.state
  trace, schedule = state.opt_state
  assert int(state.step) == 8 and int(schedule.count) == 8  # step counters
  assert max(np.abs(np.asarray(m)).max() for m in jax.tree.leaves(trace.trace)) > 0  # momentum
  init = LINEN_TASK.init(jax.random.key(0))
  assert not np.allclose(state.model_state["batch_stats"]["BatchNorm_0"]["mean"],
                         init.model_state["batch_stats"]["BatchNorm_0"]["mean"])


def test_selection_none_never_broadcasts():
  # The program of the previous test's unselected run (LINEN, selection='none', init='shared').
  train, val, _ = dataset()
  equal_after_epoch = []
  result = search.run(LINEN_TASK, config(epochs=2, selection="none", init="shared"), train, val,
                      callback=lambda record, state: equal_after_epoch.append(
                          _copies_equal(state.population)))
  assert equal_after_epoch == [False, False]  # the copies' states stay different
  assert [r["selection"] for r in result.records] == ["none", "none"]
  # Every copy trained both epochs on its own state (16 steps), none was replaced by another.
  np.testing.assert_array_equal(result.search_state.population.step, [16] * 4)
  assert_trees_equal(result.state, _copy(result.search_state.population, result.best_index))


def test_common_random_numbers_and_per_copy_keys():
  train, val, _ = dataset()
  shared = dict(strategy="fixed", selection="none", init="shared", epochs=1)
  crn = search.run(MLP_TASK, config(common_random_numbers=True, **shared), train, val)
  # Same theta, same initialisation, same batches and same step keys: identical copies.
  assert _copies_equal(crn.search_state.population)
  own = search.run(MLP_TASK, config(common_random_numbers=False, **shared), train, val)
  population = own.search_state.population
  assert not _copies_equal(population)
  # Per-copy randomness is reproducible too.
  again = search.run(MLP_TASK, config(common_random_numbers=False, **shared), train, val)
  assert_trees_equal(again.search_state, own.search_state)


def test_nnx_model():
  train, val, _ = dataset()
  result = search.run(NNX_TASK, config(epochs=2), train, val)
  assert result.records[-1]["best_reward"] > CHANCE + 0.2
  test = search.evaluate_dataset(NNX_TASK, result.state, dataset()[2], batch_size=50)
  assert test["count"] == 128


def test_kill_and_resume_equals_an_uninterrupted_run(tmp_path, amlfs_run):
  train, val, _ = dataset()
  out = str(tmp_path / "run")

  class Killed(Exception):
    pass

  def kill_after_epoch_1(record, state):
    if record["epoch"] == 1:
      raise Killed

  cfg = config(epochs=3, output_dir=out, max_to_keep=2)
  with pytest.raises(Killed):
    search.run(MLP_TASK, cfg, train, val, callback=kill_after_epoch_1)
  assert sorted(os.listdir(os.path.join(out, "checkpoints"))) == ["1", "2"]
  with pytest.raises(FileExistsError, match="resume=True"):
    search.run(MLP_TASK, cfg, train, val)
  with pytest.raises(ValueError, match=r"different run \(options.seed\)"):
    search.run(MLP_TASK, config(epochs=3, output_dir=out, seed=5), train, val, resume=True)
  # A kill between the checkpoint and the log write: the record comes from the checkpoint.
  log_path = os.path.join(out, "records.jsonl")
  lines = open(log_path).read().splitlines()
  with open(log_path, "w") as f:
    f.write(lines[0] + "\n" + lines[1][:20])  # the second line cut mid-write
  resumed = search.run(MLP_TASK, cfg, train, val, resume=True)
  assert_trees_equal(resumed.search_state, amlfs_run.search_state)
  assert_trees_equal(resumed.state, amlfs_run.state)
  assert strip_times(resumed.records) == strip_times(amlfs_run.records)
  logged = [json.loads(line) for line in open(log_path)]
  assert strip_times(logged) == strip_times(amlfs_run.records)
  assert sorted(os.listdir(os.path.join(out, "checkpoints"))) == ["2", "3"]
  # Resuming a finished run returns it without training; more epochs continue it.
  again = search.run(MLP_TASK, cfg, train, val, resume=True)
  assert_trees_equal(again.search_state, amlfs_run.search_state)


def _poisoned_train_step(state, batch, theta, key):
  """The MLP's step, made non-finite for a copy whose theta[-1] > 0.15.

  With theta[-2] > 5 the poison only starts after the first epoch (8 steps)."""
  state, metrics = MLP_TASK.train_step(state, batch, theta, key)
  delayed = (theta[-2] > 5) & (state.step <= 8)
  poison = jnp.where((theta[-1] > 0.15) & ~delayed, jnp.nan, 1.0)
  params = jax.tree.map(lambda p: p * poison, state.params)
  return state._replace(params=params), {"loss": metrics["loss"] * poison}


POISONED_TASK = search.Task(init=MLP_TASK.init, train_step=_poisoned_train_step,
                            evaluate=MLP_TASK.evaluate)


def test_a_diverged_copy_is_isolated():
  train, val, _ = dataset()
  result = search.run(POISONED_TASK, config(population_size=8, epochs=2), train, val)
  for r in result.records:
    poisoned = np.asarray(r["thetas"])[:, -1] > 0.15
    assert np.array_equal(~poisoned, np.asarray(r["finite"]))
    if r["epoch"] == 0:
      assert 0 < poisoned.sum() < 8  # the scenario has both kinds of copy
    assert not poisoned[r["best_index"]]  # never broadcast
    # The others' normalised rewards are normalised among themselves only.
    z = np.asarray(r["normalized_rewards"])
    rewards = np.asarray(r["rewards"])[~poisoned]
    if rewards.std() > 0:
      np.testing.assert_allclose(z[~poisoned], (rewards - rewards.mean()) / rewards.std(),
                                 rtol=1e-5, atol=1e-6)
    assert np.all(z[poisoned] <= min(-1, z[~poisoned].min()))  # the worst reward
    assert all(v is None for v, bad in zip(r["train_loss"], poisoned) if bad)
  assert result.records[0]["mu_next"] != result.records[0]["mu"]  # mu still learns
  assert bool(search.tree_all_finite(result.search_state))


def test_every_copy_diverged_stops_with_the_last_good_checkpoint(tmp_path):
  train, val, _ = dataset()
  theta = identity_theta().at[-2].set(10.0).at[-1].set(1.0)  # every copy, from epoch 1 on
  out = str(tmp_path / "diverge")
  cfg = config(strategy="fixed", selection="none", population_size=8, initial_mu=theta,
               output_dir=out)
  with pytest.raises(search.PopulationDivergedError, match="every copy") as info:
    search.run(POISONED_TASK, cfg, train, val)
  assert info.value.epoch == 1 and info.value.last_checkpoint == 1
  assert os.listdir(os.path.join(out, "checkpoints")) == ["1"]
  assert len(open(os.path.join(out, "records.jsonl")).readlines()) == 1


def test_evaluate_dataset_includes_the_last_partial_batch():
  # Two programs (one batch; 50 + 50 + 28) compared exactly: float64 data make the float32
  # model compute in float64, where a rounding difference (~1e-16) moves an example across a
  # class boundary only if its margin is below ~1e-12 (none is, by far, on this split).
  _, _, test = dataset64()
  state = jax.jit(MLP_TASK.init)(jax.random.key(0))
  whole = search.evaluate_dataset(MLP_TASK, state, test, batch_size=1000)  # one batch
  assert whole["count"] == 128
  assert search.evaluate_dataset(MLP_TASK, state, test, batch_size=50) == whole  # 50+50+28


def test_configuration_errors():
  train, val, _ = dataset()
  with pytest.raises(ValueError, match="`strategy` must be one of"):
    config(strategy="grid")
  with pytest.raises(ValueError, match="`selection` must be one of"):
    config(selection="grid")
  with pytest.raises(ValueError, match="initial_mu"):
    search.SearchConfig()
  with pytest.raises(ValueError, match="population_size"):
    config(population_size=0)
  with pytest.raises(ValueError, match="batch_size"):
    search.run(MLP_TASK, config(batch_size=1000), train, val)

  def no_loss(state, batch, theta, key):
    state, metrics = MLP_TASK.train_step(state, batch, theta, key)
    return state, {"xent": metrics["loss"]}

  bad = search.Task(init=MLP_TASK.init, train_step=no_loss, evaluate=MLP_TASK.evaluate)
  with pytest.raises(ValueError, match="'loss'"):
    search.run(bad, config(epochs=1), train, val)


def test_checkpoint_store_round_trips_typed_keys_and_keeps_the_latest(tmp_path):
  state = {"key": jax.random.key(3), "keys": jax.random.split(jax.random.key(1), 4),
           "x": jnp.arange(3.0, dtype=jnp.float32)}
  abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=a.sharding),
                          state)
  store = search.CheckpointStore(str(tmp_path / "ckpt"), max_to_keep=2)
  for step in (1, 2, 3):
    store.save(step, jax.tree.map(lambda a: a, state), {"step": step})
  store.wait()
  assert store.all_steps() == [2, 3]
  restored, meta = store.restore(None, abstract)
  assert meta == {"step": 3}
  assert_trees_equal(restored, state)
  store.close()


def test_progress_falls_back_to_one_line_per_epoch_without_tqdm(monkeypatch, capsys):
  import sys  # pylint: disable=import-outside-toplevel

  from jaxloss.search.records import Progress  # pylint: disable=import-outside-toplevel
  monkeypatch.setitem(sys.modules, "tqdm", None)
  monkeypatch.setitem(sys.modules, "tqdm.auto", None)
  progress = Progress(3, 1, desc="amlfs", file=sys.stdout)
  progress.update(1, 0.625)
  progress.update(2, float("nan"))
  progress.close()
  lines = capsys.readouterr().out.splitlines()
  assert lines[0].startswith("amlfs: epoch 2/3  best val 0.6250  ETA ")
  assert lines[1].startswith("amlfs: epoch 3/3  best val nan  ETA 00:00")
