"""The search loop: run, resume, records, checkpoints, callback, ``stop_after``, metadata.

:func:`run` builds an :class:`~jaxloss.search.engine.Engine` and runs its compiled outer step
epoch after epoch. Each epoch's record is built ONCE, complete (timings included), and then
checkpointed (every checkpoint holds every record so far), appended to ``records.jsonl`` and
handed to the callback: the three copies are the same. A resume continues the same run or
refuses (:mod:`jaxloss.search.resume`), falls back from a damaged checkpoint to the newest
intact one, and rewrites the log from the checkpoint's records.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import time
import warnings
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from jaxloss.search import callbacks
from jaxloss.search import sharding as sh
from jaxloss.search.checkpoint import CheckpointStore
from jaxloss.search.config import SearchConfig
from jaxloss.search.engine import Engine
from jaxloss.search.outer_step import SearchState
from jaxloss.search.records import Progress, RecordLog, to_json
from jaxloss.search.resume import check_allow_changed, check_metadata, check_resume, lookup
from jaxloss.search.task import Task, check_split

PyTree = Any

RECORDS_FILE = "records.jsonl"
CHECKPOINTS_DIR = "checkpoints"


class PopulationDivergedError(RuntimeError):
  """Every copy of the population produced a non-finite loss, state or reward.

  Attributes:
    epoch: the (0-based) epoch at which it happened.
    record: that epoch's record (never written to the log).
    last_checkpoint: the last good checkpoint's step (completed epochs), or ``None``.
  """

  def __init__(self, epoch: int, record: dict, last_checkpoint: int | None):
    self.epoch, self.record, self.last_checkpoint = epoch, record, last_checkpoint
    if last_checkpoint is None:
      where = "no checkpoint was written"
    else:
      where = (f"the last good checkpoint (after epoch {last_checkpoint - 1}) is kept: lower "
               f"the learning rate (or the strategy's sigma) and continue from it with "
               f"resume=True, allow_changed=('task.optimizer',) (or the entry you changed)")
    super().__init__(
        f"search: every copy of the population diverged (non-finite loss, training state or "
        f"reward) in epoch {epoch}; {where}. Sampled thetas: {record.get('thetas')!r:.200}")


class SearchInterrupted(KeyboardInterrupt):
  """Ctrl-C (``KeyboardInterrupt``) stopped :func:`run`: the epoch under way is abandoned, every
  epoch before it is checkpointed (a resume continues after it).

  A ``KeyboardInterrupt``, so code that does not know it still stops. Its message is one line.

  Attributes:
    epochs_completed: the epochs of the run that are done and kept in the checkpoint (all
      invocations; 0 when none is).
    epochs: ``config.epochs``.
    checkpointed: whether those epochs are in a checkpoint (False without ``output_dir``).
  """

  def __init__(self, epochs_completed: int, epochs: int, checkpointed: bool):
    self.epochs_completed, self.epochs, self.checkpointed = epochs_completed, epochs, checkpointed
    if checkpointed:
      hint = "continue with resume=True"
    elif epochs_completed:
      hint = "nothing is kept (no output_dir)"
    else:
      hint = "no epoch was completed"
    super().__init__(f"stopped after epoch {epochs_completed} of {epochs}; {hint}")


@dataclasses.dataclass
class SearchResult:
  """What :func:`jaxloss.search.run` returns.

  Attributes:
    state: the final model (the best copy's training state, without the population axis).
    best_index: its index in the final population.
    best_reward: its validation reward in the last epoch.
    mu: the final mean of the strategy (numpy).
    records: one dict per epoch (also in ``<output_dir>/records.jsonl``).
    search_state: the final :class:`SearchState` (population, strategy state, epoch counter).
    finished: all ``config.epochs`` are done (False after ``stop_after``; resume continues).
    metadata: the user's ``metadata`` of the run.
    changes: the resumes that went on through ``allow_changed``, oldest first: ``{'epoch':
      completed epochs at the resume, 'changed': [entry names], 'before': {entry: old
      description}}`` (also in the checkpoints and in the next epoch's record).
  """
  state: PyTree
  best_index: int
  best_reward: float
  mu: np.ndarray
  records: list[dict]
  search_state: SearchState
  finished: bool = True
  metadata: dict = dataclasses.field(default_factory=dict)
  changes: list = dataclasses.field(default_factory=list)

  @property
  def epochs_completed(self) -> int:
    return len(self.records)


def read_records(output_dir: str) -> list[dict]:
  """The records of the run in ``output_dir``.

  From ``records.jsonl`` (a line cut by a kill ends the list) or, when that file is missing,
  from the newest checkpoint (every checkpoint holds every record so far), as a resume
  rebuilds them. Raises ``FileNotFoundError`` when ``output_dir`` holds no run.
  """
  path = os.path.join(output_dir, RECORDS_FILE)
  if os.path.isfile(path):
    return RecordLog(path, enabled=False).read()
  checkpoints = os.path.join(output_dir, CHECKPOINTS_DIR)
  if os.path.isdir(checkpoints):
    store = CheckpointStore(checkpoints)
    try:
      for step in reversed(store.all_steps()):
        try:
          return list(store.restore_meta(step)["records"])
        except Exception:  # pylint: disable=broad-except  (a damaged one: try the previous)
          continue
    finally:
      store.close()
  what = "is not a folder" if not os.path.isdir(output_dir) else (
      f"holds neither {RECORDS_FILE} nor readable checkpoints")
  raise FileNotFoundError(f"read_records: {output_dir!r} holds no search run (it {what}).")


def run(task: Task, config: SearchConfig, train: PyTree, val: PyTree, *,
        monitor: dict[str, PyTree] | None = None, mesh: jax.sharding.Mesh | None = None,
        axis_name: str = sh.POPULATION_AXIS, resume: bool = False, allow_changed=(),
        callback: Callable[[dict, SearchState], None] | None = None,
        stop_after: int | None = None, metadata: dict | None = None,
        initial_state: PyTree | None = None) -> SearchResult:
  """Runs ``config.epochs`` outer steps (continuing from the latest checkpoint if ``resume``).

  Args:
    task: the user's :class:`~jaxloss.search.Task`.
    config: a :class:`~jaxloss.search.SearchConfig`.
    train: the training split, a pytree of arrays with a leading example axis (numpy or
      device arrays; placed on every device of the mesh).
    val: the validation split (the reward); never pass the test split here.
    monitor: extra splits to watch, ``{name: data}`` (e.g. ``{'test': (x, y)}``): after
      every epoch the best copy is evaluated on each inside the same jitted program and
      the totals and score go to ``record['monitor'][name]``. They never influence the
      search (rewards, ``mu``, selection); they are for curves such as test error.
    mesh: a mesh with an axis ``axis_name`` for the population (default: a 1-D mesh over
      every device); ``B`` must be a multiple of its size.
    axis_name: the population axis of ``mesh``.
    resume: continue from the latest intact checkpoint in ``output_dir`` (a fresh start
      when there is none). The checkpoint's fingerprint must equal this run's
      (:mod:`jaxloss.search.resume`), else a ``ValueError`` names what differs. Without it,
      a directory that already holds checkpoints is an error.
    allow_changed: with ``resume``: the fingerprint entries allowed to differ from the
      checkpoint's (``'task.optimizer'``, ``'task'`` for every task function, ``'strategy'``,
      ``'metadata.note'``, ``'*'`` for any): the resume proceeds, warns, and records the
      change (``SearchResult.changes``, the checkpoints, the next record's
      ``'resumed_with_changes'``). E.g. after ``PopulationDivergedError``, lower the learning
      rate and resume with ``allow_changed=('task.optimizer',)``.
    callback: ``callback(record, search_state)`` after every epoch, once the checkpoint and
      the record are written; raising from it stops the run (the checkpoint is kept). A
      list of callbacks is called in order (:func:`jaxloss.search.callbacks.chain`); see
      :mod:`jaxloss.search.callbacks` for a metrics CSV and TensorBoard event files.
      ``search_state`` is donated by the next step: do not keep references to it.
    stop_after: stop cleanly after this many epochs of THIS invocation (the checkpoint is
      written; ``resume=True`` continues); ``result.finished`` tells whether the run is done.
    metadata: a dict of JSON values about the run (e.g. the example's own options); part of
      the fingerprint, so a resume with other metadata refuses, naming the key.
    initial_state: a training state of ONE copy (e.g. an earlier ``SearchResult.state``, or a
      pretrained model): every copy starts from it instead of ``task.init`` (part of the
      fingerprint; a resume continues from the checkpoint).
  Returns:
    a :class:`SearchResult`.
  Raises:
    PopulationDivergedError: every copy diverged in some epoch.
    SearchInterrupted: Ctrl-C (a ``KeyboardInterrupt``) during the run: the epoch under way is
      abandoned, the epochs before it are in the checkpoint (``resume=True`` continues); a
      progress line or bar shows an epoch as done only once it is checkpointed.
  """
  engine = Engine(task, config, mesh=mesh, axis_name=axis_name)
  cfg = engine.config
  if stop_after is not None and (isinstance(stop_after, bool) or
                                 not isinstance(stop_after, (int, np.integer)) or stop_after < 0):
    raise ValueError(f"search: `stop_after` must be a non-negative int or None, got "
                     f"{stop_after!r}.")
  if isinstance(callback, (list, tuple)):
    callback = callbacks.chain(*callback)
  elif callback is not None and not callable(callback):
    raise TypeError(f"search: `callback` must be a function, a list of functions or None, got "
                    f"{callback!r}.")
  allow_changed = check_allow_changed(allow_changed)
  metadata = check_metadata(metadata)
  n_train = check_split("search", "train", train)
  if n_train < cfg.batch_size:
    raise ValueError(f"search: the training split ({n_train} examples) is smaller than "
                     f"`batch_size` ({cfg.batch_size}).")
  check_split("search", "val", val)
  for name, data in (monitor or {}).items():
    check_split("search", f"monitor[{name!r}]", data)
  session = _Session(engine, callback=callback, metadata=metadata, initial_state=initial_state)
  if cfg.output_dir is not None:
    session.fingerprint = engine.fingerprint(train, val, monitor, metadata, initial_state)
  data = (engine.put_data(train), engine.put_data(val),
          {name: engine.put_data(d) for name, d in (monitor or {}).items()})
  try:
    state, records = session.start(resume, allow_changed)
    return session.loop(state, records, *data, stop_after=stop_after)
  finally:
    session.close()


class _Session:
  """One invocation of a run: its output files and what every epoch needs."""

  def __init__(self, engine, *, callback, metadata, initial_state):
    cfg = engine.config
    self.initial_state = initial_state
    self.engine, self.config, self.callback, self.metadata = engine, cfg, callback, metadata
    self.fingerprint = None
    self.changes, self.pending_change = [], None
    self.is_main = jax.process_index() == 0
    self.store = self.log = None
    if cfg.output_dir is not None:
      self.log = RecordLog(os.path.join(cfg.output_dir, RECORDS_FILE), enabled=self.is_main)
      if cfg.checkpoint:
        self.store = CheckpointStore(os.path.join(cfg.output_dir, CHECKPOINTS_DIR),
                                     max_to_keep=cfg.max_to_keep,
                                     async_save=cfg.async_checkpointing)

  def close(self):
    if self.store is not None:
      self.store.wait()
      self.store.close()

  def start(self, resume: bool, allow_changed: tuple) -> tuple[SearchState, list[dict]]:
    store, log = self.store, self.log
    latest = store.latest_step() if store is not None else None
    if latest is None:
      if log is not None:
        log.rewrite([])
      return self.engine.init(self.initial_state), []
    if not resume:
      raise FileExistsError(
          f"search: {store.directory} already holds checkpoints (latest after epoch "
          f"{latest - 1}); pass resume=True to continue that run, or use a new `output_dir`.")
    changed = []

    def check(meta):  # before the state is restored: a refusal leaves the checkpoint as it is
      changed[:] = check_resume(meta.get("fingerprint"), self.fingerprint, allow_changed)
      if not isinstance(meta.get("records"), list):
        raise ValueError("search: the checkpoint holds no records (it was not written by this "
                         "version of jaxloss.search); start a new `output_dir`.")

    _, state, meta = store.restore_latest_intact(self.engine.abstract_state(), check_meta=check)
    records = list(meta["records"])  # every record so far is in the checkpoint
    self.changes = list(meta.get("changes", []))
    if changed:
      self.changes.append({"epoch": int(state.epoch), "changed": changed,
                           "before": {n: lookup(meta["fingerprint"], n) for n in changed}})
      self.pending_change = changed
      warnings.warn(f"search: resuming {self.config.output_dir!r} after epoch "
                    f"{int(state.epoch) - 1} with changed {', '.join(changed)} "
                    "(allow_changed); the change is recorded.", RuntimeWarning, stacklevel=4)
    if log is not None:
      log.rewrite(records)  # repairs a missing, short, cut or longer log
    return state, records

  def loop(self, state, records, train, val, monitor, *, stop_after) -> SearchResult:
    cfg, engine, store = self.config, self.engine, self.store
    start = int(state.epoch)
    end = cfg.epochs if stop_after is None else min(cfg.epochs, start + stop_after)
    if start < end:
      progress = Progress(cfg.epochs, start, enabled=bool(cfg.progress) and self.is_main,
                          desc=cfg.strategy_name, lines=cfg.progress == "lines")
      kept = start  # the epochs in the checkpoint (the run's, all invocations)
      try:
        progress.compiling(f"the epoch program (B={cfg.population_size}, epochs {start + 1}"
                           f"-{end} of {cfg.epochs})")
        t = time.perf_counter()
        compiled = engine.compile(state, train, val, monitor)
        compile_s = time.perf_counter() - t
        progress.compiled(compile_s)
        checkpoint_s = None  # the previous epoch's checkpoint write, in this invocation
        for epoch in range(start, end):
          t_epoch = time.perf_counter()
          state, outputs = compiled(state, train, val, monitor,
                                    select=cfg.selects_after(epoch))
          jax.block_until_ready((state, outputs))
          step_s = time.perf_counter() - t_epoch
          t = time.perf_counter()
          host = sh.to_host(outputs)
          timing = {"compile_s": compile_s} if epoch == start else {}
          record = _record(cfg, host, timing)
          if self.pending_change:
            record["resumed_with_changes"], self.pending_change = self.pending_change, None
          if bool(host["all_diverged"]):
            raise PopulationDivergedError(epoch, record,
                                          store.latest_step() if store is not None else None)
          timing["step_s"] = step_s
          timing["log_s"] = time.perf_counter() - t
          if checkpoint_s is not None:
            timing["checkpoint_s"] = checkpoint_s
          timing["wall_s"] = step_s + timing["log_s"] + (checkpoint_s or 0.0)
          record["time"] = timing  # complete: from here on the record never changes
          records.append(record)
          if store is not None:
            t = time.perf_counter()
            store.save(epoch + 1, state, {"fingerprint": self.fingerprint,
                                          "records": list(records), "changes": self.changes})
            checkpoint_s = time.perf_counter() - t
            kept = epoch + 1
          if self.log is not None:
            self.log.append(record)
          # Shown as done only now that it is checkpointed: Ctrl-C never loses a shown epoch.
          progress.update(epoch, _best_reward(record))
          if self.callback is not None:  # a copy: the callback cannot change the record
            self.callback(copy.deepcopy(record), state)
      except KeyboardInterrupt as interrupt:
        if isinstance(interrupt, SearchInterrupted):
          raise
        done = kept if store is not None else len(records)
        raise SearchInterrupted(done, cfg.epochs, store is not None and kept > 0) from None
      finally:
        progress.close()
    best = records[-1]["best_index"] if records else 0
    best_reward = records[-1]["best_reward"] if records else float("nan")
    return SearchResult(state=engine.select(state, best), best_index=best,
                        best_reward=math.nan if best_reward is None else best_reward,
                        mu=np.asarray(jax.device_get(engine.strategy.mean(state.policy))),
                        records=records, search_state=state,
                        finished=int(state.epoch) >= cfg.epochs, metadata=self.metadata,
                        changes=list(self.changes))


def _record(cfg: SearchConfig, host: dict, timing: dict) -> dict:
  """The epoch's record (JSON types) from the step's outputs on the host."""
  record = {
      "epoch": int(host["epoch"]), "strategy": cfg.strategy_name,
      "selection": cfg.selection_name, "selected": bool(cfg.selects_after(int(host["epoch"]))),
      "mu": host["mu"], "mu_next": host["mu_next"], "thetas": host["thetas"],
      "rewards": host["rewards"], "normalized_rewards": host["normalized_rewards"],
      "finite": host["finite"], "best_index": int(host["best_index"]),
      "best_reward": host["best_reward"], "train_loss": host["train"]["loss"],
      "train_metrics": {k: v for k, v in host["train"].items() if k != "loss"},
      "val": host["val"]}
  if host["monitor"]:
    record["monitor"] = host["monitor"]
  record = to_json(record)
  record["time"] = timing
  return record


def _best_reward(record: dict) -> float:
  rewards = [r for r, ok in zip(record["rewards"], record["finite"]) if ok and r is not None]
  return max(rewards) if rewards else math.nan
