"""Resume continues the same run or refuses: the fingerprint, damaged checkpoints, the log,
edits of the user's code (comments pass, code refuses, ``allow_changed`` overrides and
records), and ``read_records``.

Most runs here are the program of test_search_engine's ``amlfs_run`` (the MLP, B=4, the
paper's strategy), so a resumed run is compared bitwise with an uninterrupted one: both
execute the same compiled program.
"""

import dataclasses
import glob
import json
import os
import shutil
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxloss import search
from jaxloss.search import resume as rs
from jaxloss.search import strategies
from tests.test_search_common import (
  MLP_TASK,
  amlfs_cosine_loss,
  assert_trees_equal,
  config,
  dataset,
  mlp_cosine,
  mlp_init,
  strip_times,
)


@pytest.fixture(scope="module")
def reference():
  train, val, _ = dataset()
  return search.run(MLP_TASK, config(epochs=3), train, val)


@pytest.fixture(scope="module")
def one_epoch(tmp_path_factory):
  """The output folder of the reference run stopped after one epoch (copy it to use it)."""
  train, val, _ = dataset()
  out = str(tmp_path_factory.mktemp("one_epoch") / "run")
  search.run(MLP_TASK, config(epochs=1, output_dir=out), train, val)
  return out


def _copy_run(source, tmp_path):
  out = str(tmp_path / "run")
  shutil.copytree(source, out)
  return out


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
    (dict(strategy=strategies.Gaussian(optimizer=optax.adam(0.01))), "strategy"),
    (dict(strategy=strategies.Gaussian(optimizer=optax.sgd(0.05))), "strategy"),
    (dict(reward_fn=lambda t: t["correct"] / t["count"] - 0.5), "reward_fn"),
    (dict(strategy=strategies.Gaussian(sigma=0.3)), "strategy"),
    (dict(seed=5), "options.seed"),
    (dict(scan_unroll=2), "options.scan_unroll"),
    # A replaced function: the optax_task's parts no longer describe the task, which is then
    # described by its three functions (every task entry differs; train_step among them).
    (dict(task=dataclasses.replace(MLP_TASK, train_step=_other_train_step)),
     r"[^)]*task\.train_step"),
    (dict(task=search.Task(init=MLP_TASK.init, train_step=_other_train_step,
                           evaluate=MLP_TASK.evaluate)), r"[^)]*task\.train_step"),
    (dict(val=_shifted_val()), "val"),
    (dict(val=tuple(a[:100] for a in dataset()[1])), "val"),
    (dict(train=tuple(a[::-1] for a in dataset()[0])), "train"),
])
def test_resume_with_anything_else_is_refused_naming_it(tmp_path, one_epoch, change, name):
  train, val, _ = dataset()
  out = _copy_run(one_epoch, tmp_path)
  change = dict(change)
  task = change.pop("task", MLP_TASK)
  train, val = change.pop("train", train), change.pop("val", val)
  cfg = config(epochs=2, output_dir=out, **change)
  with pytest.raises(ValueError, match=rf"different run \({name}"):
    search.run(task, cfg, train, val, resume=True)


def test_resume_accepts_equal_but_new_objects(tmp_path, one_epoch, reference):
  """Equal options built again (a new Gaussian equal to the paper's, a re-created task, copied
  data) are the same run."""
  train, val, _ = dataset()
  out = _copy_run(one_epoch, tmp_path)
  resumed = search.run(
      dataclasses.replace(MLP_TASK),
      config(epochs=3, output_dir=out, strategy=strategies.Gaussian(sigma=0.2,
                                                                    learning_rate=0.05)),
      (train[0].copy(), train[1].copy()), val, resume=True)
  assert resumed.changes == []
  assert_trees_equal(resumed.search_state, reference.search_state)
  # The records name the strategy as given ('paper' in the first run, the class now).
  assert [r["strategy"] for r in resumed.records] == ["paper", "Gaussian", "Gaussian"]
  unnamed = lambda records: [{k: v for k, v in r.items() if k != "strategy"}
                             for r in strip_times(records)]
  assert unnamed(resumed.records) == unnamed(reference.records)


