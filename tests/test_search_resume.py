"""Resume continues the same run or refuses: the fingerprint, damaged checkpoints, the log.

Every run here is the program of test_search_engine's ``amlfs_run`` (the MLP, B=4, three
epochs), so a resumed run is compared bitwise with an uninterrupted one: both execute the
same compiled program.
"""

import dataclasses
import glob
import json
import os
import shutil

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxloss import search
from jaxloss.search import fingerprint as fp
from tests.test_search_common import MLP_TASK, assert_trees_equal, config, dataset, strip_times


@pytest.fixture(scope="module")
def reference():
  train, val, _ = dataset()
  return search.run(MLP_TASK, config(mode="amlfs", epochs=3), train, val)


def _read_log(out):
  with open(os.path.join(out, "records.jsonl")) as f:
    return [json.loads(line) for line in f]


def _shifted_val():
  _, (x, y), _ = dataset()
  return x + np.float32(0.5), y


def _other_train_step(state, batch, theta, key):
  state, metrics = MLP_TASK.train_step(state, batch, theta, key)
  return state, {"loss": 2 * metrics["loss"]}


@pytest.mark.parametrize("change, name", [
    (dict(mu_optimizer=optax.adam(0.01)), "mu_optimizer"),
    (dict(mu_optimizer=optax.sgd(0.05)), "mu_optimizer"),
    (dict(reward_fn=lambda t: t["correct"] / t["count"] - 0.5), "reward_fn"),
    (dict(sigma=0.3), "sigma"),
    (dict(seed=5), "seed"),
    (dict(scan_unroll=2), "scan_unroll"),
    (dict(task=dataclasses.replace(MLP_TASK, train_step=_other_train_step)),
     "task.train_step"),
    (dict(val=_shifted_val()), "val"),
    (dict(val=tuple(a[:100] for a in dataset()[1])), "val"),
    (dict(train=tuple(a[::-1] for a in dataset()[0])), "train"),
])
def test_resume_with_anything_else_is_refused_naming_it(tmp_path, change, name):
  train, val, _ = dataset()
  out = str(tmp_path / "run")
  search.run(MLP_TASK, config(mode="amlfs", epochs=1, output_dir=out), train, val)
  change = dict(change)
  task = change.pop("task", MLP_TASK)
  train, val = change.pop("train", train), change.pop("val", val)
  cfg = config(mode="amlfs", epochs=2, output_dir=out, **change)
  with pytest.raises(ValueError, match=rf"different options \(`?{name}"):
    search.run(task, cfg, train, val, resume=True)


def test_resume_accepts_equal_but_new_objects(tmp_path, reference):
  """Equal options built again (a new adam(0.05), a re-created task) are the same run."""
  train, val, _ = dataset()
  out = str(tmp_path / "run")
  search.run(MLP_TASK, config(mode="amlfs", epochs=1, output_dir=out), train, val)
  resumed = search.run(
      dataclasses.replace(MLP_TASK),
      config(mode="amlfs", epochs=3, output_dir=out, mu_optimizer=optax.adam(0.05)),
      (train[0].copy(), train[1].copy()), val, resume=True)
  assert_trees_equal(resumed.search_state, reference.search_state)
  assert strip_times(resumed.records) == strip_times(reference.records)


def test_describe_is_stable_and_sees_numbers_in_closures():
  assert fp.describe(optax.adam(0.05)) == fp.describe(optax.adam(0.05))
  assert fp.describe(optax.adam(0.05)) != fp.describe(optax.adam(0.05, b1=0.8))
  assert fp.describe(optax.adam(optax.cosine_decay_schedule(0.1, 100))) != fp.describe(
      optax.adam(optax.cosine_decay_schedule(0.1, 200)))
  scale = lambda s: (lambda t: s * t["correct"] / t["count"])
  assert fp.describe(scale(1.0)) == fp.describe(scale(1.0)) != fp.describe(scale(2.0))
  assert "0x" not in fp.describe(MLP_TASK)  # no memory addresses
  x = np.arange(12.0).reshape(6, 2)
  assert fp.data_fingerprint((x, x[:, 0])) == fp.data_fingerprint((x.copy(), x[:, 0].copy()))
  y = x.copy()
  y[-1, 1] += 1  # the last example is always in the sample
  assert fp.data_fingerprint(y) != fp.data_fingerprint(x)


def _damage_latest(out, how):
  latest = os.path.join(out, "checkpoints", "3")
  if how == "truncated metadata":
    with open(os.path.join(latest, "meta", "metadata"), "r+") as f:
      f.truncate(5)
  elif how == "missing state files":
    for path in glob.glob(os.path.join(latest, "state", "**", "manifest.ocdbt"), recursive=True):
      os.remove(path)
  elif how == "missing state item":
    shutil.rmtree(os.path.join(latest, "state"))


@pytest.mark.parametrize("how", ["truncated metadata", "missing state files",
                                 "missing state item"])
