"""A study of loss-search strategies: modes x seeds on one data set, a markdown table and a figure.

::

  python examples/amlfs_study.py                                   # MNIST-1D, 5 modes, 3 seeds
  python examples/amlfs_study.py --dataset mnist1d --label-noise 0.2
  python examples/amlfs_study.py --dataset digits --seeds 0 1 2 3 4     # needs [study]
  python examples/amlfs_study.py --dataset cifar10-subset --data-dir DIR --epochs 10 \\
      --population 8 --modes ce_best default losses_indep --seeds 0 1 2 3 4 5

Every mode is one ``jaxloss.search.run`` per seed: the engine users run, with the mode's
strategy (``jaxloss.search.strategies``) and selection, the test split as a monitored split
(the best copy is evaluated on it after every epoch, inside the epoch's program; it never
influences the search). The reported model is the best copy of the last epoch on the
validation split; its test accuracy is the table's number. Every copy sees the same batches
(common random numbers); one seed fixes the initialisation, the data order and the samples,
so the same seed in two modes is a paired comparison.

The table gives test accuracy mean +- std over seeds, paired differences (mean, 95% t
interval, wins) against one cross-entropy run (``ce`` when run; otherwise ``ce_single``, the
mean of ``ce_best``'s independent copies, each evaluated on the test split after the run) and
against ``ce_best`` (the best of B cross-entropy runs: the searches' compute), the share of
epochs whose REINFORCE estimate beats shuffled rewards, and the compute of each row (copies x
epochs). Independent modes (``ce_best``, ``losses_indep``, ``+indep``) also list every copy's
test accuracy: a single run of each loss of the grid.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from loss_families import family_grid, family_loss  # noqa: E402

import jaxloss  # noqa: E402
from jaxloss import search  # noqa: E402
from jaxloss.search import strategies as st  # noqa: E402

DATASETS = ("mnist1d", "digits", "cifar10-subset")
#: Where ``--dataset cifar10-subset`` looks when ``--data-dir`` is not given.
DATA_DIR_ENV = "JAXLOSS_CIFAR10_DIR"


# ----------------------------------------------------------------------------------------------
# Data and tasks
# ----------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Problem:
  """A data set and its model. ``make_task(loss)`` builds the engine's Task training with
  ``loss(cosine, labels, theta, *, scale)`` (``jaxloss.amlfs_loss`` or
  ``loss_families.family_loss``); :meth:`task_for` caches one Task per loss, so the seeds of a
  mode share one compiled program."""
  name: str
  make_task: Any
  train: tuple
  val: tuple
  test: tuple
  batch_size: int
  eval_batch_size: int
  num_intervals: int = 6
  info: dict = dataclasses.field(default_factory=dict)
  # head(state, x) -> (cosine (N, C), scale (N, C) or scalar): for bench/diagnosis.py only.
  head: Any = None
  tasks: dict = dataclasses.field(default_factory=dict)

  def task_for(self, loss=jaxloss.amlfs_loss) -> search.Task:
    if loss not in self.tasks:
      self.tasks[loss] = self.make_task(loss)
    return self.tasks[loss]

  @property
  def task(self) -> search.Task:
    """The AM-LFS task (``jaxloss.amlfs_loss``)."""
    return self.task_for(jaxloss.amlfs_loss)


def add_label_noise(labels: np.ndarray, ratio: float, num_classes: int = 10, seed: int = 0):
  from amlfs_mnist1d import add_label_noise as noise  # pylint: disable=import-outside-toplevel
  return noise(labels, ratio, num_classes, seed) if ratio else labels


def load_cifar_subset(data_dir: str | None, num_val: int = 1000, num_train=None):
  """A CIFAR-10 folder or archive read by the example's reader: train / val / test uint8 NHWC.

  The training split's last ``num_val`` images are the validation split, the rest (or the
  first ``num_train``) the training split; the test split is the archive's ``test_batch``.
  With the shared real subset (4,136 training and 1,034 test images): 3,136 / 1,000 / 1,034.
  """
  from cifar10 import input_pipeline  # pylint: disable=import-outside-toplevel
  data_dir = data_dir or os.environ.get(DATA_DIR_ENV)
  if not data_dir:
    raise SystemExit(f"amlfs_study.py: error: --dataset cifar10-subset needs --data-dir DIR "
                     f"(or ${DATA_DIR_ENV}): a folder holding cifar-10-batches-py/ or an "
                     "official CIFAR-10 archive.")
  train, test = input_pipeline.load_cifar10(data_dir)
  if num_val >= len(train):
    raise SystemExit(f"amlfs_study.py: error: --num-val {num_val} leaves no training image "
                     f"of the {len(train)} in {data_dir}.")
  n = len(train) - num_val if num_train is None else min(num_train, len(train) - num_val)
  x, y = train.images, train.labels.astype(np.int32)
  return (x[:n], y[:n]), (x[-num_val:], y[-num_val:]), (test.images, test.labels.astype(np.int32))


def mnist1d_problem(args) -> Problem:
  from amlfs_mnist1d import CNN, load_mnist1d, make_task  # pylint: disable=import-outside-toplevel
  train, val, test = load_mnist1d(6000, 1000)
  train = (train[0], add_label_noise(train[1], args.label_noise))
  bs = args.batch_size or 64
  steps = len(train[1]) // bs * args.epochs
  model = CNN()

  def task(loss):
    return make_task(learning_rate=1e-2, total_steps=steps, scale=None, model=model,
                     loss_fn=loss)

  def head(state, x):
    cos, xn, wn = model.apply({"params": state.params}, x)
    return cos, xn * wn

  return Problem("mnist1d", task, train, val, test, bs, 1000, head=head,
                 info={"model": "1-D CNN (amlfs_mnist1d.CNN), Adam 1e-2 cosine, eq. 4 scale"})


def digits_problem(args) -> Problem:
  import flax.linen as nn  # pylint: disable=import-outside-toplevel
  import optax  # pylint: disable=import-outside-toplevel
  try:
    from sklearn.datasets import load_digits  # pylint: disable=import-outside-toplevel
  except ImportError:
    raise SystemExit("amlfs_study.py: error: --dataset digits needs scikit-learn: "
                     "pip install -e '.[study]'") from None

  d = load_digits()
  x = (d.data / 16.0).astype(np.float32)
  y = d.target.astype(np.int32)
  order = np.random.default_rng(0).permutation(len(y))
  x, y = x[order], y[order]
  train, val, test = (x[:1000], y[:1000]), (x[1000:1400], y[1000:1400]), (x[1400:], y[1400:])
  train = (train[0], add_label_noise(train[1], args.label_noise))

  class MLP(nn.Module):
    @nn.compact
    def __call__(self, x):
      x = nn.relu(nn.Dense(64)(x))
      head = self.param("head", nn.initializers.lecun_normal(), (64, 10))
      return jaxloss.cosine_logits(x, head, weight_layout="dc", return_norms=True)

  model = MLP()
  bs = args.batch_size or 32

  def forward(params, x):
    cos, xn, wn = model.apply({"params": params}, x)
    return cos, xn * wn

  def init(key):
    return model.init(key, jnp.zeros((1, 64)))["params"], None

  def evaluate(params, ms, batch):
    cos, s = forward(params, batch[0])
    return search.classification_metrics(s * cos, batch[1], per_example=True)

  def task(loss_fn):
    def loss(params, ms, batch, theta, key):
      del key
      cos, s = forward(params, batch[0])
      return loss_fn(cos, batch[1], theta, scale=s), ms
    return search.optax_task(init=init, loss=loss, evaluate=evaluate,
                             optimizer=optax.adam(3e-3))

  return Problem("digits", task, train, val, test, bs, 400,
                 head=lambda state, x: forward(state.params, x),
                 info={"model": "MLP 64, cosine head, eq. 4 scale, Adam 3e-3"})


def cifar_problem(args) -> Problem:
  from cifar10 import configs, input_pipeline, models  # pylint: disable=import-outside-toplevel
  from cifar10 import train as cifar_train  # pylint: disable=import-outside-toplevel
  train, val, test = load_cifar_subset(args.data_dir, num_val=args.num_val or 1000,
                                       num_train=args.num_train or None)
  train = (train[0], add_label_noise(train[1], args.label_noise))
  bs = args.batch_size or 128
  config = configs.default(
      mode="amlfs", depth=args.depth, width=args.width, conv_impl="patches", dtype="float32",
      batch_size=bs, epochs=args.epochs, num_train=len(train[1]), num_val=len(val[1]),
      eval_batch_size=500, population=args.population)
  program = cifar_train.make_program(config)

  def task(loss):
    return cifar_train.make_program(config, loss).task

  def head(state, x):
    features, kernel = program.model.apply({"params": state.params, **state.model_state},
                                           input_pipeline.normalize(x), train=False)
    cos, scale, _ = models.head_outputs(features, kernel, "norms")
    return cos, scale

  return Problem("cifar10-subset", task, train, val, test, bs, 500, head=head,
                 info={"model": f"ResNet-{args.depth} width {args.width} (patches convs), "
                                f"SGD 0.1 momentum 0.9 wd 1e-4, lr /10 at 50%/75%, "
                                f"crop+flip, eq. 4 scale ('norms'), float32"})


PROBLEMS = {"mnist1d": mnist1d_problem, "digits": digits_problem,
            "cifar10-subset": cifar_problem}


# ----------------------------------------------------------------------------------------------
# One run: the engine
# ----------------------------------------------------------------------------------------------


def run_mode(problem: Problem, strategy, *, num: int, selection, epochs: int, seed: int,
             select_until=None, initial_state=None, verbose: bool = False, mu=None,
             loss=jaxloss.amlfs_loss) -> dict:
  """``search.run`` of one mode and seed; the test split is monitored (the best copy's).

  ``mu``: the initial mean (default: ``identity_theta``, cross-entropy; unused by a grid).
  ``loss``: the loss theta parameterises. With ``selection='none'`` (independent copies) the
  result also holds ``'copy_test'``, every copy's final test accuracy.
  """
  if isinstance(strategy, st.Grid):
    mu = None
  elif mu is None:
    mu = jaxloss.identity_theta(problem.num_intervals)
  task = problem.task_for(loss)
  config = search.SearchConfig(
      initial_mu=mu, strategy=strategy, selection=selection, select_until=select_until,
      population_size=num, epochs=epochs, batch_size=problem.batch_size,
      eval_batch_size=problem.eval_batch_size, seed=seed, progress=verbose)
  start = time.perf_counter()
  result = search.run(task, config, problem.train, problem.val,
                      monitor={"test": problem.test}, initial_state=initial_state)
  seconds = time.perf_counter() - start
  records = [{**r, "best_test": r["monitor"]["test"]["score"]} for r in result.records]
  for r in records:
    r.pop("monitor")
  out = {"records": records, "test_accuracy": records[-1]["best_test"],
         "val_accuracy": result.best_reward, "mu": result.mu.tolist(), "seconds": seconds,
         "result": result}
  if selection == "none":
    out["copy_test"] = copy_test_accuracies(task, result, problem.test, problem.eval_batch_size)
  return out


def copy_test_accuracies(task, result, test, batch_size: int) -> list[float]:
  """Every copy's test accuracy in the final population (after the run: never seen by it)."""
  population = result.search_state.population
  num = jax.tree.leaves(population)[0].shape[0]
  return [search.evaluate_dataset(task, jax.tree.map(lambda leaf, i=i: leaf[i], population),
                                  test, batch_size=batch_size)["score"] for i in range(num)]


# ----------------------------------------------------------------------------------------------
# Modes
# ----------------------------------------------------------------------------------------------


def grid_thetas(num: int, m: int = 6) -> tuple[list, list]:
  """``num`` fixed thetas: CE, CosFace margins, ArcFace-like and focal-like (cycled)."""
  entries = [("ce", jaxloss.identity_theta(m)),
             ("cosface 0.05", jaxloss.cosface_theta(0.05, m)),
             ("cosface 0.1", jaxloss.cosface_theta(0.1, m)),
             ("cosface 0.2", jaxloss.cosface_theta(0.2, m)),
             ("arcface 0.1", jaxloss.arcface_theta(0.1, m)),
             ("arcface 0.2", jaxloss.arcface_theta(0.2, m)),
             ("focal 1", jaxloss.fit_theta(None, lambda p: p ** ((1 - p) ** 1.0), m)),
             ("focal 2", jaxloss.fit_theta(None, lambda p: p ** ((1 - p) ** 2.0), m))]
  chosen = [entries[i % len(entries)] for i in range(num)]
  return [n for n, _ in chosen], [np.asarray(t).tolist() for _, t in chosen]


#: Selection-rule variants of a mode: ``<mode>+<variant>`` (e.g. ``default+guarded``).
SELECTION_VARIANTS = {
    "guarded": ("guarded", None), "average": ("average", None),
    "top2": (search.selection.Average(top_k=2), None), "truncation": ("truncation", None),
    "until50": ("best", 0.5), "until75": ("best", 0.75), "indep": ("none", None),
}


#: The default strategy around label smoothing 0.1 (``mu_0``: the identity transforms and a
#: label-smoothing coordinate of 0.1): frozen (``default_ls``: the four parts' sigmas) or
#: searched with sigma 0.05 (``default_eps``).
LS_START = 0.1
LS_DEFAULTS = {"default_ls": st.DEFAULT,
               "default_eps": dataclasses.replace(st.DEFAULT, sigma=st.DEFAULT.sigma + (0.05,))}
#: Modes whose theta is ``[family, parameter]`` (``loss_families.family_loss``).
FAMILY_MODES = ("losses", "losses_indep")


def mode_loss_and_mu(name: str, m: int = 6):
  """The loss a mode's theta parameterises and its initial mean (None: the identity)."""
  base = name.partition("+")[0]
  if base in FAMILY_MODES:
    return family_loss, None
  if base in LS_DEFAULTS:
    return jaxloss.amlfs_loss, jaxloss.identity_theta(m, label_smoothing=LS_START)
  return jaxloss.amlfs_loss, None


def make_mode(name: str, num: int, m: int = 6):
  """``(strategy, population size, selection, select_until)`` of a study mode
  (:data:`MODE_HELP`; ``<mode>+<variant>`` with a :data:`SELECTION_VARIANTS` variant); its
  loss and initial mean: :func:`mode_loss_and_mu`."""
  base, _, variant = name.partition("+")
  strategy, num, selection = _make_mode(base, num, m)
  if not variant:
    return strategy, num, selection, None
  if variant not in SELECTION_VARIANTS:
    raise ValueError(f"unknown selection variant {variant!r} (one of "
                     f"{sorted(SELECTION_VARIANTS)})")
  return (strategy, num) + SELECTION_VARIANTS[variant]


def _make_mode(name: str, num: int, m: int = 6):
  """``(strategy, population size, selection)`` of a base mode."""
  if name == "paper":
    return st.PAPER, num, "best"
  if name == "default":
    return st.DEFAULT, num, "best"
  if name == "random":
    return st.RANDOM, num, "best"
  if name == "grid":
    return st.Grid(grid_thetas(num, m)[1]), num, "best"
  if name == "grid_indep":
    return st.Grid(grid_thetas(num, m)[1]), num, "none"
  if name == "losses":
    return st.Grid(family_grid(num)[1]), num, "best"
  if name == "losses_indep":
    return st.Grid(family_grid(num)[1]), num, "none"
  if name in ("default_ls", "default_eps"):
    return LS_DEFAULTS[name], num, "best"
  if name == "ce":
    return st.FIXED, 1, "best"
  if name == "ce_best":
    return st.FIXED, num, "none"
  ablations = {
      "mean_copy": dict(mean_copy=True),
      "antithetic": dict(antithetic=True),
      "rank": dict(fitness="rank"),
      "parts": dict(sigma=st.DEFAULT.sigma),
      "parts_whiten": dict(sigma=st.DEFAULT.sigma, whiten=True, learning_rate=0.25),
      "guard": dict(drift_guard=1.0),
      "small_lr": dict(learning_rate=0.01),
      "small_sigma": dict(sigma=0.05),
      "mean_copy_parts": dict(mean_copy=True, sigma=st.DEFAULT.sigma),
  }
  if name in ablations:
    return dataclasses.replace(st.PAPER, **ablations[name]), num, "best"
  leave_one_out = {
      "default-no_mean_copy": dict(mean_copy=False),
      "default-no_antithetic": dict(antithetic=False),
      "default-no_rank": dict(fitness="zscore"),
      "default-no_guard": dict(drift_guard=0.0),
      "default-no_parts": dict(sigma=0.2, whiten=False, learning_rate=0.05),
  }
  if name in leave_one_out:
    return dataclasses.replace(st.DEFAULT, **leave_one_out[name]), num, "best"
  if name == "random_parts":
    return dataclasses.replace(st.DEFAULT, update_mean=False), num, "best"
  if name == "evosax":
    return st.EvosaxStrategy("Open_ES", population_size=num, sigma=0.2, learning_rate=0.05), \
        num, "best"
  raise ValueError(f"unknown mode {name!r}")


#: Every mode, and what it trains (B = --population).
MODE_HELP = {
    "paper": "AM-LFS exactly as the paper (strategies.PAPER: sigma 0.2, Adam 0.05 on mu, "
             "z-scored rewards), B copies, the best broadcast after every epoch",
    "default": "strategies.DEFAULT (the library's default strategy), B copies, best broadcast",
    "random": "strategies.RANDOM: the paper's samples around mu_0, mu never moves (ablation)",
    "grid": "B fixed losses (CE, CosFace 0.05/0.1/0.2, ArcFace-like 0.1/0.2, focal-like 1/2, "
            "cycled), the best broadcast after every epoch (equal compute)",
    "grid_indep": "the same B fixed losses as independent runs; the best on validation kept",
    "losses": "B fixed losses of the library on the plain logits (loss_families.DEFAULT_GRID: "
              "CE, label smoothing 0.1/0.2, Poly-1, focal 1, GCE 0.7/0.4, SCE), the best "
              "broadcast after every epoch (equal compute)",
    "losses_indep": "the same B fixed losses as independent runs; the best on validation kept "
                    "(equal compute)",
    "default_ls": "strategies.DEFAULT around label smoothing 0.1 (mu_0: identity transforms + "
                  "smoothing 0.1, the smoothing coordinate frozen)",
    "default_eps": "strategies.DEFAULT around label smoothing 0.1, the smoothing coordinate "
                   "searched too (sigma 0.05)",
    "ce": "cross-entropy, ONE copy (1/B of a search's compute)",
    "ce_best": "cross-entropy, B independent copies (per-copy initialisation), the best on "
               "validation kept (equal compute)",
    "mean_copy": "PAPER + a mean copy (copy 0 trains with mu)",
    "antithetic": "PAPER + mirrored samples",
    "rank": "PAPER + rank fitness",
    "parts": "PAPER + DEFAULT's per-part sigma",
    "parts_whiten": "PAPER + per-part sigma and whitened Adam steps (0.25 sigma)",
    "guard": "PAPER + a drift guard at one standard error",
    "small_lr": "PAPER with Adam 0.01 on mu",
    "small_sigma": "PAPER with sigma 0.05",
    "mean_copy_parts": "PAPER + a mean copy and per-part sigma",
    "evosax": "evosax's Open_ES (sigma 0.2, Adam 0.05); needs evosax",
    "default-no_mean_copy": "DEFAULT without the mean copy",
    "default-no_antithetic": "DEFAULT without mirrored samples",
    "default-no_rank": "DEFAULT with z-scored rewards",
    "default-no_guard": "DEFAULT without the drift guard",
    "default-no_parts": "DEFAULT with the paper's sigma 0.2 and Adam 0.05 unwhitened",
    "random_parts": "DEFAULT's samples around mu_0, mu never moves",
}
MODES = ("paper", "default", "random", "grid", "ce")
ALL_MODES = tuple(MODE_HELP)
_VARIANT_HELP = {
    "guarded": "selection.Guarded(k=2): the best copy replaces the population only when it "
               "leads copy 0 by 2 paired standard errors on the validation examples",
    "average": "selection.Average(): every copy receives the mean of the copies' states",
    "top2": "selection.Average(top_k=2): the mean of the two best copies",
    "truncation": "selection.Truncation(): the worst quarter takes best-quarter states",
    "until50": "the mode's selection in the first half of the epochs only (select_until=0.5)",
    "until75": "the mode's selection in the first 75% of the epochs (select_until=0.75)",
    "indep": "no selection: independent copies, the best on validation at the end",
}


# ----------------------------------------------------------------------------------------------
# Table and figure
# ----------------------------------------------------------------------------------------------


def reinforce_significance(records: list[dict], shuffles: int = 999, seed: int = 0,
                           level: float = 0.05) -> float | None:
  """The share of epochs whose REINFORCE estimate beats shuffled rewards (a permutation test).

  Per epoch, from the records: the whitened directions ``z_i = (theta_i - mu) / sd`` (``sd``
  per coordinate over the copies; copies at ``mu`` give 0) and the fitness the strategy used
  (``normalized_rewards``, valid copies only) give the estimate ``g = mean_i f_i z_i``; its
  squared norm is compared with ``shuffles`` estimates whose fitness values are permuted among
  the copies. An epoch counts when the share of shuffles at least as large is below ``level``
  (with the observed one included). None when no epoch has two valid sampled copies.
  """
  rng = np.random.default_rng(seed)
  hits = tests = 0
  for record in records:
    thetas = np.asarray(record["thetas"], np.float64).reshape(len(record["thetas"]), -1)
    mu = np.asarray(record["mu"], np.float64).reshape(-1)
    fitness = np.asarray([np.nan if f is None else f for f in record["normalized_rewards"]],
                         np.float64)
    ok = np.asarray(record["finite"], bool) & np.isfinite(fitness)
    delta = thetas[ok] - mu
    sampled = np.any(delta != 0, axis=1)
    delta, f = delta[sampled], fitness[ok][sampled]
    if len(f) < 2:
      continue
    sd = delta.std(axis=0)
    z = np.where(sd > 0, delta / np.where(sd > 0, sd, 1), 0)
    observed = np.sum((f @ z) ** 2)
    perms = np.stack([rng.permutation(f) for _ in range(shuffles)])
    null = np.sum((perms @ z) ** 2, axis=1)
    p_value = (1 + np.sum(null >= observed)) / (1 + shuffles)
    tests += 1
    hits += p_value < level
  return hits / tests if tests else None


def _paired(results, mode, ref):
  """``mean [95% interval] (wins/seeds)`` of the per-seed difference ``mode - ref``."""
  d = paired_differences(results, mode, ref)
  if not len(d) or mode == ref:
    return "-"
  half = interval95(d)
  interval = "" if np.isnan(half) else f" [{d.mean() - half:+.3f}, {d.mean() + half:+.3f}]"
  return f"{d.mean():+.4f}{interval} ({int(np.sum(d > 0))}/{len(d)})"


#: The row derived from ``ce_best``'s copies: one cross-entropy run's expected accuracy.
CE_SINGLE = "ce_single"


def with_single_ce(results: list[dict]) -> list[dict]:
  """``results`` plus, per ``ce_best`` run with per-copy test accuracies, a ``ce_single`` row:
  the mean test accuracy of its B independent cross-entropy copies (the expected accuracy of
  ONE cross-entropy run of that seed; compute 1 x epochs)."""
  extra = [{"mode": CE_SINGLE, "seed": r["seed"], "copies": 1,
            "test_accuracy": float(np.mean(r["copy_test"])), "seconds": r["seconds"] / r["copies"],
            "records": r["records"], "derived": True}
           for r in results if r["mode"] == "ce_best" and r.get("copy_test")]
  return extra + results if extra and not any(r["mode"] == CE_SINGLE for r in results) \
      else results


def single_reference(results: list[dict]) -> str:
  """The single cross-entropy reference: ``ce`` if it was run, else ``ce_single``."""
  modes = {r["mode"] for r in results}
  return "ce" if "ce" in modes or CE_SINGLE not in modes else CE_SINGLE


def table(results: list[dict]) -> str:
  results = with_single_ce(results)
  single = single_reference(results)
  modes = list(dict.fromkeys(r["mode"] for r in results))
  lines = ["| mode | compute (copies x epochs) | seeds | test accuracy | per seed | "
           f"vs `{single}` (paired) | vs `ce_best` (paired) | REINFORCE > shuffled | "
           "val - test | lead / SE | s / run |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
  for mode in modes:
    rs = sorted((r for r in results if r["mode"] == mode), key=lambda r: r["seed"])
    acc = np.array([r["test_accuracy"] for r in rs])
    std = acc.std(ddof=1) if len(acc) > 1 else 0.0
    secs = np.mean([r["seconds"] for r in rs])
    compute = f"{rs[0]['copies']} x {len(rs[0]['records'])}"
    lines.append(f"| `{mode}` | {compute} | {len(rs)} | {acc.mean():.4f} ± {std:.4f} | "
                 + " ".join(f"{a:.3f}" for a in acc)
                 + f" | {_paired(results, mode, single)} | {_paired(results, mode, 'ce_best')} "
                 f"| {'-' if mode == CE_SINGLE else _share(rs)} | {_val_minus_test(rs)} | "
                 f"{'-' if mode == CE_SINGLE else _lead(rs)} | "
                 f"{'-' if mode == CE_SINGLE else f'{secs:.0f}'} |")
  lines.append("")
  lines.append("per seed: in the order of the seeds. std: sample std over seeds (ddof 1). "
               "Paired: mean [95% t interval] of the per-seed difference in test accuracy "
               "(same seed = same data order and initialisation key), (wins/seeds). "
               "REINFORCE > shuffled: the share of epochs (all seeds) whose REINFORCE "
               "estimate beats 999 shuffles of the rewards at "
               "p < 0.05 (reinforce_significance; 0.05 is what noise alone gives; '-': mu never "
               "moves). val - test: the reported model's validation accuracy (what selected it) "
               "minus its test accuracy, mean over seeds: how much the selection on validation "
               "flatters it (the winner's curse). lead / SE: per epoch, the best copy's "
               "validation accuracy minus the copies' mean, in binomial standard errors of one "
               "copy's accuracy on the validation split, averaged over the epochs of the second "
               "half (after the first learning-rate drop) and the seeds (for 8 copies whose "
               "accuracies differ by independent noise of one SE it would be about 1.4; copies "
               "scored on the same images differ by less; far below 1: the copies are "
               "indistinguishable on this validation split, and selecting among them is "
               "choosing noise).")
  if single == CE_SINGLE:
    lines.append("`ce_single`: not a run of its own: per seed, the mean test accuracy of "
                 "`ce_best`'s B independent cross-entropy copies (the expected accuracy of one "
                 "cross-entropy run; compute 1 x epochs).")
  per_copy = copy_table(results)
  if per_copy:
    lines += ["", per_copy]
  return "\n".join(lines)


def selection_lead(records: list[dict]) -> float | None:
  """Mean over the second half's epochs of (best - mean) validation accuracy of the valid
  copies, in binomial standard errors ``sqrt(p (1 - p) / n)`` of one copy's accuracy."""
  leads = []
  for record in records[len(records) // 2:]:
    val = record.get("val") or {}
    correct, count = np.asarray(val.get("correct", []), float), np.asarray(val.get("count", []))
    ok = np.asarray(record.get("finite", [True] * len(correct)), bool)
    if len(correct) < 2 or ok.sum() < 2:
      continue
    acc = correct[ok] / count[ok]
    p = acc.mean()
    se = np.sqrt(max(p * (1 - p), 1e-12) / count[ok][0])
    leads.append((acc.max() - p) / se)
  return float(np.mean(leads)) if leads else None


def _lead(runs: list[dict]) -> str:
  leads = [x for x in (selection_lead(r["records"]) for r in runs) if x is not None]
  return f"{np.mean(leads):.2f}" if leads else "-"


def _val_minus_test(runs: list[dict]) -> str:
  gaps = [r["val_accuracy"] - r["test_accuracy"] for r in runs if "val_accuracy" in r]
  return f"{np.mean(gaps):+.3f}" if gaps else "-"


def copy_table(results: list[dict]) -> str:
  """Independent modes: each copy's final test accuracy, mean ± std over seeds (each copy is
  one single run of its loss: compute 1 x epochs)."""
  rows = []
  for mode in dict.fromkeys(r["mode"] for r in results if r.get("copy_test")):
    rs = [r for r in results if r["mode"] == mode and r.get("copy_test")]
    base = mode.partition("+")[0]
    names = (family_grid(rs[0]["copies"])[0] if base == "losses_indep" else
             grid_thetas(rs[0]["copies"])[0] if base == "grid_indep" else
             ["ce"] * rs[0]["copies"])
    acc = np.array([r["copy_test"] for r in rs])
    cells = [f"{n}: {a:.3f} ± {sd:.3f}" for n, a, sd in
             zip(names, acc.mean(0), acc.std(0, ddof=1) if len(rs) > 1 else 0 * acc[0])]
    rows.append(f"| `{mode}` | {len(rs)} | " + "; ".join(cells) + " |")
  if not rows:
    return ""
  return "\n".join(["| independent mode | seeds | each copy's test accuracy (one run of its "
                    "loss, 1 x epochs): mean ± std over seeds |", "|---|---|---|"] + rows)


def _share(runs: list[dict]) -> str:
  """The permutation test's share over a mode's runs, for modes whose mu moves."""
  moving = [r for r in runs if any(rec["mu_next"] != rec["mu"] for rec in r["records"])]
  if not moving:
    return "-"
  records = [rec for r in moving for rec in r["records"]]
  share = reinforce_significance(records)
  return "-" if share is None else f"{share:.2f} of {len(records)}"


def paired_differences(results: list[dict], mode: str, ref: str) -> np.ndarray:
  """Per seed shared by ``mode`` and ``ref``: test accuracy of ``mode`` minus ``ref``'s."""
  a = {r["seed"]: r["test_accuracy"] for r in results if r["mode"] == mode}
  b = {r["seed"]: r["test_accuracy"] for r in results if r["mode"] == ref}
  return np.array([a[s] - b[s] for s in sorted(set(a) & set(b))], np.float64)


def interval95(d: np.ndarray) -> float:
  """Half-width of the 95% Student-t interval of the mean of ``d`` (nan for one value)."""
  if len(d) < 2:
    return float("nan")
  df = len(d) - 1
  quantile = T975[df - 1] if df <= len(T975) else 1.96
  return float(quantile * d.std(ddof=1) / np.sqrt(len(d)))


# The 0.975 quantiles of Student's t with 1..30 degrees of freedom (no scipy needed).
T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
        2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
        2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def figure(results: list[dict], path: str, title: str):
  """Left: every mode's test accuracy minus the reference's (``ce`` if run, else the first
  mode), seed by seed, with the mean and its 95% t interval, beside a line at 0 (no truncated
  axis: a difference is read against 0). Right: the best copy's test accuracy per epoch (mean
  over seeds), whole-epoch ticks. Every label carries the mode's compute (copies x epochs).
  Saves ``path`` (png) and returns the matplotlib figure."""
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  from matplotlib.ticker import MaxNLocator  # pylint: disable=import-outside-toplevel

  results = with_single_ce(results)
  modes = list(dict.fromkeys(r["mode"] for r in results))
  ref = single_reference(results)
  ref = ref if ref in modes else modes[0]
  compute = {m: next(f"{r['copies']} x {len(r['records'])}" for r in results if r["mode"] == m)
             for m in modes}
  others = [m for m in modes if m != ref]
  color = {m: "k" if m == ref else f"C{i % 10}" for i, m in enumerate(others, 1)}
  color[ref] = "k"
  fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, max(4.2, 1.2 + 0.3 * len(others))))
  for i, mode in enumerate(others):
    d = paired_differences(results, mode, ref)
    if not len(d):
      continue
    half = interval95(d)
    ax.scatter(d, np.full(len(d), i), color="0.3", s=10, zorder=3)
    ax.errorbar(d.mean(), i, xerr=None if np.isnan(half) else half, fmt="o", color=color[mode],
                capsize=3, markersize=5, zorder=4)
  ax.axvline(0.0, color="k", linewidth=0.8)
  ax.set_yticks(range(len(others)), [f"{m} ({compute[m]})" for m in others], fontsize=8)
  ax.invert_yaxis()
  seeds = sorted({r["seed"] for r in results})
  ax.set_xlabel(f"test accuracy minus {ref}'s ({compute[ref]}), same seed\n(dots: the "
                f"{len(seeds)} seeds; marker and bar: mean and 95% t interval)", fontsize=8)
  for mode in modes:
    rs = [r for r in results if r["mode"] == mode and not r.get("derived")]
    if not rs:  # ce_single: no curve of its own (its number is the copies' final mean)
      continue
    curves = np.array([[rec["best_test"] for rec in r["records"]] for r in rs])
    ax2.plot(np.arange(1, curves.shape[1] + 1), curves.mean(0),
             label=f"{mode} ({compute[mode]})", color=color[mode],
             linestyle="--" if mode == ref else "-")
  ax2.xaxis.set_major_locator(MaxNLocator(integer=True))
  import textwrap  # pylint: disable=import-outside-toplevel
  fig.suptitle("\n".join(textwrap.wrap(title + " — compute: copies x epochs", 130)),
               fontsize=8)
  ax2.set_xlabel("epoch")
  ax2.set_ylabel("test accuracy of the best copy\n(mean over seeds)")
  ax2.legend(fontsize=7, ncol=2)
  fig.tight_layout(rect=(0, 0, 1, 0.93))
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return fig


# ----------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------


def parse_args(argv=None):
  modes = "\n".join(f"  {name:<22} {text}" for name, text in MODE_HELP.items())
  modes += "\n\nselection variants (MODE+VARIANT):\n" + "\n".join(
      f"  {name:<22} {_VARIANT_HELP[name]}" for name in SELECTION_VARIANTS)
  p = argparse.ArgumentParser(
      description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
      epilog=f"modes (--modes):\n{modes}")
  p.add_argument("--dataset", choices=DATASETS, default="mnist1d",
                 help="mnist1d (generated locally: 3,800 train / 1,000 val / 1,200 test, a 1-D "
                      "CNN); digits (scikit-learn's 8x8 digits: 1,000 / 400 / 397, an MLP; needs "
                      "the [study] extra); cifar10-subset (a CIFAR-10 folder or archive from "
                      "--data-dir, a ResNet of --depth and --width). Default: mnist1d.")
  p.add_argument("--data-dir", default=None,
                 help=f"cifar10-subset: a folder holding cifar-10-batches-py/ or an official "
                      f"CIFAR-10 archive (default: ${DATA_DIR_ENV}).")
  p.add_argument("--modes", nargs="+", type=_mode, default=list(MODES), metavar="MODE",
                 help=f"modes to run (see below; default: {' '.join(MODES)}); MODE+VARIANT "
                      f"runs a mode with another selection: {', '.join(SELECTION_VARIANTS)} "
                      "(e.g. default+guarded, ce_best is ce+indep's equal-compute form).")
  p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2],
                 help="seeds; a seed fixes initialisation, data order and samples (default: "
                      "0 1 2).")
  p.add_argument("--epochs", type=_positive, default=20, help="epochs per run (default: 20).")
  p.add_argument("--population", type=_positive, default=8,
                 help="B, the copies of the searching modes (default: 8).")
  p.add_argument("--batch-size", type=_positive, default=None,
                 help="training batch size (default: 64 mnist1d, 32 digits, 128 cifar10-subset).")
  p.add_argument("--label-noise", type=_fraction, default=0.0,
                 help="symmetric label noise on the training split only, in [0, 1) (default 0).")
  p.add_argument("--depth", type=_positive, default=8,
                 help="cifar10-subset: ResNet depth, 6n+2 (default: 8).")
  p.add_argument("--width", type=_positive, default=8,
                 help="cifar10-subset: channels of the first stage (default: 8).")
  p.add_argument("--num-train", type=int, default=0,
                 help="cifar10-subset: training images (0, the default: every image not in "
                      "the validation split).")
  p.add_argument("--num-val", type=int, default=0,
                 help="cifar10-subset: validation images, the last of the training split "
                      "(0, the default: 1,000).")
  p.add_argument("--from-json", nargs="+", default=None, metavar="FILE",
                 help="no training: merge the results of earlier --json files into the table.")
  p.add_argument("--output", default=None, help="write the markdown table to this file.")
  p.add_argument("--figure", default=None,
                 help="write the figure to this path (png): each mode's test accuracy minus "
                      "one cross-entropy run's (ce, or ce_single from ce_best), seed by seed, "
                      "with 95%% t intervals around 0, and the test "
                      "accuracy per epoch; labels carry the compute (copies x epochs).")
  p.add_argument("--json", default=None, help="write every run's records to this file.")
  p.add_argument("--verbose", action="store_true", help="a progress bar per run.")
  args = p.parse_args(argv)
  if args.dataset == "cifar10-subset" and (args.depth - 2) % 6:
    p.error(f"--depth must be 6n+2 (8, 14, 20, ...), got {args.depth}.")
  return args


