"""A study of loss-search strategies: modes x seeds on one data set, a markdown table and a figure.

::

  python examples/amlfs_study.py                                   # MNIST-1D, every mode, 3 seeds
  python examples/amlfs_study.py --dataset mnist1d --label-noise 0.2
  python examples/amlfs_study.py --dataset digits --seeds 0 1 2 3 4
  python examples/amlfs_study.py --dataset cifar10-subset --epochs 10 --population 8 \\
      --modes paper default random grid ce --seeds 0 1 2

Every mode trains ``--population`` copies of one model through the SAME compiled epoch program
(a ``lax.scan`` over steps of the task's ``train_step`` under ``jax.vmap``; every copy sees the
same batches and augmentation keys), with the thetas the mode's strategy
(``jaxloss.search.strategies``) asks for; after the epoch every copy is scored on the
validation split, the strategy is told the rewards and (``--select best``, the default) the
best copy's whole training state is copied to every copy. The reported model is the best copy
of the last epoch; its test accuracy is measured on the test split, which nothing else sees.

Modes (``MODES``): ``paper`` (AM-LFS exactly as section 3.4: sigma 0.2, Adam 0.05 on mu,
z-scored rewards), ``default`` (``strategies.DEFAULT``), ``random`` (samples around mu_0, mu
fixed), ``grid`` (fixed thetas: cross-entropy, CosFace margins, ArcFace-like, focal-like),
``ce`` (cross-entropy, one copy: the same recipe without any search), and single-option
ablations (``mean_copy``, ``antithetic``, ``rank``, ``parts``, ``guard``, ``small_lr``,
``evosax``).

The table gives test accuracy mean +- std over seeds and paired differences (same seed, so the
same initialisation and data order) against ``ce`` and against ``grid`` (equal compute).
This loop is independent of ``jaxloss.search.Engine`` (it drives a strategy through
``init/ask/tell`` directly); it is also what ``bench/diagnosis.py`` trains with.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import pickle
import sys
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import jaxloss  # noqa: E402
from jaxloss import search  # noqa: E402
from jaxloss.search import strategies as st  # noqa: E402
from jaxloss.search.task import sum_over_batches  # noqa: E402

CIFAR_SUBSET = "/work/shared/data/cifar10-subset/cifar-10-batches-py"
DATASETS = ("mnist1d", "digits", "cifar10-subset")


# ----------------------------------------------------------------------------------------------
# Data and tasks
# ----------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Problem:
  name: str
  task: search.Task
  train: tuple
  val: tuple
  test: tuple
  batch_size: int
  eval_batch_size: int
  num_intervals: int = 6
  unroll: Any = 1
  info: dict = dataclasses.field(default_factory=dict)
  # head(state, x) -> (cosine (N, C), scale (N, C) or scalar): for the diagnosis only.
  head: Callable | None = None


def add_label_noise(labels: np.ndarray, ratio: float, num_classes: int = 10, seed: int = 0):
  from amlfs_mnist1d import add_label_noise as noise  # pylint: disable=import-outside-toplevel
  return noise(labels, ratio, num_classes, seed) if ratio else labels


def load_cifar_subset(path: str = CIFAR_SUBSET, num_val: int = 1000, num_train=None):
  """The shared real CIFAR-10 subset (official pickle layout): train / val / test uint8 NHWC.

  ``data_batch_1..5`` (4,136 images) give the last ``num_val`` as validation, the rest as
  training; ``test_batch`` (1,034 real training images of official batch 5) is the test split.
  """
  def read(name):
    with open(os.path.join(path, name), "rb") as f:
      d = pickle.load(f, encoding="latin1")
    x = np.asarray(d["data"], np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(x), np.asarray(d["labels"], np.int32)

  parts = [read(f"data_batch_{i}") for i in range(1, 6)]
  x = np.concatenate([p[0] for p in parts])
  y = np.concatenate([p[1] for p in parts])
  xt, yt = read("test_batch")
  n = len(y) - num_val if num_train is None else num_train
  return (x[:n], y[:n]), (x[-num_val:], y[-num_val:]), (xt, yt)


def mnist1d_problem(args) -> Problem:
  from amlfs_mnist1d import CNN, load_mnist1d, make_task  # pylint: disable=import-outside-toplevel
  train, val, test = load_mnist1d(6000, 1000)
  train = (train[0], add_label_noise(train[1], args.label_noise))
  bs = args.batch_size or 64
  steps = len(train[1]) // bs * args.epochs
  model = CNN()
  task = make_task(learning_rate=1e-2, total_steps=steps, scale=None, model=model)

  def head(state, x):
    cos, xn, wn = model.apply({"params": state.params}, x)
    return cos, xn * wn

  return Problem("mnist1d", task, train, val, test, bs, 1000, head=head,
                 info={"model": "1-D CNN (amlfs_mnist1d.CNN), Adam 1e-2 cosine, eq. 4 scale"})


def digits_problem(args) -> Problem:
  import flax.linen as nn  # pylint: disable=import-outside-toplevel
  import optax  # pylint: disable=import-outside-toplevel
  from sklearn.datasets import load_digits  # pylint: disable=import-outside-toplevel

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

  def loss(params, ms, batch, theta, key):
    del key
    cos, s = forward(params, batch[0])
    return jaxloss.amlfs_loss(cos, batch[1], theta, scale=s), ms

  def evaluate(params, ms, batch):
    cos, s = forward(params, batch[0])
    return search.classification_metrics(s * cos, batch[1])

  task = search.optax_task(init=init, loss=loss, evaluate=evaluate,
                           optimizer=optax.adam(3e-3))
  return Problem("digits", task, train, val, test, bs, 400,
                 head=lambda state, x: forward(state.params, x),
                 info={"model": "MLP 64, cosine head, eq. 4 scale, Adam 3e-3"})


def cifar_problem(args) -> Problem:
  from cifar10 import configs, input_pipeline, models  # pylint: disable=import-outside-toplevel
  from cifar10 import train as cifar_train  # pylint: disable=import-outside-toplevel
  train, val, test = load_cifar_subset(num_val=args.num_val or 1000,
                                       num_train=args.num_train or None)
  train = (train[0], add_label_noise(train[1], args.label_noise))
  bs = args.batch_size or 128
  config = configs.default(
      mode="amlfs", depth=args.depth, width=args.width, conv_impl="patches", dtype="float32",
      batch_size=bs, epochs=args.epochs, num_train=len(train[1]), num_val=len(val[1]),
      eval_batch_size=500, population=args.population)
  program = cifar_train.make_program(config)

  def head(state, x):
    features, kernel = program.model.apply({"params": state.params, **state.model_state},
                                           input_pipeline.normalize(x), train=False)
    cos, scale, _ = models.head_outputs(features, kernel, "norms")
    return cos, scale

  return Problem("cifar10-subset", program.task, train, val, test, bs, 500,
                 unroll="python", head=head,
                 info={"test_copy0": getattr(args, "test_copy0", False),
                       "model": f"ResNet-{args.depth} width {args.width} (patches convs), "
                                f"SGD 0.1 momentum 0.9 wd 1e-4, lr /10 at 50%/75%, "
                                f"crop+flip, eq. 4 scale ('norms'), float32"})


PROBLEMS = {"mnist1d": mnist1d_problem, "digits": digits_problem,
            "cifar10-subset": cifar_problem}


# ----------------------------------------------------------------------------------------------
# The population loop
# ----------------------------------------------------------------------------------------------


def tree_finite(tree) -> jax.Array:
  leaves = [jnp.all(jnp.isfinite(a)) for a in jax.tree.leaves(tree)
            if jnp.issubdtype(a.dtype, jnp.inexact)]
  return jnp.all(jnp.stack(leaves)) if leaves else jnp.asarray(True)


_EPOCHS: dict = {}


def epoch_program(problem: Problem):
  """``epoch(population, thetas, perm, key, train, val, test)``, jitted (one per problem).

  Trains every copy one epoch (common batches and keys), then returns the new population,
  the validation accuracy (the reward), the test accuracy of every copy (reports only), a
  finite flag and the mean training loss per copy.
  """
  key_ = id(problem)
  if key_ in _EPOCHS:
    return _EPOCHS[key_]
  task, bs, ebs = problem.task, problem.batch_size, problem.eval_batch_size

  def epoch(population, thetas, perm, key, train, val, test):
    steps = perm.shape[0] // bs

    def body(pop, i):
      idx = jax.lax.dynamic_slice_in_dim(perm, i * bs, bs)
      batch = jax.tree.map(lambda a: a[idx], train)
      pop, metrics = jax.vmap(task.train_step, in_axes=(0, None, 0, None))(
          pop, batch, thetas, jax.random.fold_in(key, i))
      return pop, metrics["loss"]

    population, losses = jax.lax.scan(body, population, jnp.arange(steps),
                                      unroll=problem.unroll)

    def score(data):
      totals = jax.vmap(lambda s: sum_over_batches(task.evaluate, s, data, ebs))(population)
      return totals["correct"].astype(jnp.float32) / totals["count"].astype(jnp.float32)

    finite = jnp.all(jnp.isfinite(losses), axis=0) & jax.vmap(tree_finite)(population)
    return population, score(val), score(test), finite, jnp.mean(losses, axis=0)

  if problem.unroll != "python":
    fn = jax.jit(epoch, donate_argnums=(0,))
    _EPOCHS[key_] = fn
    return fn

  # One jitted step called from Python: compiles in seconds where a scan unrolled over an
  # epoch of conv-net steps takes many minutes on a loaded CPU (the same arithmetic).
  @functools.partial(jax.jit, donate_argnums=(0,))
  def step(pop, perm, i, key, thetas, train):
    idx = jax.lax.dynamic_slice_in_dim(perm, i * bs, bs)
    batch = jax.tree.map(lambda a: a[idx], train)
    pop, metrics = jax.vmap(task.train_step, in_axes=(0, None, 0, None))(
        pop, batch, thetas, jax.random.fold_in(key, i))
    return pop, metrics["loss"]

  def accuracy(state, data):
    totals = sum_over_batches(task.evaluate, state, data, ebs)
    return totals["correct"].astype(jnp.float32) / totals["count"].astype(jnp.float32)

  @jax.jit
  def scores(pop, val):
    return jax.vmap(lambda s: accuracy(s, val))(pop), jax.vmap(tree_finite)(pop)

  @jax.jit
  def test_of(pop, index, test):
    return accuracy(jax.tree.map(lambda a: a[index], pop), test)

  def python_epoch(population, thetas, perm, key, train, val, test):
    losses = []
    for i in range(perm.shape[0] // bs):
      population, loss = step(population, perm, jnp.asarray(i, jnp.int32), key, thetas, train)
      losses.append(loss)
    losses = jnp.stack(losses)
    v, finite = scores(population, val)
    finite = finite & jnp.all(jnp.isfinite(losses), axis=0)
    # The test split only for copy 0 and the best copy (what the reports use): the CPU time
    # of a conv net's evaluation is not negligible. The other entries are NaN.
    vh, fh = np.asarray(v), np.asarray(finite)
    best = int(np.argmax(np.where(fh, vh, -np.inf)))
    t = np.full(vh.shape, np.nan, np.float32)
    for i in ({0, best} if problem.info.get("test_copy0", True) else {best}):
      t[i] = float(test_of(population, jnp.asarray(i, jnp.int32), test))
    return population, v, jnp.asarray(t), finite, jnp.mean(losses, axis=0)

  _EPOCHS[key_] = python_epoch
  return python_epoch


@jax.jit
def broadcast_copy(population, index):
  return jax.tree.map(lambda a: jnp.broadcast_to(a[index], a.shape), population)


def init_population(problem: Problem, seed: int, num: int):
  one = jax.jit(problem.task.init)(jax.random.key(seed))
  return jax.tree.map(lambda a: jnp.broadcast_to(a, (num,) + jnp.shape(a)).copy(), one)


def run_strategy(problem: Problem, strategy, *, num: int, epochs: int, seed: int,
                 mu0=None, select: str = "best", population=None,
                 start_epoch: int = 0, verbose: bool = False) -> dict:
  """Runs ``strategy`` for ``epochs`` epochs of ``num`` copies; returns the records.

  ``select``: ``'best'`` (copy the best copy's whole state to all copies after every epoch,
  as AM-LFS), or ``'none'`` (independent copies; the final model is the best on validation).
  """
  mu0 = jaxloss.identity_theta(problem.num_intervals) if mu0 is None else jnp.asarray(mu0)
  dev = jax.device_put
  train, val, test = dev(problem.train), dev(problem.val), dev(problem.test)
  epoch_fn = epoch_program(problem)
  pop = init_population(problem, seed, num) if population is None else population
  ask = jax.jit(strategy.ask, static_argnums=(2,))
  tell = jax.jit(strategy.tell)
  state = strategy.init(mu0)
  base = jax.random.key(seed)
  n_train = len(problem.train[1])
  records = []
  t0 = time.perf_counter()
  for epoch in range(start_epoch, start_epoch + epochs):
    key = jax.random.fold_in(jax.random.fold_in(base, 1), epoch)
    thetas = ask(jax.random.fold_in(key, 0), state, num)
    perm = jax.random.permutation(jax.random.fold_in(key, 1), n_train)
    pop, rewards, test_acc, finite, loss = epoch_fn(pop, thetas, perm,
                                                    jax.random.fold_in(key, 2), train, val, test)
    mu = strategy.mean(state)
    state, info = tell(state, thetas, rewards, finite)
    rewards_h, finite_h = np.asarray(rewards), np.asarray(finite)
    best = int(np.argmax(np.where(finite_h, rewards_h, -np.inf)))
    rec = {"epoch": epoch, "mu": np.asarray(mu).tolist(),
           "mu_next": np.asarray(strategy.mean(state)).tolist(),
           "thetas": np.asarray(thetas).tolist(), "rewards": rewards_h.tolist(),
           "test": np.asarray(test_acc).tolist(), "finite": finite_h.tolist(),
           "loss": np.asarray(loss).tolist(), "best": best,
           "best_val": float(rewards_h[best]), "best_test": float(np.asarray(test_acc)[best]),
           "normalized": np.asarray(info["normalized_rewards"]).tolist(),
           "seconds": time.perf_counter() - t0}
    if "moved" in info:
      rec["moved_fraction"] = float(np.mean(np.asarray(info["moved"])))
    records.append(rec)
    if verbose:
      print(f"  epoch {epoch}: best val {rec['best_val']:.4f} (copy {best}) test "
            f"{rec['best_test']:.4f}  median val {np.median(rewards_h):.4f}  "
            f"|mu-mu0| {np.linalg.norm(np.asarray(mu) - np.asarray(mu0)):.3f}  "
            f"{rec['seconds']:.0f}s", flush=True)
    if select == "best" and num > 1:
      pop = broadcast_copy(pop, jnp.asarray(best, jnp.int32))
  last = records[-1]
  return {"records": records, "test_accuracy": last["best_test"],
          "val_accuracy": last["best_val"], "mu": last["mu_next"],
          "seconds": time.perf_counter() - t0, "population": pop, "state": state}


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


def make_mode(name: str, num: int, m: int = 6):
  """``(strategy, population size, select)`` of a study mode."""
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
  if name == "ce":
    return st.Grid([np.asarray(jaxloss.identity_theta(m)).tolist()]), 1, "best"
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


MODES = ("paper", "default", "random", "grid", "ce")
ALL_MODES = MODES + ("grid_indep", "mean_copy", "antithetic", "rank", "parts", "guard",
                     "small_lr", "small_sigma", "mean_copy_parts", "parts_whiten", "evosax",
                         "default-no_mean_copy", "default-no_antithetic", "default-no_rank",
                         "default-no_guard", "default-no_parts", "random_parts")


# ----------------------------------------------------------------------------------------------
# Table and figure
# ----------------------------------------------------------------------------------------------


def _paired(results, mode, ref):
  a = {r["seed"]: r["test_accuracy"] for r in results if r["mode"] == mode}
  b = {r["seed"]: r["test_accuracy"] for r in results if r["mode"] == ref}
  seeds = sorted(set(a) & set(b))
  if not seeds or mode == ref:
    return "-"
  d = np.array([a[s] - b[s] for s in seeds])
  wins = int(np.sum(d > 0))
  std = d.std(ddof=1) if len(d) > 1 else 0.0
  return f"{d.mean():+.4f} ± {std:.4f} ({wins}/{len(d)})"


def table(results: list[dict]) -> str:
  modes = list(dict.fromkeys(r["mode"] for r in results))
  lines = ["| mode | seeds | test accuracy | per seed | vs `ce` (paired) | vs `grid` (paired) "
           "| s / run |", "|---|---|---|---|---|---|---|"]
  for mode in modes:
    rs = [r for r in results if r["mode"] == mode]
    acc = np.array([r["test_accuracy"] for r in rs])
    std = acc.std(ddof=1) if len(acc) > 1 else 0.0
    secs = np.mean([r["seconds"] for r in rs])
    lines.append(f"| `{mode}` | {len(rs)} | {acc.mean():.4f} ± {std:.4f} | "
                 + " ".join(f"{a:.3f}" for a in acc)
                 + f" | {_paired(results, mode, 'ce')} | {_paired(results, mode, 'grid')} "
                 f"| {secs:.0f} |")
  lines.append("")
  lines.append("std: sample std over seeds (ddof 1). Paired: mean ± std of the per-seed "
               "difference in test accuracy (same seed = same initialisation and data order), "
               "(wins/seeds).")
  return "\n".join(lines)


def figure(results: list[dict], path: str, title: str) -> None:
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

  modes = list(dict.fromkeys(r["mode"] for r in results))
  fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4))
  for i, mode in enumerate(modes):
    rs = [r for r in results if r["mode"] == mode]
    acc = np.array([r["test_accuracy"] for r in rs])
    ax.bar(i, acc.mean(), yerr=acc.std(ddof=1) if len(acc) > 1 else 0, alpha=0.5, capsize=4)
    ax.scatter(np.full(len(acc), i), acc, color="k", s=12, zorder=3)
    curves = np.array([[rec["best_test"] for rec in r["records"]] for r in rs])
    ax2.plot(np.arange(1, curves.shape[1] + 1), curves.mean(0), label=mode)
  ax.set_xticks(range(len(modes)), modes, rotation=40, ha="right", fontsize=8)
  lo = min(r["test_accuracy"] for r in results)
  ax.set_ylim(max(0, lo - 0.05), None)
  ax.set_ylabel("final test accuracy")
  import textwrap  # pylint: disable=import-outside-toplevel
  fig.suptitle("\n".join(textwrap.wrap(title, 130)), fontsize=8)
  ax2.set_xlabel("epoch")
  ax2.set_ylabel("test accuracy of the best copy (mean over seeds)")
  ax2.legend(fontsize=7, ncol=2)
  fig.tight_layout(rect=(0, 0, 1, 0.93))
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, dpi=110)
  plt.close(fig)


# ----------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--dataset", choices=DATASETS, default="mnist1d")
  p.add_argument("--modes", nargs="+", choices=ALL_MODES, default=list(MODES))
  p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
  p.add_argument("--epochs", type=int, default=20)
  p.add_argument("--population", type=int, default=8)
  p.add_argument("--batch-size", type=int, default=None,
                 help="default: 64 (mnist1d), 32 (digits), 128 (cifar10-subset)")
  p.add_argument("--label-noise", type=float, default=0.0, help="training split only")
  p.add_argument("--depth", type=int, default=8, help="CIFAR ResNet depth (6n+2)")
  p.add_argument("--width", type=int, default=8, help="CIFAR ResNet width")
  p.add_argument("--num-train", type=int, default=0,
                 help="CIFAR subset: training images (0: all 3,136 not in the validation split)")
  p.add_argument("--num-val", type=int, default=0, help="CIFAR subset: validation images "
                 "(0: 1,000), the last ones of data_batch_5")
  p.add_argument("--from-json", nargs="+", default=None,
                 help="no training: merge the results of earlier --json files into the table")
  p.add_argument("--output", default=None, help="markdown table (default: print only)")
  p.add_argument("--figure", default=None, help="figure path (png)")
  p.add_argument("--json", default=None, help="all records (json)")
  p.add_argument("--verbose", action="store_true")
  return p.parse_args(argv)


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
      strategy, num, select = make_mode(mode, args.population, problem.num_intervals)
      out = run_strategy(problem, strategy, num=num, epochs=args.epochs, seed=seed,
                         select=select, verbose=args.verbose)
      if select == "none":  # independent copies: the best on validation at the end
        last = out["records"][-1]
        out["test_accuracy"] = last["best_test"]
      r = {"mode": mode, "seed": seed, "test_accuracy": out["test_accuracy"],
           "val_accuracy": out["val_accuracy"], "mu": out["mu"], "seconds": out["seconds"],
           "records": out["records"]}
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
    with open(path) as f:
      data = json.load(f)
    header = header or data["header"]
    results += data["results"]
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