def test_a_damaged_latest_checkpoint_falls_back_to_the_newest_intact_one(tmp_path, reference,
                                                                         how):
  train, val, _ = dataset()
  out = str(tmp_path / "run")
  cfg = config(mode="amlfs", epochs=3, output_dir=out)
  search.run(MLP_TASK, cfg, train, val)
  _damage_latest(out, how)
  with pytest.warns(RuntimeWarning, match=r"checkpoints/3 is damaged.*falling back"):
    resumed = search.run(MLP_TASK, cfg, train, val, resume=True)  # redoes epoch 2
  assert_trees_equal(resumed.search_state, reference.search_state)
  assert strip_times(resumed.records) == strip_times(reference.records)
  assert strip_times(_read_log(out)) == strip_times(reference.records)
  assert sorted(os.listdir(os.path.join(out, "checkpoints"))) == ["1", "2", "3"]
  again = search.run(MLP_TASK, cfg, train, val, resume=True)  # the rewritten 3 is intact
  assert_trees_equal(again.search_state, reference.search_state)


def test_every_checkpoint_damaged_is_an_error_naming_the_directory(tmp_path):
  train, val, _ = dataset()
  out = str(tmp_path / "run")
  cfg = config(mode="amlfs", epochs=2, output_dir=out)
  search.run(MLP_TASK, cfg, train, val)
  for step in ("1", "2"):
    with open(os.path.join(out, "checkpoints", step, "meta", "metadata"), "w") as f:
      f.write("{")
  directory = os.path.abspath(os.path.join(out, "checkpoints"))
  with pytest.warns(RuntimeWarning, match="damaged"):
    with pytest.raises(search.CheckpointDamagedError,
                       match=f"every checkpoint in {directory} is damaged"):
      search.run(MLP_TASK, cfg, train, val, resume=True)
  # Never a silent fresh start: the damaged checkpoints are still there.
  assert sorted(os.listdir(os.path.join(out, "checkpoints"))) == ["1", "2"]


@pytest.mark.parametrize("damage", ["missing", "short", "empty"])
def test_the_log_is_rebuilt_from_the_checkpoints(tmp_path, reference, damage):
  train, val, _ = dataset()
  out = str(tmp_path / "run")
  cfg = config(mode="amlfs", epochs=3, output_dir=out, max_to_keep=1)
  search.run(MLP_TASK, cfg, train, val)
  path = os.path.join(out, "records.jsonl")
  if damage == "missing":
    os.remove(path)
  else:
    lines = open(path).read().splitlines()
    with open(path, "w") as f:
      f.write("" if damage == "empty" else lines[0] + "\n")
  # Only the last checkpoint is kept, and it holds every record so far.
  assert os.listdir(os.path.join(out, "checkpoints")) == ["3"]
  resumed = search.run(MLP_TASK, cfg, train, val, resume=True)
  assert strip_times(resumed.records) == strip_times(reference.records)
  assert _read_log(out) == resumed.records  # the same records, times included


def test_a_checkpoint_record_is_the_logged_record(tmp_path):
  """One record per epoch, built once: the checkpoint holds exactly what the log holds."""
  train, val, _ = dataset()
  out = str(tmp_path / "run")
  search.run(MLP_TASK, config(mode="amlfs", epochs=2, output_dir=out), train, val)
  store = search.CheckpointStore(os.path.join(out, "checkpoints"))
  meta = store.restore_meta(2)
  store.close()
  logged = _read_log(out)
  assert meta["records"] == logged and meta["record"] == logged[-1]
  assert {"step_s", "log_s", "wall_s", "compile_s"} <= set(logged[0]["time"])
  assert "checkpoint_s" in logged[1]["time"]  # the write of the previous epoch's checkpoint
  assert jnp.isfinite(logged[1]["time"]["wall_s"])


def test_a_checkpoint_of_the_older_format_resumes_on_its_options(tmp_path, reference):
  """Checkpoints written before the full fingerprint (meta: options and the last record
  only) still resume: the options are compared, with a warning, and the log is kept."""
  train, val, _ = dataset()
  out = str(tmp_path / "run")
  cfg = config(mode="amlfs", epochs=3, output_dir=out)
  search.run(MLP_TASK, cfg, train, val, stop_after=2)
  path = os.path.join(out, "checkpoints", "2", "meta", "metadata")
  with open(path) as f:
    meta = json.load(f)
  with open(path, "w") as f:
    json.dump({"config": meta["config"], "record": meta["record"]}, f)
  with pytest.warns(RuntimeWarning, match="predates the full resume fingerprint"):
    resumed = search.run(MLP_TASK, cfg, train, val, resume=True)
  assert strip_times(resumed.records) == strip_times(reference.records)
  with open(path, "w") as f:
    json.dump({"config": {**meta["config"], "sigma": 0.5}, "record": meta["record"]}, f)
  os.remove(os.path.join(out, "checkpoints", "3", "meta", "metadata"))  # back to 2
  with pytest.warns(RuntimeWarning):
    with pytest.raises(ValueError, match=r"different options \(sigma\)"):
      search.run(MLP_TASK, cfg, train, val, resume=True)
