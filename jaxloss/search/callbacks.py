"""Callbacks of :func:`jaxloss.search.run`: a metrics CSV, TensorBoard event files, chaining.

``search.run(..., callback=cb)`` calls ``cb(record, search_state)`` after every epoch, once
that epoch's checkpoint and record are written. These callbacks turn the records into files
that plotting tools and TensorBoard read, for cluster jobs whose console nobody watches::

  from jaxloss.search import callbacks
  cb = callbacks.chain(callbacks.CSVLogger('runs/amlfs/metrics.csv'),
                       callbacks.TensorBoardLogger('runs/amlfs/tensorboard'))
  result = search.run(task, config, train, val, callback=cb)

Both survive a resume: the CSV keeps only the rows before the first epoch it is handed again
(the run continues from its checkpoint, so a later row would be from the abandoned epochs),
and TensorBoard shows the newest value of a step.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Callable
from typing import Any

Callback = Callable[[dict, Any], None]


def chain(*callbacks: Callback | None) -> Callback:
  """One callback that calls each of ``callbacks`` in order (``None`` entries are skipped)."""
  chosen = tuple(cb for cb in callbacks if cb is not None)
  for cb in chosen:
    if not callable(cb):
      raise TypeError(f"callbacks.chain: {cb!r} is not callable.")

  def call(record: dict, state) -> None:
    for cb in chosen:
      cb(record, state)

  call.callbacks = chosen
  return call


def _number(value) -> float:
  """A record's number (``None`` stands for a non-finite float) as a float."""
  return math.nan if value is None else float(value)


def _values(value) -> list:
  return [_number(v) for v in value] if isinstance(value, (list, tuple)) else [_number(value)]


def epoch_row(record: dict) -> dict:
  """The CSV row of one record: ``epoch`` (1-based: epochs completed), ``best_index``,
  ``best_reward``, each copy's ``reward_<i>`` and ``train_loss_<i>``, ``mu_<j>`` (the mean
  after the epoch's update), the monitored splits' ``<name>_score``, and ``wall_s``."""
  row = {"epoch": int(record["epoch"]) + 1, "strategy": record.get("strategy"),
         "best_index": int(record["best_index"]),
         "best_reward": _number(record.get("best_reward"))}
  for i, value in enumerate(_values(record["rewards"])):
    row[f"reward_{i}"] = value
  for i, value in enumerate(_values(record["train_loss"])):
    row[f"train_loss_{i}"] = value
  for j, value in enumerate(_values(record.get("mu_next", record.get("mu")))):
    row[f"mu_{j}"] = value
  for name, totals in sorted(record.get("monitor", {}).items()):
    row[f"{name}_score"] = _number(totals.get("score"))
  row["wall_s"] = _number(record.get("time", {}).get("wall_s"))
  return row


class CSVLogger:
  """Writes one row per epoch to ``path`` (see :func:`epoch_row` for the columns).

  The file is rewritten whole after every epoch (it stays readable if the job is killed),
  keeping the rows of earlier epochs: a resumed run appends to it.

  Args:
    path: the CSV file; its folder is created.
  """

  def __init__(self, path: str):
    self.path = os.fspath(path)
    self.rows: list[dict] | None = None

  def _read(self) -> list[dict]:
    if not os.path.isfile(self.path):
      return []
    with open(self.path, newline="") as f:
      return list(csv.DictReader(f))

  def __call__(self, record: dict, state=None) -> None:
    del state
    row = epoch_row(record)
    if self.rows is None:
      self.rows = self._read()
    self.rows = [r for r in self.rows if int(r["epoch"]) < row["epoch"]] + [row]
    columns = list(row)
    for r in self.rows:
      columns += [k for k in r if k not in columns]
    os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
    tmp = self.path + ".tmp"
    with open(tmp, "w", newline="") as f:
      writer = csv.DictWriter(f, fieldnames=columns, restval="")
      writer.writeheader()
      writer.writerows(self.rows)
    os.replace(tmp, self.path)


class TensorBoardLogger:
  """TensorBoard event files in ``logdir`` through ``tensorboardX`` (``pip install
  'jaxloss[tensorboard]'``), one step per epoch (1-based).

  Scalars: ``val/best_reward``, ``val/reward/<i>`` and ``train/loss/<i>`` per copy,
  ``train/loss_mean``, ``search/best_index``, ``mu/<j>``, ``<name>/score`` per monitored split,
  ``time/epoch_s``. Call :meth:`close` at the end (or use it as a context manager); the
  events are flushed after every epoch anyway.
  """

  def __init__(self, logdir: str, *, flush_secs: int = 30):
    try:
      from tensorboardX import SummaryWriter  # pylint: disable=import-outside-toplevel
    except ImportError as error:
      raise ImportError("TensorBoardLogger needs tensorboardX: pip install "
                        "'jaxloss[tensorboard]' (or tensorboardX).") from error
    self.logdir = os.fspath(logdir)
    self.writer = SummaryWriter(logdir=self.logdir, flush_secs=flush_secs)

  def __call__(self, record: dict, state=None) -> None:
    del state
    row = epoch_row(record)
    step, add = row["epoch"], self.writer.add_scalar
    add("val/best_reward", row["best_reward"], step)
    add("search/best_index", row["best_index"], step)
    losses = []
    for key, value in row.items():
      if key.startswith("reward_"):
        add(f"val/reward/{key[7:]}", value, step)
      elif key.startswith("train_loss_"):
        add(f"train/loss/{key[11:]}", value, step)
        losses.append(value)
      elif key.startswith("mu_"):
        add(f"mu/{key[3:]}", value, step)
      elif key.endswith("_score"):
        add(f"{key[:-6]}/score", value, step)
    finite = [v for v in losses if math.isfinite(v)]
    if finite:
      add("train/loss_mean", sum(finite) / len(finite), step)
    add("time/epoch_s", row["wall_s"], step)
    self.writer.flush()

  def close(self) -> None:
    self.writer.close()

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()


def tensorboard_available() -> bool:
  """Whether :class:`TensorBoardLogger` can be used (``tensorboardX`` is importable)."""
  try:
    import tensorboardX  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
  except ImportError:
    return False
  return True