def test_describe_is_stable_and_sees_numbers_in_closures():
  assert rs.describe(optax.adam(0.05)) == rs.describe(optax.adam(0.05))
  assert rs.describe(optax.adam(0.05)) != rs.describe(optax.adam(0.05, b1=0.8))
  assert rs.describe(optax.adam(optax.cosine_decay_schedule(0.1, 100))) != rs.describe(
      optax.adam(optax.cosine_decay_schedule(0.1, 200)))
  scale = lambda s: (lambda t: s * t["correct"] / t["count"])
  assert rs.describe(scale(1.0)) == rs.describe(scale(1.0)) != rs.describe(scale(2.0))
  assert "0x" not in rs.describe(MLP_TASK)  # no memory addresses
  x = np.arange(12.0).reshape(6, 2)
  assert rs.data_fingerprint((x, x[:, 0])) == rs.data_fingerprint((x.copy(), x[:, 0].copy()))
  y = x.copy()
  y[-1, 1] += 1  # the last example is always in the sample
  assert rs.data_fingerprint(y) != rs.data_fingerprint(x)


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
  cfg = config(epochs=3, output_dir=out)
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
  cfg = config(epochs=2, output_dir=out)
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
  cfg = config(epochs=3, output_dir=out, max_to_keep=1)
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
  search.run(MLP_TASK, config(epochs=2, output_dir=out), train, val)
  store = search.CheckpointStore(os.path.join(out, "checkpoints"))
  meta = store.restore_meta(2)
  store.close()
  logged = _read_log(out)
  assert meta["records"] == logged
  assert logged[0]["strategy"] == "paper" and logged[0]["selection"] == "best"
  assert {"step_s", "log_s", "wall_s", "compile_s"} <= set(logged[0]["time"])
  assert "checkpoint_s" in logged[1]["time"]  # the write of the previous epoch's checkpoint
  assert jnp.isfinite(logged[1]["time"]["wall_s"])


def test_a_checkpoint_of_an_older_version_is_refused(tmp_path, one_epoch):
  """Checkpoints written before the run fingerprint (meta: the options and the last record)
  are never resumed: they could belong to another run."""
  train, val, _ = dataset()
  out = _copy_run(one_epoch, tmp_path)
  path = os.path.join(out, "checkpoints", "1", "meta", "metadata")
  with open(path) as f:
    meta = json.load(f)
  with open(path, "w") as f:
    json.dump({"config": meta["fingerprint"]["options"], "record": meta["records"][-1]}, f)
  with pytest.raises(ValueError, match="holds no run fingerprint"):
    search.run(MLP_TASK, config(epochs=2, output_dir=out), train, val, resume=True)
  assert os.listdir(os.path.join(out, "checkpoints")) == ["1"]  # kept, never overwritten
  with pytest.raises(ValueError, match="holds no run fingerprint"):
    rs.check_resume(None, meta["fingerprint"])


# ------------------------------------------------------------ edits of the user's code

# The user's loss as three versions of its source file: the first; the same code with other
# comments, blank lines and line breaks; and one changed constant (the augmentation gain).
LOSS_SOURCE = '''
def loss(params, model_state, batch, theta, key):
  x, y = batch
  # "Augmentation": a random gain from the step key.
  x = x * (1 + 0.1 * jax.random.uniform(key, (), x.dtype))
  return amlfs_cosine_loss(mlp_cosine(params, x), y, theta), model_state
'''

REFORMATTED_SOURCE = '''
# The same loss, reformatted and commented: its compiled code is the same.


def loss(params, model_state,
         batch, theta, key):


  x, y = batch  # inputs and labels
  x = x * (1 +
           0.1 * jax.random.uniform(key, (),
                                    x.dtype))   # a random gain
  return (amlfs_cosine_loss(mlp_cosine(params, x), y,
                            theta),
          model_state)
'''

CHANGED_SOURCE = LOSS_SOURCE.replace("0.1 *", "0.2 *")


def _compile_loss(source):
  """``loss`` defined by ``source`` as a file ``user_losses.py`` of a module ``user_losses``."""
  namespace = {"__name__": "user_losses", "jax": jax, "amlfs_cosine_loss": amlfs_cosine_loss,
               "mlp_cosine": mlp_cosine}
  exec(compile(source, "user_losses.py", "exec"), namespace)
  return namespace["loss"]


def _init(key):
  return mlp_init(key), None


