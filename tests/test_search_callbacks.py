"""Logs a cluster job can read, and Ctrl-C (issue 24): ``jaxloss.search.callbacks`` (a metrics
CSV, TensorBoard event files, chaining), the plain progress lines when stderr is not a
terminal, the "compiling ..." line, and ``SearchInterrupted``."""

import csv
import glob
import io
import math
import os
import signal

import numpy as np
import pytest

from jaxloss import search
from jaxloss.search import callbacks
from jaxloss.search.records import Progress
from tests.test_search_common import MLP_TASK, config, dataset, strip_times

B = 4


def _read_csv(path):
  with open(path, newline="") as f:
    return list(csv.DictReader(f))


def test_csv_and_tensorboard_logs_of_a_run_are_read_back(tmp_path):
  pytest.importorskip("tensorboardX")
  from tensorboardX.proto import event_pb2  # pylint: disable=import-outside-toplevel

  train, val, test = dataset()
  csv_path, logdir = tmp_path / "metrics.csv", tmp_path / "tb"
  tb = callbacks.TensorBoardLogger(str(logdir))
  seen = []
  result = search.run(MLP_TASK, config(epochs=2), train, val, monitor={"test": test},
                      callback=[callbacks.CSVLogger(str(csv_path)), tb,
                                lambda record, state: seen.append(record["epoch"])])
  tb.close()
  assert seen == [0, 1]  # a list of callbacks: each is called, in order

  rows = _read_csv(csv_path)
  assert [int(r["epoch"]) for r in rows] == [1, 2]
  dim = len(result.mu)
  for row, record in zip(rows, result.records):
    assert int(row["best_index"]) == record["best_index"]
    np.testing.assert_allclose([float(row[f"reward_{i}"]) for i in range(B)], record["rewards"])
    np.testing.assert_allclose([float(row[f"train_loss_{i}"]) for i in range(B)],
                               record["train_loss"])
    np.testing.assert_allclose([float(row[f"mu_{j}"]) for j in range(dim)], record["mu_next"])
    assert math.isclose(float(row["test_score"]), record["monitor"]["test"]["score"])
  np.testing.assert_allclose([float(rows[-1][f"mu_{j}"]) for j in range(dim)], result.mu,
                             rtol=1e-6)

  files = glob.glob(os.path.join(logdir, "events.out.tfevents.*"))
  assert len(files) == 1
  scalars = {}
  with open(files[0], "rb") as f:  # TFRecord: length, crc, event, crc
    data = f.read()
  offset = 0
  while offset < len(data):
    length = int.from_bytes(data[offset:offset + 8], "little")
    event = event_pb2.Event.FromString(data[offset + 12:offset + 12 + length])
    offset += 12 + length + 4
    for value in event.summary.value:
      scalars.setdefault(value.tag, {})[event.step] = value.simple_value
  assert set(scalars["val/best_reward"]) == {1, 2}
  for step, record in zip((1, 2), result.records):
    assert math.isclose(scalars["val/best_reward"][step], record["best_reward"], rel_tol=1e-6)
    assert scalars["search/best_index"][step] == record["best_index"]
    for i in range(B):
      assert math.isclose(scalars[f"train/loss/{i}"][step], record["train_loss"][i],
                          rel_tol=1e-6)
    assert math.isclose(scalars["mu/0"][step], record["mu_next"][0], rel_tol=1e-6,
                        abs_tol=1e-7)
    assert math.isclose(scalars["test/score"][step], record["monitor"]["test"]["score"],
                        rel_tol=1e-6)


def test_the_csv_of_a_resumed_run_continues_without_duplicate_epochs(tmp_path):
  train, val, _ = dataset()
  out, path = str(tmp_path / "run"), str(tmp_path / "run" / "metrics.csv")
  cfg = config(epochs=3, output_dir=out)
  search.run(MLP_TASK, cfg, train, val, stop_after=2, callback=callbacks.CSVLogger(path))
  # A row of an epoch the checkpoint does not hold (the job was killed after the CSV row):
  rows = _read_csv(path)
  with open(path, "a", newline="") as f:
    csv.DictWriter(f, fieldnames=list(rows[0])).writerow({**rows[-1], "epoch": "3"})
  result = search.run(MLP_TASK, cfg, train, val, resume=True,
                      callback=callbacks.CSVLogger(path))
  rows = _read_csv(path)
  assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
  assert int(rows[-1]["best_index"]) == result.records[-1]["best_index"]


