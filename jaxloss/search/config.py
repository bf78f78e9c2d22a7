"""What a search run is: its options, the modes, the compiled step's spec, the fingerprint.

* :class:`SearchConfig`: every option of a run (validated up front).
* :class:`Flags`: the mode as three runtime booleans (``sample``, ``update``, ``select``), so
  that ``amlfs``, ``random`` and ``baseline`` run through ONE compiled program (``grid`` through
  the same step, with the grid as the strategy).
* :class:`StepSpec`: a frozen, hashable record of exactly what the compiled outer step
  reads. The step (:func:`jaxloss.search.outer_step.outer_step`) gets nothing else, and the
  compiled-program cache is keyed by it: a field added to the step must be added here, and
  then it is part of the key by construction.
* :func:`run_fingerprint` / :func:`check_resume`: what a resumed run must share with the
  run it continues, and the error that names what differs.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import numpy as np
import optax

from jaxloss.search import fingerprint as fp
from jaxloss.search.policy import DEFAULT_SIGMA, GaussianPolicy, check_sigma, default_mu_optimizer
from jaxloss.search.records import to_json
from jaxloss.search.task import Task, accuracy

Array = jax.Array

MODES = ("amlfs", "random", "baseline", "grid")
STRATEGY_NAMES = ("default", "paper")


class Flags(NamedTuple):
  """The mode as runtime booleans: ``sample`` (ask the strategy; else every copy trains with
  its mean), ``update`` (tell the strategy: a step on ``mu``), ``select`` (broadcast the best
  copy). amlfs: (T, T, T); random and grid: (T, F, select_best); baseline: (F, F,
  select_best)."""
  sample: Any
  update: Any
  select: Any


@dataclasses.dataclass(frozen=True, eq=False)
class SearchConfig:
  """Options of a search run.

  Attributes:
    initial_mu: the initial mean of the policy (e.g. ``jaxloss.identity_theta(6)``, which
      makes the first distribution centred on cross-entropy); in ``baseline`` mode, the
      fixed ``theta`` of every copy. Any array shape; REQUIRED.
    mode: ``'amlfs'`` (search), ``'random'`` (sample around ``initial_mu`` every epoch, never
      update it: the paper's ablation), ``'baseline'`` (fixed ``theta``) or ``'grid'``
      (copy ``i`` trains with ``grid[i]`` every epoch: fixed losses, with the same per-epoch
      selection as the search; the equal-compute competitor).
    population_size: ``B``, the number of copies (a multiple of the mesh's device count).
    epochs: outer steps (each trains every copy one epoch).
    batch_size: training batch size; an epoch is ``n_train // batch_size`` steps over a fresh
      permutation (the remainder of the permutation is skipped that epoch).
    eval_batch_size: validation batch size (default ``batch_size``); no example is dropped.
    sigma: ``strategy='paper'`` only: the policy's standard deviation (NOT a variance);
      default 0.2.
    mu_optimizer: ``strategy='paper'`` only: optax transformation for ``mu`` (default
      ``optax.adam(0.05)``).
    seed: every random number (initialisation, samples, data order, step keys) derives
      from it and from the epoch number.
    common_random_numbers: True (default): every copy sees the same data permutation and
      the same per-step key (for augmentation/dropout). False: per-copy permutations and keys.
    init: ``'shared'`` (all copies start from one initialisation; default for ``amlfs`` and
      ``random``) or ``'per_copy'`` (independent seeds; default for ``baseline``).
    select_best: broadcast the best copy's whole training state to every copy after each
      epoch (default True for ``amlfs``/``random``, False for ``baseline``, where the
      copies are then independent runs).
    reward_fn: maps the validation totals (summed ``evaluate`` outputs) to the reward;
      default ``correct / count``.
    output_dir: where the checkpoints (``<output_dir>/checkpoints``) and the records
      (``<output_dir>/records.jsonl``) go; None: neither.
    checkpoint: write a checkpoint after every epoch (when ``output_dir`` is set).
    max_to_keep: checkpoints kept (the latest ones).
    async_checkpointing: let orbax finish writing in the background.
    progress: show a progress bar (tqdm if importable, else a line per epoch).
    scan_unroll: ``unroll`` of the epoch's ``lax.scan`` over steps (1: a loop; ``True``: the
      whole epoch unrolled). XLA:CPU runs convolution gradients several times slower inside a
      loop body than outside (jax-ml/jax#12868): on a CPU, a conv net with short epochs
      trains several times faster with ``True``, at the price of compile time growing with
      the number of steps. Matmul-only models and GPUs do not need it.
    strategy: the search strategy over ``theta``. ``'default'`` (the default):
      ``jaxloss.search.strategies.DEFAULT``, the best configuration measured
      (docs/search_study.md: per-part sigma with whitened steps, a mean copy, mirrored
      samples, rank fitness, a drift guard), for AM-LFS thetas (``4 M`` values).
      ``'paper'``: the paper's algorithm exactly, ``GaussianPolicy(sigma, mu_optimizer)``
      (for reproduction; the only strategy that reads ``sigma`` and ``mu_optimizer``).
      Or an object with the ask/tell interface ``init``/``ask``/``tell``/``mean`` (e.g. from
      ``jaxloss.search.strategies``; None means ``'paper'``, as in earlier releases). It
      must be hashable (a frozen dataclass): it is part of the compiled program's cache
      key; ``spec()`` (else ``repr``) goes into the resume fingerprint.
    grid: ``mode='grid'`` only (and required there): one loss parameter vector per copy
      (AM-LFS thetas such as ``jaxloss.cosface_theta(0.2)``, or a user loss's parameters,
      e.g. ``[[0.0], [0.1], [0.2]]`` label smoothings); ``population_size`` of them.
    compiler_options: XLA options for compiling the outer step and the initialisation
      (``jax.stages.Lowered.compile(compiler_options=...)``), e.g.
      ``{'xla_backend_optimization_level': 0}`` to compile small CPU programs about twice
      as fast, or GPU autotuning options. None: XLA's defaults.
  """
  initial_mu: Any = None
  mode: str = "amlfs"
  population_size: int = 8
  epochs: int = 10
  batch_size: int = 128
  eval_batch_size: int | None = None
  sigma: float = DEFAULT_SIGMA
  mu_optimizer: optax.GradientTransformation | None = None
  seed: int = 0
  common_random_numbers: bool = True
  init: str | None = None
  select_best: bool | None = None
  reward_fn: Callable[[dict], Array] | None = None
  output_dir: str | None = None
  checkpoint: bool = True
  max_to_keep: int = 3
  async_checkpointing: bool = False
  progress: bool = True
  scan_unroll: int | bool = 1
  compiler_options: dict | None = None
  strategy: Any = "default"
  grid: Any = None

  def __post_init__(self):
    def fail(name, expected, got):
      raise ValueError(f"SearchConfig: `{name}` must be {expected}, got {got!r}.")

    if self.mode not in MODES:
      fail("mode", f"one of {MODES}", self.mode)
    if self.initial_mu is None:
      fail("initial_mu", "an array (e.g. jaxloss.identity_theta(6))", None)
    try:
      mu = np.asarray(self.initial_mu)
    except Exception:  # pylint: disable=broad-except
      fail("initial_mu", "an array of numbers", self.initial_mu)
    if mu.dtype == object or not (np.issubdtype(mu.dtype, np.floating)
                                  or np.issubdtype(mu.dtype, np.integer)):
      fail("initial_mu", "an array of numbers", self.initial_mu)
    if mu.size == 0:
      fail("initial_mu", "a non-empty array", self.initial_mu)
    if not np.all(np.isfinite(mu)):
      bad = np.flatnonzero(~np.isfinite(mu.reshape(-1)))
      raise ValueError(f"SearchConfig: `initial_mu` must be finite; entries {bad.tolist()[:8]} "
                       f"are {mu.reshape(-1)[bad][:8].tolist()}.")
    check_sigma(self.sigma, "SearchConfig")
    if self.mu_optimizer is not None and not (hasattr(self.mu_optimizer, "init")
                                              and hasattr(self.mu_optimizer, "update")):
      fail("mu_optimizer", "an optax.GradientTransformation or None", self.mu_optimizer)
    if self.reward_fn is not None and not callable(self.reward_fn):
      fail("reward_fn", "a function of the validation totals or None", self.reward_fn)
    if self.select_best not in (None, True, False):
      fail("select_best", "True, False or None", self.select_best)
    if not isinstance(self.common_random_numbers, (bool, np.bool_)):
      fail("common_random_numbers", "True or False", self.common_random_numbers)
    self._check_strategy(fail, mu)
    if self.compiler_options is not None and not isinstance(self.compiler_options, dict):
      fail("compiler_options", "a dict or None", self.compiler_options)
    for name in ("population_size", "epochs", "batch_size", "max_to_keep"):
      value = getattr(self, name)
      if not isinstance(value, (int, np.integer)) or value < (0 if name == "epochs" else 1):
        fail(name, "a positive int", value)
    if self.eval_batch_size is not None and self.eval_batch_size < 1:
      fail("eval_batch_size", "a positive int or None", self.eval_batch_size)
    if self.init not in (None, "shared", "per_copy"):
      fail("init", "'shared', 'per_copy' or None", self.init)

  def _check_strategy(self, fail, mu) -> None:
    paper_options = self.mu_optimizer is not None or self.sigma != DEFAULT_SIGMA
    if self.mode == "grid":
      if paper_options:
        raise ValueError("SearchConfig: `sigma` and `mu_optimizer` are the options of "
                         "strategy='paper'; mode='grid' samples nothing and moves nothing.")
      if self.grid is None:
        fail("grid", "a list of one loss parameter vector per copy with mode='grid'", None)
      if self.strategy not in ("default", None):
        fail("strategy", "left unset with mode='grid' (the grid is the strategy)",
             self.strategy)
      grid = np.asarray(self.grid, np.float64).reshape(len(self.grid), -1)
      if grid.shape[0] != self.population_size:
        fail("grid", f"population_size ({self.population_size}) entries, one per copy",
             f"{grid.shape[0]} entries")
      if grid.shape[1] != mu.size:
        fail("grid", f"entries of initial_mu's size ({mu.size})", f"entries of {grid.shape[1]}")
      if not np.all(np.isfinite(grid)):
        fail("grid", "finite", self.grid)
      return
    if self.grid is not None:
      fail("grid", "None unless mode='grid'", self.grid)
    if isinstance(self.strategy, str):
      if self.strategy not in STRATEGY_NAMES:
        fail("strategy", f"one of {STRATEGY_NAMES} or a strategy object", self.strategy)
      if self.strategy == "default":
        if paper_options:
          raise ValueError(
              "SearchConfig: `sigma` and `mu_optimizer` are the options of strategy='paper' "
              "(the paper's algorithm); the default strategy is "
              "jaxloss.search.strategies.DEFAULT: pass strategy='paper' with them, or "
              "strategy=strategies.Gaussian(...) with your own options.")
        if self.mode != "baseline" and self.population_size < 2:
          fail("population_size", "at least 2 with strategy='default' (copy 0 trains with mu, "
               "the others are samples)", self.population_size)
        if mu.size % 4:
          raise ValueError(
              f"SearchConfig: strategy='default' (strategies.DEFAULT) sets one sigma per "
              f"part of an AM-LFS theta (4 M values), but `initial_mu` has {mu.size}; pass "
              f"strategy=strategies.Gaussian(sigma=...) or strategy='paper' for another loss.")
      return
    if self.strategy is None:
      return
    missing = [m for m in ("init", "ask", "tell", "mean") if not callable(
        getattr(self.strategy, m, None))]
    if missing:
      fail("strategy", "an object with init/ask/tell/mean methods (missing "
           f"{', '.join(missing)})", self.strategy)
    if paper_options:
      raise ValueError("SearchConfig: `sigma` and `mu_optimizer` are the options of "
                       "strategy='paper'; with a strategy object set them on the strategy.")
    try:
      hash(self.strategy)
    except TypeError:
      fail("strategy", "hashable (e.g. a frozen dataclass): it keys the compiled program",
           self.strategy)

  @property
  def uses_paper_policy(self) -> bool:
    """The paper's ``GaussianPolicy(sigma, mu_optimizer)`` (``strategy='paper'`` or None)."""
    return self.mode != "grid" and self.strategy in ("paper", None)

  @property
  def resolved_init(self) -> str:
    return self.init or ("per_copy" if self.mode == "baseline" else "shared")

  @property
  def resolved_select_best(self) -> bool:
    return self.select_best if self.select_best is not None else self.mode != "baseline"

  @property
  def resolved_eval_batch_size(self) -> int:
    return self.eval_batch_size or self.batch_size

  def build_strategy(self):
    """The strategy the engine asks and tells (see ``strategy`` and ``grid``)."""
    from jaxloss.search import strategies  # pylint: disable=import-outside-toplevel
    if self.mode == "grid":
      return strategies.Grid(np.asarray(self.grid, np.float64).reshape(len(self.grid), -1))
    if self.uses_paper_policy or (self.mode == "baseline" and self.strategy == "default"):
      # (baseline: every copy trains with initial_mu, which is all a strategy gives there)
      return GaussianPolicy(self.sigma, self.mu_optimizer or default_mu_optimizer())
    if self.strategy == "default":
      return strategies.DEFAULT
    return self.strategy

  def flags(self) -> Flags:
    """The mode as three booleans (runtime inputs: the modes share one compiled program)."""
    return Flags(sample=self.mode != "baseline", update=self.mode == "amlfs",
                 select=self.resolved_select_best)

  def fingerprint(self) -> dict:
    """The plain options a resumed run must share with the run it continues (the full
    resume fingerprint, :func:`run_fingerprint`, adds the callables, the data, ...)."""
    return to_json({
        "mode": self.mode, "population_size": self.population_size,
        "batch_size": self.batch_size, "eval_batch_size": self.eval_batch_size,
        "sigma": self.sigma, "seed": self.seed,
        "common_random_numbers": self.common_random_numbers, "init": self.resolved_init,
        "select_best": self.resolved_select_best,
        "initial_mu": np.asarray(self.initial_mu).tolist()})


@dataclasses.dataclass(frozen=True)
class StepSpec:
  """Exactly what the compiled outer step reads (hashable: the program cache's key).

  The mode is not here: it is a runtime input (:class:`Flags`), as are the seed and the
  data. Nor are ``epochs`` and the output options: they never reach the compiled step.
  """
  task: Task
  strategy: Any
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
    return cls(task=task, strategy=config.build_strategy(),
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


# ------------------------------------------------------------------ resume fingerprint


def run_fingerprint(config: SearchConfig, spec: StepSpec, *, devices: dict, train, val,
                    monitor: dict | None, metadata: dict | None) -> dict:
  """Everything the result of a run depends on (JSON), compared by a resume.

  The plain options (all but ``epochs`` and the output options), the strategy (or the
  default's ``mu_optimizer``), the reward function and the task's functions (described by
  :func:`jaxloss.search.fingerprint.describe`), the splits' structures, shapes, dtypes and a
  content hash of a sample of their examples, the devices on the population axis (their
  number and platform change the rounding), and the user's ``metadata``. See
  docs/search_api.md for the rules and their limits.
  """
  out = dict(config.fingerprint())
  paper = config.uses_paper_policy
  out.update(to_json({
      "scan_unroll": config.scan_unroll,
      "compiler_options": [[str(k), str(v)] for k, v in spec.compiler_options],
      "strategy": "paper" if paper else fp.describe(spec.strategy),
      "mu_optimizer": fp.describe(spec.strategy.optimizer) if paper else None,
      "reward_fn": fp.describe(spec.reward_fn),
      "task": {"init": fp.describe(spec.task.init),
               "train_step": fp.describe(spec.task.train_step),
               "evaluate": fp.describe(spec.task.evaluate)},
      "train": fp.data_fingerprint(train), "val": fp.data_fingerprint(val),
      "monitor": {name: fp.data_fingerprint(d) for name, d in (monitor or {}).items()},
      "devices": devices,
  }))
  out["metadata"] = check_metadata(metadata)
  return out


def check_metadata(metadata: dict | None) -> dict:
  """User metadata: a dict of JSON values (compared on resume, key by key)."""
  if metadata is None:
    return {}
  if not isinstance(metadata, dict):
    raise ValueError(f"search: `metadata` must be a dict of JSON values, got "
                     f"{type(metadata).__name__}.")
  try:
    return json.loads(json.dumps(metadata, allow_nan=False))
  except (TypeError, ValueError) as error:
    raise ValueError(f"search: `metadata` must be a dict of JSON values ({error}).") from None


# Entries compared one level down (their sub-keys are named in messages).
_NESTED = ("task", "monitor", "metadata", "devices")
_MISSING = "<missing>"


def fingerprint_differences(old: dict, new: dict) -> list[str]:
  """The entries (``task.train_step``, ``metadata.note``, ...) whose values differ."""
  out = []
  for key in list(old) + [k for k in new if k not in old]:
    a, b = old.get(key, _MISSING), new.get(key, _MISSING)
    if key in _NESTED and isinstance(a, dict) and isinstance(b, dict):
      out.extend(f"{key}.{sub}" for sub in list(a) + [k for k in b if k not in a]
                 if a.get(sub, _MISSING) != b.get(sub, _MISSING))
    elif a != b:
      out.append(key)
  return out


def _lookup(tree: dict, dotted: str):
  head, _, sub = dotted.partition(".")
  value = tree.get(head, _MISSING)
  if sub and head in _NESTED and isinstance(value, dict):
    value = value.get(sub, _MISSING)
  return value


def check_resume(meta: dict, fingerprint: dict, config: SearchConfig) -> None:
  """The checkpoint's fingerprint must equal this run's; the error names what differs."""
  import warnings  # pylint: disable=import-outside-toplevel
  saved = meta.get("fingerprint")
  if saved is None:  # a checkpoint of an older version: only the options can be compared
    saved, now = meta.get("config") or {}, config.fingerprint()
    warnings.warn("search: the checkpoint predates the full resume fingerprint; only the "
                  "options are compared (not the task, optimiser, reward or data).",
                  RuntimeWarning, stacklevel=4)
  else:
    now = fingerprint
  differ = fingerprint_differences(saved, now)
  if differ:
    details = "; ".join(f"`{name}`: checkpoint {_lookup(saved, name)!r:.160}, now "
                        f"{_lookup(now, name)!r:.160}" for name in differ[:6])
    raise ValueError(
        f"search: the checkpoint was written with different options ({', '.join(differ)}); "
        f"resume needs the same run (everything but `epochs` and the output options). "
        f"{details}. Use the original settings or a new `output_dir`.")