def _evaluate(params, model_state, batch):
  x, y = batch
  return search.classification_metrics(mlp_cosine(params, x), y)


def _user_task(loss, optimizer=None):
  return search.optax_task(init=_init, loss=loss, evaluate=_evaluate,
                           optimizer=optax.adam(0.02) if optimizer is None else optimizer)


LOSS = _compile_loss(LOSS_SOURCE)
USER_TASK = _user_task(LOSS)
EDITED_TASK = _user_task(_compile_loss(REFORMATTED_SOURCE))
CHANGED_TASK = _user_task(_compile_loss(CHANGED_SOURCE))


@pytest.fixture(scope="module")
def user_run(tmp_path_factory):
  """One epoch of USER_TASK with checkpoints (copy the folder to use it)."""
  train, val, _ = dataset()
  out = str(tmp_path_factory.mktemp("user_run") / "run")
  search.run(USER_TASK, config(epochs=1, output_dir=out), train, val)
  return out


def test_the_description_of_a_function_ignores_comments_and_formatting_only():
  edited, changed = EDITED_TASK.named_parts()[1][1], CHANGED_TASK.named_parts()[1][1]
  assert LOSS.__code__.co_firstlineno != edited.__code__.co_firstlineno  # other lines
  assert rs.describe(edited) == rs.describe(LOSS) != rs.describe(changed)
  assert rs.describe(LOSS).startswith("user_losses.loss#")


def test_a_comment_or_formatting_edit_of_the_loss_resumes(tmp_path, user_run):
  train, val, _ = dataset()
  out = _copy_run(user_run, tmp_path)
  with warnings.catch_warnings():
    warnings.simplefilter("error", RuntimeWarning)  # no "changed" warning
    resumed = search.run(EDITED_TASK, config(epochs=2, output_dir=out), train, val,
                         resume=True)
  assert resumed.finished and resumed.changes == []
  assert [r["epoch"] for r in resumed.records] == [0, 1]
  assert "resumed_with_changes" not in resumed.records[-1]


def test_a_changed_constant_in_the_loss_is_refused_naming_the_function(tmp_path, user_run):
  train, val, _ = dataset()
  out = _copy_run(user_run, tmp_path)
  cfg = config(epochs=2, output_dir=out)
  with pytest.raises(ValueError, match=r"different run \(task\.loss\).*the task's `loss` "
                     r"\(user_losses\.loss\).*allow_changed=\('task\.loss',\)"):
    search.run(CHANGED_TASK, cfg, train, val, resume=True)
  # Allowing another entry does not allow this one.
  with pytest.raises(ValueError, match=r"different run \(task\.loss\)"):
    search.run(CHANGED_TASK, cfg, train, val, resume=True, allow_changed=("task.optimizer",))
  with pytest.raises(ValueError, match="`allow_changed` must be a sequence"):
    search.run(CHANGED_TASK, cfg, train, val, resume=True, allow_changed=5)
  assert os.listdir(os.path.join(out, "checkpoints")) == ["1"]  # nothing was written


def test_allow_changed_resumes_warns_and_records_the_change(tmp_path, user_run):
  train, val, _ = dataset()
  out = _copy_run(user_run, tmp_path)
  with pytest.warns(RuntimeWarning, match=r"after epoch 0 with changed task\.loss"):
    changed = search.run(CHANGED_TASK, config(epochs=2, output_dir=out), train, val,
                         resume=True, allow_changed=("task.loss",))
  expected = [{"epoch": 1, "changed": ["task.loss"],
               "before": {"task.loss": rs.describe(LOSS)}}]
  assert changed.finished and changed.changes == expected
  assert "resumed_with_changes" not in changed.records[0]
  assert changed.records[1]["resumed_with_changes"] == ["task.loss"]
  assert search.read_records(out) == changed.records  # the log has it too
  store = search.CheckpointStore(os.path.join(out, "checkpoints"))
  meta = store.restore_meta(2)
  store.close()
  assert meta["changes"] == expected
  assert meta["fingerprint"]["task"]["loss"] == rs.describe(CHANGED_TASK.named_parts()[1][1])
  # The checkpoint is now the changed run's: resuming it needs no override, keeps the
  # history of changes, and the original loss is now the one refused.
  with pytest.raises(ValueError, match=r"different run \(task\.loss\)"):
    search.run(USER_TASK, config(epochs=3, output_dir=out), train, val, resume=True)
  with warnings.catch_warnings():
    warnings.simplefilter("error", RuntimeWarning)
    further = search.run(CHANGED_TASK, config(epochs=3, output_dir=out), train, val,
                         resume=True)
  assert further.changes == expected
  assert [("resumed_with_changes" in r) for r in further.records] == [False, True, False]