def _mode(text: str) -> str:
  base, plus, variant = text.partition("+")
  if base not in MODE_HELP or (plus and variant not in SELECTION_VARIANTS):
    raise argparse.ArgumentTypeError(
        f"invalid mode {text!r}: a mode ({', '.join(ALL_MODES)}), optionally +VARIANT "
        f"({', '.join(SELECTION_VARIANTS)})")
  return text


def _positive(text: str) -> int:
  try:
    value = int(text)
  except ValueError:
    raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
  if value < 1:
    raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
  return value


def _fraction(text: str) -> float:
  try:
    value = float(text)
  except ValueError:
    raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}") from None
  if not 0.0 <= value < 1.0:
    raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {value}")
  return value


def main(argv=None) -> list[dict]:
  args = parse_args(argv)
  if args.from_json:
    return merge(args)
  problem = PROBLEMS[args.dataset](args)
  header = (f"{args.dataset}: {len(problem.train[1])} train / {len(problem.val[1])} val / "
            f"{len(problem.test[1])} test; label noise {args.label_noise:.0%}; "
            f"B={args.population}, {args.epochs} epochs, batch {problem.batch_size}; "
            f"{problem.info.get('model', '')}")
  print(header, flush=True)
  results = []
  for seed in args.seeds:
    for mode in args.modes:
      strategy, num, selection, until = make_mode(mode, args.population, problem.num_intervals)
      loss, mu = mode_loss_and_mu(mode, problem.num_intervals)
      out = run_mode(problem, strategy, num=num, selection=selection, epochs=args.epochs,
                     seed=seed, select_until=until, verbose=args.verbose, mu=mu, loss=loss)
      r = {"mode": mode, "seed": seed, "copies": num, "test_accuracy": out["test_accuracy"],
           "val_accuracy": out["val_accuracy"], "mu": out["mu"], "seconds": out["seconds"],
           "records": out["records"]}
      if "copy_test" in out:
        r["copy_test"] = out["copy_test"]
      results.append(r)
      print(f"{mode:<12} seed {seed}: test {r['test_accuracy']:.4f} val "
            f"{r['val_accuracy']:.4f} ({r['seconds']:.0f} s)", flush=True)
      if args.json:
        _dump(args, header, results)
  text = f"{header}\n\n{table(results)}\n"
  print(text)
  if args.output:
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, "w") as f:
      f.write(text)
  if args.figure:
    figure(results, args.figure, header)
  if args.json:
    _dump(args, header, results)
  return results


def merge(args) -> list[dict]:
  results, header = [], None
  for path in args.from_json:
    try:
      with open(path) as f:
        data = json.load(f)
      header = header or data["header"]
      results += data["results"]
    except (OSError, ValueError, KeyError, TypeError) as error:
      raise SystemExit(f"amlfs_study.py: error: --from-json {path}: not a --json file of this "
                       f"script ({type(error).__name__}: {error}).") from None
  text = f"{header}\n\n{table(results)}\n"
  print(text)
  if args.output:
    with open(args.output, "w") as f:
      f.write(text)
  if args.figure:
    figure(results, args.figure, header)
  return results


def _dump(args, header, results):
  os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
  with open(args.json, "w") as f:
    json.dump({"args": vars(args), "header": header, "results": results}, f)


if __name__ == "__main__":
  main()