def test_chain_skips_none_and_refuses_what_is_not_callable():
  calls = []
  cb = callbacks.chain(None, lambda r, s: calls.append(1), lambda r, s: calls.append(2))
  cb({}, None)
  assert calls == [1, 2]
  with pytest.raises(TypeError, match="not callable"):
    callbacks.chain(3)
  train, val, _ = dataset()
  with pytest.raises(TypeError, match="`callback` must be a function"):
    search.run(MLP_TASK, config(epochs=1), train, val, callback="print")


@pytest.mark.parametrize("how", ["raise", "signal"])
def test_ctrl_c_keeps_every_epoch_shown_and_resume_continues(tmp_path, capfd, how):
  """Ctrl-C in the second epoch's callback (the epoch is checkpointed and shown by then)."""
  train, val, _ = dataset()
  out = str(tmp_path / "run")
  cfg = config(epochs=3, output_dir=out, progress="lines")

  def interrupt(record, state):
    del state
    if record["epoch"] == 1:
      if how == "signal":
        signal.raise_signal(signal.SIGINT)
      raise KeyboardInterrupt

  # Python's own SIGINT handler for this test (a pytest-xdist worker installs its own, which
  # ends the worker); restored afterwards.
  previous = signal.signal(signal.SIGINT, signal.default_int_handler)
  try:
    with pytest.raises(search.SearchInterrupted) as caught:
      search.run(MLP_TASK, cfg, train, val, callback=interrupt)
  finally:
    signal.signal(signal.SIGINT, previous)
  error = caught.value
  assert isinstance(error, KeyboardInterrupt)
  assert (error.epochs_completed, error.epochs, error.checkpointed) == (2, 3, True)
  assert str(error) == "stopped after epoch 2 of 3; continue with resume=True"
  err = capfd.readouterr().err
  assert "epoch 2/3" in err and "epoch 3/3" not in err  # shown: exactly the kept epochs
  assert len(search.read_records(out)) == 2
  result = search.run(MLP_TASK, cfg, train, val, resume=True)
  assert result.finished and len(result.records) == 3
  whole = search.run(MLP_TASK, config(epochs=3), train, val)
  assert strip_times(result.records) == strip_times(whole.records)


def test_ctrl_c_without_output_dir_says_nothing_is_kept():
  train, val, _ = dataset()

  def interrupt(record, state):
    raise KeyboardInterrupt

  with pytest.raises(search.SearchInterrupted,
                     match=r"^stopped after epoch 1 of 2; nothing is kept \(no output_dir\)$"):
    search.run(MLP_TASK, config(epochs=2), train, val, callback=interrupt)


def test_progress_is_plain_lines_off_a_terminal_with_a_compiling_line(capfd):
  train, val, _ = dataset()
  search.run(MLP_TASK, config(epochs=2, progress=True), train, val)
  err = capfd.readouterr().err  # pytest's stderr is not a terminal
  lines = err.strip().splitlines()
  assert "\r" not in err
  assert lines[0].startswith("paper: compiling the epoch program (B=4, epochs 1-2 of 2)")
  assert lines[1].startswith("paper: compiled in ")
  assert lines[2].startswith("paper: epoch 1/2  best val ") and "ETA" in lines[2]
  assert lines[3].startswith("paper: epoch 2/2  best val ")
  assert len(lines) == 4
  search.run(MLP_TASK, config(epochs=1, progress=False), train, val)
  assert capfd.readouterr().err == ""
  with pytest.raises(ValueError, match="`progress` must be True, False or 'lines'"):
    config(progress="bar")


def test_progress_on_a_terminal_is_a_bar_and_lines_when_asked():
  pytest.importorskip("tqdm")

  class Terminal(io.StringIO):
    def isatty(self):
      return True

  bar = Progress(3, file=Terminal())
  assert not bar.plain
  bar.close()
  assert Progress(3, file=Terminal(), lines=True).plain
  assert Progress(3, file=io.StringIO()).plain
  assert not Progress(3, file=io.StringIO(), enabled=False).plain


def test_tensorboard_without_its_extra_names_the_extra(monkeypatch, tmp_path):
  monkeypatch.setitem(__import__("sys").modules, "tensorboardX", None)
  assert not callbacks.tensorboard_available()
  with pytest.raises(ImportError, match=r"pip install 'jaxloss\[tensorboard\]'"):
    callbacks.TensorBoardLogger(str(tmp_path))
