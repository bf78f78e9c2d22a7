"""The options of a search run, and what its compiled programs read.

* :class:`SearchConfig`: every option of a run (validated up front). How the loss parameters
  are sampled and how ``mu`` moves is the STRATEGY's business (one object:
  :mod:`jaxloss.search.strategies`); the config says which strategy, and the one thing a
  strategy cannot: the ``selection`` of copies after each epoch.
* :class:`StepSpec`: a frozen, hashable record of exactly what the compiled outer step
  reads. The step (:func:`jaxloss.search.outer_step.outer_step`) gets nothing else, and the
  compiled-program cache is keyed by it: a field added to the step must be added here, and
  then it is part of the key by construction.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxloss.search import selection as selection_rules
from jaxloss.search import strategies
from jaxloss.search.task import Task, accuracy

Array = jax.Array

#: The names of the selection rules (:mod:`jaxloss.search.selection`).
SELECTIONS = tuple(selection_rules.NAMES)


@dataclasses.dataclass(frozen=True, eq=False)
class SearchConfig:
  """Options of a search run.

  Attributes:
    initial_mu: the initial mean of the strategy (e.g. ``jaxloss.identity_theta(6)``, which
      centres the first distribution on cross-entropy; with ``strategy='fixed'`` every copy
      trains with it). Any array shape. Required, except with a :class:`~strategies.Grid`
      (whose thetas are the losses; ``mu`` is then their mean).
    strategy: how the copies' loss parameters are chosen and how ``mu`` moves (ask/tell,
      :mod:`jaxloss.search.strategies`). A name: ``'default'`` (``strategies.DEFAULT``, the
      best configuration measured, docs/search_study.md; for AM-LFS thetas of ``4 M``
      values), ``'paper'`` (``strategies.PAPER``: the paper's algorithm exactly, sigma 0.2
      and Adam 0.05 on ``mu``), ``'random'`` (``strategies.RANDOM``: the paper's samples
      around ``mu_0``, which never moves: the paper's ablation) or ``'fixed'``
      (``strategies.FIXED``: every copy trains with ``mu_0``: the plain-loss baseline). Or a
      strategy object: ``strategies.Gaussian(sigma=..., learning_rate=..., ...)``,
      ``strategies.Grid(thetas)`` (copy ``i`` trains with ``thetas[i]``), an
      ``EvosaxStrategy``, or your own frozen dataclass with ``init``/``ask``/``tell``/``mean``.
    selection: what happens to the population after each epoch (a name or a rule of
      :mod:`jaxloss.search.selection`): ``'best'`` (the paper: the best valid copy's whole
      training state is broadcast to every copy), ``'guarded'`` (the best copy replaces the
      population only when it leads copy 0 by ``k = 2`` paired standard errors on the same
      validation examples, else copy 0 does; ``selection.Guarded(k)`` for another ``k``),
      ``'average'`` (every copy receives the average of the copies' states;
      ``selection.Average(top_k, weighted)``), ``'truncation'`` (the worst quarter takes the
      states of random best-quarter copies; ``selection.Truncation(fraction)``) or ``'none'``
      (independent copies; the result is the best copy on validation of the last epoch).
    select_until: when selection stops (the copies then train on independently, e.g. through
      the learning-rate drops): a fraction of the run (selection after epochs ``e`` with
      ``e + 1 <= select_until * epochs``), a function of the 0-based epoch returning whether
      to select after it, or None (every epoch).
    population_size: ``B``, the number of copies (a multiple of the mesh's device count).
    epochs: outer steps (each trains every copy one epoch).
    batch_size: training batch size; an epoch is ``n_train // batch_size`` steps over a fresh
      permutation (the remainder of the permutation is skipped that epoch).
    eval_batch_size: validation batch size (default ``batch_size``); no example is dropped.
    seed: every random number (initialisation, samples, data order, step keys) derives
      from it and from the epoch number.
    common_random_numbers: True (default): every copy sees the same data permutation and
      the same per-step key (for augmentation/dropout). False: per-copy permutations and keys.
    init: ``'shared'`` (all copies start from one initialisation; the default with
      ``selection='best'``) or ``'per_copy'`` (independent seeds; the default with
      ``selection='none'``).
    reward_fn: maps the validation totals (summed ``evaluate`` outputs) to the reward;
      default ``correct / count``.
    output_dir: where the checkpoints (``<output_dir>/checkpoints``) and the records
      (``<output_dir>/records.jsonl``) go; None: neither.
    checkpoint: write a checkpoint after every epoch (when ``output_dir`` is set).
    max_to_keep: checkpoints kept (the latest ones).
    async_checkpointing: let orbax finish writing in the background.
    progress: ``True``: a tqdm bar on a terminal, and one plain line per epoch (epoch, best
      validation reward, ETA) when stderr is not a terminal (a cluster job's log) or tqdm is
      not installed; ``'lines'``: the plain lines always; ``False``: nothing. Either prints
      a "compiling ..." line before the compilation and its time after.
    scan_unroll: ``unroll`` of the epoch's ``lax.scan`` over steps (1: a loop; ``True``: the
      whole epoch unrolled). XLA:CPU runs convolution gradients several times slower inside a
      loop body than outside (jax-ml/jax#12868): on a CPU, a conv net with short epochs
      trains several times faster with ``True``, at the price of compile time growing with
      the number of steps. Matmul-only models and GPUs do not need it.
    compiler_options: XLA options for compiling the outer step and the initialisation
      (``jax.stages.Lowered.compile(compiler_options=...)``), e.g.
      ``{'xla_backend_optimization_level': 0}`` to compile small CPU programs about twice
      as fast, or GPU autotuning options. None: XLA's defaults.
  """
  initial_mu: Any = None
  strategy: Any = "default"
  selection: Any = "best"
  select_until: Any = None
  population_size: int = 8
  epochs: int = 10
  batch_size: int = 128
  eval_batch_size: int | None = None
  seed: int = 0
  common_random_numbers: bool = True
  init: str | None = None
  reward_fn: Callable[[dict], Array] | None = None
  output_dir: str | None = None
  checkpoint: bool = True
  max_to_keep: int = 3
  async_checkpointing: bool = False
  progress: bool | str = True
  scan_unroll: int | bool = 1
  compiler_options: dict | None = None

  def __post_init__(self):
    def fail(name, expected, got):
      raise ValueError(f"SearchConfig: `{name}` must be {expected}, got {got!r}.")

    try:
      resolved = strategies.resolve(self.strategy)
    except ValueError as error:
      raise ValueError(f"SearchConfig: {error}") from None
    try:
      selection_rules.resolve(self.selection)
    except ValueError as error:
      raise ValueError(f"SearchConfig: {error}") from None
    until = self.select_until
    if until is not None and not callable(until) and not (
        isinstance(until, (int, float, np.integer, np.floating))
        and not isinstance(until, (bool, np.bool_)) and 0 < until <= 1):
      fail("select_until", "a fraction of the run in (0, 1], a function of the epoch or None",
           until)
    for name in ("population_size", "epochs", "batch_size", "max_to_keep"):
      value = getattr(self, name)
      if (isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer))
          or value < 1):
        fail(name, "a positive int", value)
    if self.eval_batch_size is not None and (not isinstance(self.eval_batch_size, (
        int, np.integer)) or self.eval_batch_size < 1):
      fail("eval_batch_size", "a positive int or None", self.eval_batch_size)
    if self.reward_fn is not None and not callable(self.reward_fn):
      fail("reward_fn", "a function of the validation totals or None", self.reward_fn)
    if not isinstance(self.common_random_numbers, (bool, np.bool_)):
      fail("common_random_numbers", "True or False", self.common_random_numbers)
    if self.init not in (None, "shared", "per_copy"):
      fail("init", "'shared', 'per_copy' or None", self.init)
    if self.progress not in (True, False, "lines"):
      fail("progress", "True, False or 'lines'", self.progress)
    if self.compiler_options is not None and not isinstance(self.compiler_options, dict):
      fail("compiler_options", "a dict or None", self.compiler_options)
    object.__setattr__(self, "initial_mu", _check_mu(self.initial_mu, resolved, fail))
    _check_strategy_fits(resolved, self.initial_mu, int(self.population_size))

  @property
  def resolved_strategy(self):
    """The strategy object (a name resolved through :func:`strategies.resolve`)."""
    return strategies.resolve(self.strategy)

  @property
  def resolved_selection(self):
    """The selection rule object (a name resolved through :func:`selection.resolve`)."""
    return selection_rules.resolve(self.selection)

  @property
  def selection_name(self) -> str:
    """The name given, or the rule's class name (records)."""
    return self.selection if isinstance(self.selection, str) else type(self.selection).__name__

  def selects_after(self, epoch: int) -> bool:
    """Whether the selection rule runs after (0-based) ``epoch`` (``select_until``)."""
    until = self.select_until
    if until is None:
      return True
    if callable(until):
      return bool(until(epoch))
    return epoch + 1 <= until * self.epochs + 1e-9

  @property
  def strategy_name(self) -> str:
    """The name given, or the strategy object's class name (records, progress bar)."""
    return self.strategy if isinstance(self.strategy, str) else type(self.strategy).__name__

  @property
  def resolved_init(self) -> str:
    independent = isinstance(self.resolved_selection, selection_rules.Independent)
    return self.init or ("per_copy" if independent else "shared")

  @property
  def resolved_eval_batch_size(self) -> int:
    return self.eval_batch_size or self.batch_size

  def options(self) -> dict:
    """The plain options a resumed run must share with the run it continues (everything but
    ``epochs``, the output options and the callables, which the resume fingerprint describes
    itself: :func:`jaxloss.search.resume.run_fingerprint`)."""
    return {
        "population_size": int(self.population_size),
        "batch_size": int(self.batch_size),
        "eval_batch_size": None if self.eval_batch_size is None else int(self.eval_batch_size),
        "seed": int(self.seed), "common_random_numbers": bool(self.common_random_numbers),
        "init": self.resolved_init, "scan_unroll": _unroll_key(self.scan_unroll),
        "initial_mu": np.asarray(self.initial_mu).tolist(),
        "compiler_options": [[str(k), str(v)] for k, v in
                             sorted((self.compiler_options or {}).items())]}


def _check_mu(mu, strategy, fail) -> np.ndarray:
  """``initial_mu`` as a finite float array (a grid's mean when it is not given)."""
  if mu is None:
    if isinstance(strategy, strategies.Grid):
      return np.mean(np.asarray(strategy.thetas, np.float64), axis=0).astype(np.float32)
    fail("initial_mu", "an array (e.g. jaxloss.identity_theta(6))", None)
  try:
    arr = np.asarray(mu)
  except Exception:  # pylint: disable=broad-except
    fail("initial_mu", "an array of numbers", mu)
  if arr.dtype == object or arr.dtype == bool or not (np.issubdtype(arr.dtype, np.floating)
                                                      or np.issubdtype(arr.dtype, np.integer)):
    fail("initial_mu", "an array of numbers", mu)
  if arr.size == 0:
    fail("initial_mu", "a non-empty array", mu)
  if not np.all(np.isfinite(arr)):
    bad = np.flatnonzero(~np.isfinite(arr.reshape(-1)))
    raise ValueError(f"SearchConfig: `initial_mu` must be finite; entries {bad.tolist()[:8]} "
                     f"are {arr.reshape(-1)[bad][:8].tolist()}.")
  return arr if np.issubdtype(arr.dtype, np.floating) else arr.astype(np.float32)


def _check_strategy_fits(strategy, mu: np.ndarray, population_size: int) -> None:
  """The strategy must give one theta of ``mu``'s shape per copy (checked on shapes only)."""
  def ask_all(mu):
    state = strategy.init(mu)
    return strategy.ask(jax.random.key(0), state, population_size)

  try:
    thetas = jax.eval_shape(ask_all, jnp.asarray(mu))
  except (ValueError, TypeError) as error:
    raise ValueError(f"SearchConfig: the strategy {strategy!r:.160} does not fit "
                     f"`initial_mu` of shape {mu.shape} and `population_size` "
                     f"{population_size}: {error}") from None
  want = (population_size, mu.size)
  if (thetas.shape[0], int(np.prod(thetas.shape[1:]))) != want:
    raise ValueError(f"SearchConfig: the strategy gives thetas of shape {thetas.shape} for "
                     f"{population_size} copies of `initial_mu`'s {mu.size} values; it must "
                     f"give one theta per copy, each of {mu.size} values.")


@dataclasses.dataclass(frozen=True)
class StepSpec:
  """Exactly what the compiled outer step reads (hashable: the program cache's key).

  Not here: the seed and the data (traced inputs), ``epochs`` and the output options (they
  never reach the compiled step).
  """
  task: Task
  strategy: Any
  selection: Any
  reward_fn: Callable[[dict], Array]
  population_size: int
  batch_size: int
  eval_batch_size: int
  common_random_numbers: bool
  scan_unroll: int | str  # 'full' for True: True == 1 and hash(True) == hash(1) in Python
  compiler_options: tuple = ()

  @property
  def unroll(self) -> int | bool:
    """The ``unroll`` argument of the epoch's ``lax.scan``."""
    return True if self.scan_unroll == "full" else self.scan_unroll

  @classmethod
  def from_config(cls, task: Task, config: SearchConfig) -> StepSpec:
    return cls(task=task, strategy=config.resolved_strategy,
               selection=config.resolved_selection,
               reward_fn=config.reward_fn or accuracy,
               population_size=int(config.population_size), batch_size=int(config.batch_size),
               eval_batch_size=int(config.resolved_eval_batch_size),
               common_random_numbers=bool(config.common_random_numbers),
               scan_unroll=_unroll_key(config.scan_unroll),
               compiler_options=tuple(sorted((config.compiler_options or {}).items())))


def _unroll_key(scan_unroll: int | bool) -> int | str:
  # As cache keys True and 1 are the same value, but as `unroll` one is the whole epoch and the
  # other a loop: keep them apart (and False, a loop, equal to 1).
  if scan_unroll is True:
    return "full"
  return 1 if scan_unroll is False else int(scan_unroll)


@dataclasses.dataclass(frozen=True)
class InitSpec:
  """What the compiled initialisation reads (its own cache key)."""
  init: Callable
  population_size: int
  shared: bool
  compiler_options: tuple = ()
