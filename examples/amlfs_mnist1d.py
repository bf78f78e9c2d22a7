"""AM-LFS on MNIST-1D: loss-function search against random search and cross-entropy.

Runs on any laptop CPU in a few minutes, with no download (MNIST-1D is generated locally)::

  python examples/amlfs_mnist1d.py                       # amlfs, random, baseline; seed 0
  python examples/amlfs_mnist1d.py --seeds 0 1 2 --label-noise 0.2 --workdir runs/mnist1d

Each mode trains a population of ``--population`` copies of a small 1-D CNN for
``--epochs`` epochs through the same engine (one jitted program per epoch, shared by the
three modes and all seeds):

* ``amlfs``: every epoch each copy trains with its own AM-LFS loss ``theta ~ N(mu, 0.2^2)``
  (``mu`` starts at the identity = cross-entropy); the copies are scored on a validation
  split, ``mu`` takes a REINFORCE step (Adam, lr 0.05) and the best copy is broadcast.
* ``random``: the same, but ``mu`` is never updated (the paper's ablation).
* ``baseline``: cross-entropy (the identity ``theta``); the copies are independent runs
  from different initialisations, and the reported model is the best one on validation
  (the same selection budget as the searches); the mean over the copies, i.e. a single
  cross-entropy run, is printed as well.

The test split is used only for the final table. ``--workdir`` keeps, per mode and
seed, the per-epoch records (``records.jsonl``: mu, thetas, rewards, losses, timings) and
the checkpoints (rerun the same command with ``--resume`` after an interruption).

Every field of :class:`Config` is a flag, with the vocabulary of ``amlfs_cifar10.py``
(``examples/flags.py``): ``--population``, ``--num-intervals``, ``--sigma``,
``--policy-learning-rate``, ``--learning-rate``, ``--batch-size``, ``--epochs``,
``--label-noise``, ``--logit-scale``, ``--workdir``, ``--no-progress``, ``--resume``,
``--verbose``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxloss
from jaxloss import search

PROG = os.path.basename(__file__)  # the name in error messages, also under pytest
MODES = ("amlfs", "random", "baseline")  # a grid and the other strategies: amlfs_study.py
STRATEGIES = ("default", "paper")

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import flags  # noqa: E402  (the flag vocabulary shared with amlfs_cifar10.py)


def _field(default, help: str, **metadata):
  return dataclasses.field(default=default, metadata={"help": help, **metadata})


@dataclasses.dataclass
class Config:
  """Every setting of the MNIST-1D runs; each field is a flag (``examples/flags.py``), with the
  names the CIFAR-10 example uses for the same things."""
  mode: str = _field("amlfs", "modes to run.", choices=MODES, shown_default="all three")
  seed: int = _field(0, "seeds to run: initialisation, samples, data order.", shown_default="0")
  population: int = _field(16, "B, the number of copies.")
  num_intervals: int = _field(6, "M: theta has 4M numbers.")
  strategy: str = _field(
      "default", "'default': jaxloss.search.strategies.DEFAULT (the measured default, "
      "docs/search_study.md); 'paper': the paper's algorithm exactly (sigma and the policy "
      "learning rate below).", choices=STRATEGIES)
  sigma: float = _field(0.2, "--strategy paper: policy standard deviation (not a variance).")
  policy_learning_rate: float = _field(0.05, "--strategy paper: Adam learning rate on mu.")
  learning_rate: float = _field(1e-2, "Adam learning rate of the CNN (cosine decay).")
  batch_size: int = _field(64, "training batch size per copy.")
  eval_batch_size: int = _field(1000, "validation and test batch size.")
  epochs: int = _field(20, "epochs (one outer step each).")
  logit_scale: str | float = _field(
      "norms", "'norms' (or 0): the norms |x||W_j| of the paper's eq. 4, so that the identity "
      "theta is plain cross-entropy; a float: fixed logit scale s.")
  label_noise: float = _field(0.0, "ratio of training labels moved to another class "
                              "(validation and test stay clean).")
  noise_seed: int = _field(0, "fixes which training labels are corrupted.")
  num_samples: int = _field(6000, "MNIST-1D size (80% train).")
  num_val: int = _field(1000, "validation examples carved from the training split (the reward).")
  data_seed: int = _field(42, "MNIST-1D generation seed.")
  workdir: str | None = _field(None, "per mode and seed: records.jsonl and checkpoints; "
                                  "summary.json (none: nothing written).")

  def validate(self) -> Config:
    """``ValueError`` naming the flag of the first bad option (the CLI prints it in one line)."""
    flags.check_numbers(self, positive_ints=("epochs", "batch_size", "eval_batch_size",
                                             "num_intervals", "num_samples", "num_val"),
                        positive=("sigma", "policy_learning_rate", "learning_rate"))
    if self.population < 2:
      raise ValueError(f"--population must be at least 2, got {self.population} (the searches "
                       f"compare copies; the baseline keeps the best of them).")
    if not 0.0 <= self.label_noise < 1.0:
      raise ValueError(f"--label-noise must be in [0, 1), got {self.label_noise}.")
    if not (self.logit_scale == "norms" or (not isinstance(self.logit_scale, str)
                                            and self.logit_scale >= 0)):
      raise ValueError(f"--logit-scale must be 'norms', 0 or a positive number, got "
                       f"{self.logit_scale!r}.")
    train = int(self.num_samples * 0.8) - self.num_val  # MNIST-1D keeps 80% for training
    if train < self.batch_size:
      raise ValueError(f"--num-samples {self.num_samples} leaves {max(train, 0)} training "
                       f"examples (80% of them, less --num-val {self.num_val}), fewer than "
                       f"--batch-size {self.batch_size}: raise --num-samples or lower "
                       f"--num-val or --batch-size.")
    return self

  @property
  def scale(self) -> float | None:
    """None for the norms of eq. 4, else the fixed scale."""
    return None if self.logit_scale in ("norms", 0, 0.0) else float(self.logit_scale)


def load_mnist1d(num_samples: int = 6000, val_size: int = 1000, data_seed: int = 42):
  """MNIST-1D generated locally (``mnist1d.data.make_dataset``, no download).

  Returns ``(train, val, test)`` as ``(x float32 (N, 40), y int32 (N,))`` pairs; the
  validation split is carved from MNIST-1D's training split.
  """
  import mnist1d  # pylint: disable=import-outside-toplevel

  args = mnist1d.data.get_dataset_args()
  args.num_samples, args.seed = num_samples, data_seed
  data = mnist1d.data.make_dataset(args)  # seeds numpy's global RNG itself
  x, y = data["x"].astype(np.float32), data["y"].astype(np.int32)
  test = (data["x_test"].astype(np.float32), data["y_test"].astype(np.int32))
  return (x[val_size:], y[val_size:]), (x[:val_size], y[:val_size]), test


def add_label_noise(labels: np.ndarray, ratio: float, num_classes: int = 10,
                    seed: int = 0) -> np.ndarray:
  """Symmetric label noise: exactly ``round(ratio * N)`` labels moved to another class.

  Applied to the training split only: the validation split (the reward) and the test
  split stay clean, as in the paper's noisy-label experiments.
  """
  if not 0.0 <= ratio < 1.0:
    raise ValueError(f"--label-noise must lie in [0, 1), got {ratio}.")
  rng = np.random.default_rng(seed)
  noisy = labels.copy()
  flip = rng.choice(len(labels), size=int(round(ratio * len(labels))), replace=False)
  noisy[flip] = (labels[flip] + rng.integers(1, num_classes, size=len(flip))) % num_classes
  return noisy


class Conv1D(nn.Module):
  """'SAME' 1-D convolution written as patches @ kernel.

  Under ``jax.vmap`` over the population, ``lax.conv`` with per-copy kernels becomes a
  grouped convolution, which XLA's CPU backend runs ~50x slower than this batched matmul.
  """
  features: int
  kernel_size: int
  stride: int = 1

  @nn.compact
  def __call__(self, x):  # (N, L, C_in) -> (N, ceil(L / stride), features)
    _, length, channels = x.shape
    kernel = self.param("kernel", nn.initializers.lecun_normal(),
                        (self.kernel_size * channels, self.features))
    bias = self.param("bias", nn.initializers.zeros, (self.features,))
    pad = self.kernel_size // 2
    x = jnp.pad(x, ((0, 0), (pad, self.kernel_size - 1 - pad), (0, 0)))
    out_length = -(-length // self.stride)
    span = self.stride * (out_length - 1) + 1
    patches = jnp.concatenate(
        [x[:, k:k + span:self.stride] for k in range(self.kernel_size)], axis=-1)
    return patches @ kernel + bias


class CNN(nn.Module):
  """MNIST-1D CNN (3 strided convolutions, a dense layer) with a cosine classifier head.

  Returns ``(cosine (N, 10), feature_norms (N, 1), class_weight_norms (1, 10))``.
  """
  width: int = 32
  hidden: int = 128
  num_classes: int = 10

  @nn.compact
  def __call__(self, x):
    x = x[..., None]
    x = nn.relu(Conv1D(self.width, 5, stride=2)(x))
    x = nn.relu(Conv1D(self.width, 3, stride=2)(x))
    x = nn.relu(Conv1D(self.width, 3, stride=2)(x))
    x = nn.relu(nn.Dense(self.hidden)(x.reshape(x.shape[0], -1)))
    head = self.param("head", nn.initializers.lecun_normal(), (self.hidden, self.num_classes))
    return jaxloss.cosine_logits(x, head, weight_layout="dc", return_norms=True)


def make_task(*, learning_rate: float, total_steps: int, scale: float | None,
              model: nn.Module | None = None, loss_fn=jaxloss.amlfs_loss) -> search.Task:
  """The search task: Adam with cosine decay, AM-LFS loss on the cosine head.

  ``scale=None`` uses the norms ``|x| |W_j|`` (paper eq. 4: the identity theta is then plain
  cross-entropy of a bias-free linear head); a float ``s`` uses logits ``s cos``.
  ``loss_fn(cosine, labels, theta, *, scale)`` is the loss theta parameterises
  (``jaxloss.amlfs_loss``; the study's fixed-loss grids pass ``loss_families.family_loss``).
  """
  model = CNN() if model is None else model
  optimizer = optax.adam(optax.cosine_decay_schedule(learning_rate, total_steps))

  def forward(params, x):
    cosine, x_norm, w_norm = model.apply({"params": params}, x)
    return cosine, (x_norm * w_norm if scale is None else scale)

  def init(key):
    return model.init(key, jnp.zeros((1, 40), jnp.float32))["params"], None

  def loss(params, model_state, batch, theta, key):
    del key  # no augmentation: every copy sees the same batches anyway
    x, y = batch
    cosine, s = forward(params, x)
    return loss_fn(cosine, y, theta, scale=s), model_state

  def evaluate(params, model_state, batch):
    x, y = batch
    cosine, s = forward(params, x)
    return search.classification_metrics(s * cosine, y, per_example=True)

  return search.optax_task(init=init, loss=loss, optimizer=optimizer, evaluate=evaluate)


def run_mode(task, mode, seed, splits, config: Config, *, resume=False, progress=True) -> dict:
  """One search; returns test accuracies, final mu and timings.

  With ``--workdir``, the run's folder also gets ``metrics.csv`` (one row per epoch:
  ``jaxloss.search.callbacks.CSVLogger``) and, when tensorboardX is installed, TensorBoard
  event files in ``tensorboard/``.
  """
  train, val, test = splits
  output_dir = (os.path.join(config.workdir, f"{mode}_seed{seed}") if config.workdir else None)
  loggers = []
  if output_dir is not None:
    loggers.append(search.callbacks.CSVLogger(os.path.join(output_dir, "metrics.csv")))
    if search.callbacks.tensorboard_available():
      loggers.append(search.callbacks.TensorBoardLogger(os.path.join(output_dir, "tensorboard")))
  search_config = search.SearchConfig(
      initial_mu=jaxloss.identity_theta(config.num_intervals),
      population_size=config.population, epochs=config.epochs, batch_size=config.batch_size,
      eval_batch_size=config.eval_batch_size, seed=seed, output_dir=output_dir,
      progress=progress, **flags.search_options(mode, config.strategy, config.sigma,
                                                config.policy_learning_rate))
  engine = search.Engine(task, search_config)
  start = time.perf_counter()
  try:
    result = search.run(task, search_config, train, val, resume=resume, callback=loggers)
  finally:
    for logger in loggers[1:]:
      logger.close()
  seconds = time.perf_counter() - start
  ebs = config.eval_batch_size
  test_acc = search.evaluate_dataset(task, result.state, test, batch_size=ebs)["accuracy"]
  out = {"mode": mode, "seed": seed, "test_accuracy": test_acc,
         "search": flags.describe_search(mode, config.strategy, config.sigma,
                                         config.policy_learning_rate),
         "val_accuracy": result.best_reward, "mu": result.mu.tolist(), "seconds": seconds,
         "compile_seconds": result.records[0]["time"].get("compile_s") if result.records else None}
  if mode == "baseline":  # every copy is an independent cross-entropy run
    copies = [search.evaluate_dataset(task, engine.select(result.search_state, i), test,
                                      batch_size=ebs)["accuracy"]
              for i in range(config.population)]
    out["copies_test_accuracy"] = copies
  return out


def summarize(results: list[dict]) -> str:
  """A table of test accuracy per mode: mean ± std over seeds."""
  lines = [f"{'mode':<10} {'seeds':>5}  {'test accuracy':>17}  per seed"]
  for mode in MODES:
    runs = [r for r in results if r["mode"] == mode]
    if not runs:
      continue
    acc = np.array([r["test_accuracy"] for r in runs])
    label = "baseline*" if mode == "baseline" else mode
    lines.append(f"{label:<10} {len(runs):>5}  {acc.mean():.4f} ± {acc.std():.4f}  "
                 + " ".join(f"{a:.4f}" for a in acc))
    if mode == "baseline":
      singles = np.array([a for r in runs for a in r["copies_test_accuracy"]])
      lines.append(f"{'CE single':<10} {len(singles):>5}  {singles.mean():.4f} ± "
                   f"{singles.std():.4f}  (every baseline copy: one cross-entropy run each)")
  lines.append("* baseline: the best of the independent cross-entropy copies on validation.")
  return "\n".join(lines)


def parse_args(argv=None) -> argparse.Namespace:
  p = flags.Parser(prog=PROG, description=__doc__.split("\n")[0])
  flags.add_config_flags(p, Config)
  flags.add_run_flags(p)
  return p.parse_args(argv)


def config_from_args(args: argparse.Namespace) -> tuple[Config, list, list]:
  """``(config, modes, seeds)`` from the flags (modes default to all three)."""
  values = flags.overrides(args, Config)
  flags.check_strategy_flags(values, prog=PROG)
  modes = values.pop("mode", list(MODES))
  seeds = values.pop("seed", [0])
  try:
    config = Config(**values).validate()
  except ValueError as error:
    flags.error(" ".join(str(error).split()), prog=PROG)
  return config, list(modes), list(seeds)


def config_record(config: Config) -> dict:
  """The options for ``summary.json``, without the flags the strategy does not read (each
  result holds its ``'search'``: the resolved strategy and its parameters)."""
  values = dataclasses.asdict(config)
  if config.strategy != "paper":
    for name in flags.PAPER_ONLY:
      values.pop(name)
  return values


def main(argv=None) -> list[dict]:
  args = parse_args(argv)
  flags.setup_logging(("amlfs_mnist1d",), args.verbose)
  config, modes, seeds = config_from_args(args)
  splits = load_mnist1d(config.num_samples, config.num_val, config.data_seed)
  if config.label_noise:
    (x, y), val, test = splits
    splits = ((x, add_label_noise(y, config.label_noise, seed=config.noise_seed)), val, test)
  steps = len(splits[0][1]) // config.batch_size * config.epochs
  task = make_task(learning_rate=config.learning_rate, total_steps=steps, scale=config.scale)
  print(f"MNIST-1D: {len(splits[0][1])} train / {len(splits[1][1])} val / "
        f"{len(splits[2][1])} test; label noise {config.label_noise:.0%}; "
        f"B={config.population}, {config.epochs} epochs, "
        f"{jax.device_count()} {jax.default_backend()} device(s)")
  results = []
  for seed in seeds:
    for mode in modes:
      try:
        r = run_mode(task, mode, seed, splits, config, resume=args.resume,
                     progress="lines" if args.no_progress else True)
      except search.SearchInterrupted as stop:  # Ctrl-C: one line, status 130
        flags.interrupted(stop, f"{mode} seed {seed}: ")
      print(f"{mode:<9} seed {seed}: test {r['test_accuracy']:.4f}  val {r['val_accuracy']:.4f}"
            f"  ({r['seconds']:.1f} s)", flush=True)
      results.append(r)
  print(summarize(results))
  if config.workdir:
    os.makedirs(config.workdir, exist_ok=True)
    with open(os.path.join(config.workdir, "summary.json"), "w") as f:
      json.dump({"config": config_record(config), "modes": modes, "seeds": seeds,
                 "results": results}, f, indent=1)
  return results


if __name__ == "__main__":
  main()
