"""Per-epoch records (JSON lines) and the progress display."""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Iterable
from typing import Any

import numpy as np


def to_json(value: Any) -> Any:
  """Converts numpy/JAX scalars and arrays to JSON types; non-finite floats become ``None``."""
  if isinstance(value, dict):
    return {str(k): to_json(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [to_json(v) for v in value]
  if isinstance(value, (bool, np.bool_)):
    return bool(value)
  if isinstance(value, (int, np.integer)):
    return int(value)
  if isinstance(value, (float, np.floating)):
    value = float(value)
    return value if math.isfinite(value) else None
  if isinstance(value, np.ndarray) or hasattr(value, "__array__"):
    return to_json(np.asarray(value).tolist())
  return value


class RecordLog:
  """Append-only JSON-lines file of epoch records (written by process 0 only)."""

  def __init__(self, path: str, *, enabled: bool = True):
    self.path = path
    self.enabled = enabled
    if enabled:
      os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)

  def read(self) -> list[dict]:
    if not os.path.exists(self.path):
      return []
    records = []
    with open(self.path) as f:
      for line in f:
        line = line.strip()
        if not line:
          continue
        try:
          records.append(json.loads(line))
        except json.JSONDecodeError:  # a line cut by a kill mid-write
          break
    return records

  def rewrite(self, records: Iterable[dict]) -> None:
    if not self.enabled:
      return
    tmp = self.path + ".tmp"
    with open(tmp, "w") as f:
      for record in records:
        f.write(json.dumps(record) + "\n")
    os.replace(tmp, self.path)

  def append(self, record: dict) -> None:
    if not self.enabled:
      return
    with open(self.path, "a") as f:
      f.write(json.dumps(record) + "\n")
      f.flush()


def _format_seconds(seconds: float) -> str:
  seconds = max(0, int(round(seconds)))
  h, rest = divmod(seconds, 3600)
  m, s = divmod(rest, 60)
  return f"{h:d}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


class Progress:
  """The progress display of a run.

  A tqdm bar when ``file`` is a terminal and tqdm is importable; otherwise (a cluster job's log,
  ``lines=True``) one plain line per epoch: ``desc: epoch N/M  best val R  ETA mm:ss``.
  :meth:`compiling` and :meth:`compiled` say what the first minute of a run is spent on.
  """

  def __init__(self, total: int, initial: int = 0, *, enabled: bool = True, desc: str = "search",
               file=None, lines: bool = False):
    self.total, self.done, self.enabled, self.desc = total, initial, enabled, desc
    self.file = file if file is not None else sys.stderr
    self._bar = None
    self._start = time.perf_counter()
    self._start_done = initial
    if not enabled or lines or not _is_terminal(self.file):
      return
    try:
      from tqdm.auto import tqdm
    except ImportError:  # plain fallback
      return
    self._bar = tqdm(total=total, initial=initial, desc=desc, unit="epoch", file=self.file,
                     dynamic_ncols=True, leave=True)

  @property
  def plain(self) -> bool:
    """One plain line per epoch (no bar)."""
    return self.enabled and self._bar is None

  def _print(self, text: str) -> None:
    if self._bar is not None:
      self._bar.write(text, file=self.file)
    else:
      print(text, file=self.file, flush=True)

  def compiling(self, what: str) -> None:
    if self.enabled:
      self._print(f"{self.desc}: compiling {what} ...")

  def compiled(self, seconds: float) -> None:
    if self.enabled:
      self._print(f"{self.desc}: compiled in {_format_seconds(seconds)} ({seconds:.1f} s)")
      self._start = time.perf_counter()  # the ETA counts epochs only

  def update(self, epoch: int, best_reward: float, label: str = "best val") -> None:
    self.done += 1
    if not self.enabled:
      return
    value = "nan" if best_reward is None or not math.isfinite(best_reward) else f"{best_reward:.4f}"
    if self._bar is not None:
      self._bar.set_postfix_str(f"epoch {epoch + 1} {label} {value}", refresh=False)
      self._bar.update(1)
      return
    elapsed = time.perf_counter() - self._start
    per_epoch = elapsed / max(1, self.done - self._start_done)
    eta = per_epoch * (self.total - self.done)
    print(f"{self.desc}: epoch {epoch + 1}/{self.total}  {label} {value}  "
          f"ETA {_format_seconds(eta)}", file=self.file, flush=True)

  def close(self) -> None:
    if self._bar is not None:
      self._bar.close()
      self._bar = None


def _is_terminal(file) -> bool:
  try:
    return bool(file.isatty())
  except (AttributeError, ValueError):  # no isatty, or a closed file
    return False