STEPS_PER_EPOCH = 256 // 32  # the MLP tests' training split and batch size


def _sgd(learning_rate, scale_after_epoch_0):
  """SGD whose learning rate is multiplied by ``scale_after_epoch_0`` from epoch 1 on."""
  return optax.sgd(optax.piecewise_constant_schedule(
      learning_rate, {STEPS_PER_EPOCH: scale_after_epoch_0}))


def _decayed_loss(params, model_state, batch, theta, key):
  """The loss plus a small L2 penalty: exploding weights make it overflow (cosine logits alone
  are scale-invariant and would stay finite)."""
  value, model_state = LOSS(params, model_state, batch, theta, key)
  return value + 1e-4 * sum(jnp.sum(p * p) for p in jax.tree.leaves(params)), model_state


# Every copy diverges in epoch 1 (learning rate 0.05 * 1e30), after the epoch-0 checkpoint.
DIVERGING_TASK = _user_task(_decayed_loss, _sgd(0.05, 1e30))


@pytest.mark.parametrize("learning_rate, scale", [
    (0.05, 0.5),  # the case: the schedule's late scale lowered
    (0.02, 1.0),  # the base rate lowered
])
def test_a_diverged_run_continues_from_its_last_checkpoint_with_a_lower_learning_rate(
    tmp_path, learning_rate, scale):
  train, val, _ = dataset()
  out = str(tmp_path / "run")
  cfg = config(epochs=3, output_dir=out)
  with pytest.raises(search.PopulationDivergedError,
                     match=r"allow_changed=\('task\.optimizer',\)") as info:
    search.run(DIVERGING_TASK, cfg, train, val)
  assert info.value.epoch == 1 and info.value.last_checkpoint == 1
  assert not any(info.value.record["finite"])
  assert os.listdir(os.path.join(out, "checkpoints")) == ["1"]
  # The same schedule with sane values: refused as it is, accepted through the override.
  lowered = _user_task(_decayed_loss, _sgd(learning_rate, scale))
  with pytest.raises(ValueError, match=r"different run \(task\.optimizer\)"):
    search.run(lowered, cfg, train, val, resume=True)
  with pytest.warns(RuntimeWarning, match=r"changed task\.optimizer"):
    result = search.run(lowered, cfg, train, val, resume=True,
                        allow_changed=("task.optimizer",))
  assert result.finished and [r["epoch"] for r in result.records] == [0, 1, 2]
  for record in result.records:
    assert all(record["finite"]) and all(np.isfinite(record["rewards"]))
  assert result.records[-1]["best_reward"] > 0.5
  assert [c["changed"] for c in result.changes] == [["task.optimizer"]]
  assert result.changes[0]["epoch"] == 1
  assert result.records[1]["resumed_with_changes"] == ["task.optimizer"]


# ------------------------------------------------------------------------ read_records


def test_read_records_raises_where_there_is_no_run(tmp_path):
  with pytest.raises(FileNotFoundError, match="holds no search run"):
    search.read_records(str(tmp_path / "nothing"))
  empty = tmp_path / "empty"
  empty.mkdir()
  with pytest.raises(FileNotFoundError, match="holds neither records.jsonl"):
    search.read_records(str(empty))
  a_file = tmp_path / "records.txt"
  a_file.write_text("{}\n")
  with pytest.raises(FileNotFoundError, match="is not a folder"):
    search.read_records(str(a_file))


def test_read_records_rebuilds_them_from_the_newest_checkpoint(tmp_path, one_epoch):
  out = _copy_run(one_epoch, tmp_path)
  logged = search.read_records(out)
  assert [r["epoch"] for r in logged] == [0]
  os.remove(os.path.join(out, "records.jsonl"))
  assert search.read_records(out) == logged
