"""The AM-LFS outer step on CIFAR-shaped data, for B in {1, 8, 32}, side by side.

For each population size B this times, in one process:

* **engine**: the whole outer step of ``jaxloss.search`` (train every copy one epoch as a
  ``lax.scan``, score on the validation split, REINFORCE on mu, broadcast the best copy), with
  the CIFAR-10 example's ResNet-20 task (bf16 compute on GPU), once per convolution variant
  (``--conv-impls``: flax's ``nn.Conv``, and ``PatchConv``'s patches times batched matmuls);
* **plain vmap**: the same task (``nn.Conv``) with its ``train_step`` under
  ``jax.jit(jax.vmap(...))``, called once per batch from Python, plus a vmapped validation
  pass: what one writes without the engine;
* **torch peer** (``bench/torch_peer.py``): one PyTorch ResNet-20 trained the usual way (eager,
  bf16 autocast, channels-last), times B, as B copies trained one after another.

It prints the epoch time, images per second, an MFU estimate (XLA's FLOP count of one
training step over the elapsed time, against ``--peak-tflops``) and the ratios. Synthetic
uint8 images (the data are not the point; the shapes and the work are).

    python bench/population.py                        # GPU: 45k/5k images, B in 1 8 32
    python bench/population.py --smoke                # CPU: width 4, 256/64 images, B in 1 2
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "examples"))
sys.path.insert(0, HERE)

from cifar10 import configs, input_pipeline, train  # noqa: E402

import jaxloss  # noqa: E402
from jaxloss import search  # noqa: E402


def synthetic_split(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
  rng = np.random.default_rng(seed)
  images = rng.integers(0, 256, (n,) + input_pipeline.IMAGE_SHAPE, dtype=np.uint8)
  return images, rng.integers(0, 10, n).astype(np.int32)


def make(config: configs.Config):
  """The example's task and a search config for it (no output, no progress bar)."""
  program = train.make_program(config)
  cfg = dataclasses.replace(train.search_config(config, ""), output_dir=None, progress=False)
  return program, search.Engine(program.task, cfg)


def time_engine(engine, train_data, val_data, epochs: int) -> list[float]:
  train_d, val_d = engine.put_data(train_data), engine.put_data(val_data)
  state = engine.init()
  step = engine.compile(state, train_d, val_d)
  state, out = step(state, train_d, val_d)  # warm-up
  jax.block_until_ready((state, out))
  times = []
  for _ in range(epochs):
    start = time.perf_counter()
    state, out = step(state, train_d, val_d)
    jax.block_until_ready((state, out))
    times.append(time.perf_counter() - start)
  return times


def time_plain_vmap(program, config, train_data, val_data, epochs: int) -> list[float]:
  """A Python loop over batches calling ``jit(vmap(train_step))``: no engine, no scan."""
  b, bs = config.effective_population, config.batch_size
  task = program.task
  state = jax.vmap(task.init)(jax.random.split(jax.random.key(0), b))
  thetas = jnp.broadcast_to(jaxloss.identity_theta(config.num_intervals),
                            (b, 4 * config.num_intervals))
  vstep = jax.jit(jax.vmap(task.train_step, in_axes=(0, None, 0, None)), donate_argnums=(0,))
  vscore = jax.jit(jax.vmap(lambda s, d: search.task.sum_over_batches(
      task.evaluate, s, d, config.eval_batch_size), in_axes=(0, None)))
  x, y = (jax.device_put(a) for a in train_data)
  val = tuple(jax.device_put(a) for a in val_data)
  steps = len(y) // bs

  def epoch(state, key):
    perm = jax.random.permutation(key, len(y))
    for s in range(steps):
      idx = perm[s * bs:(s + 1) * bs]
      state, _ = vstep(state, (x[idx], y[idx]), thetas, jax.random.fold_in(key, s))
    totals = vscore(state, val)
    jax.block_until_ready((state, totals))
    return state

  state = epoch(state, jax.random.key(1))  # warm-up
  times = []
  for e in range(epochs):
    start = time.perf_counter()
    state = epoch(state, jax.random.key(2 + e))
    times.append(time.perf_counter() - start)
  return times


def train_step_flops(program, config) -> float:
  """XLA's FLOP count of one training step of one copy (forward + backward + update)."""
  task = program.task
  state = jax.eval_shape(task.init, jax.random.key(0))
  batch = (jax.ShapeDtypeStruct((config.batch_size,) + input_pipeline.IMAGE_SHAPE, jnp.uint8),
           jax.ShapeDtypeStruct((config.batch_size,), jnp.int32))
  theta = jax.ShapeDtypeStruct((4 * config.num_intervals,), jnp.float32)
  compiled = jax.jit(task.train_step).lower(state, batch, theta, jax.random.key(0)).compile()
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return float(cost.get("flops", float("nan")))


def torch_peer_epoch(config, epochs: int) -> float | None:
  try:
    import torch_peer  # noqa: PLC0415  (torch is optional)
  except ImportError:
    return None
  return torch_peer.time_epochs(num_train=config.num_train, batch_size=config.batch_size,
                                width=config.width, epochs=epochs)["epoch_s"]


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--populations", type=int, nargs="+", default=None)
  p.add_argument("--epochs", type=int, default=3, help="timed epochs per variant (median)")
  p.add_argument("--num-train", type=int, default=45000)
  p.add_argument("--num-val", type=int, default=5000)
  p.add_argument("--dtype", default="auto", help="'auto': bf16 on GPU, float32 on CPU")
  p.add_argument("--peak-tflops", type=float, default=989.0,
                 help="the device's peak for the MFU estimate (H100 SXM bf16 dense: 989)")
  p.add_argument("--no-plain", action="store_true", help="skip the plain-vmap comparison")
  p.add_argument("--no-torch", action="store_true", help="skip the PyTorch peer")
  p.add_argument("--conv-impls", nargs="+", default=["xla", "patches"],
                 choices=["xla", "patches"],
                 help="the engine's convolution variants, timed side by side (bench/NOTES.md)")
  p.add_argument("--smoke", action="store_true", help="tiny CPU-sized problem")
  args = p.parse_args()
  base = dict(num_train=args.num_train, num_val=args.num_val, dtype=args.dtype, epochs=200)
  populations = args.populations or [1, 8, 32]
  if args.smoke:
    base.update(num_train=256, num_val=64, width=4, batch_size=32, eval_batch_size=64)
    populations = args.populations or [1, 2]
  print(f"jax {jax.__version__}, {jax.devices()[0].device_kind} x {jax.device_count()}")
  probe = configs.Config(**base)
  train_data = synthetic_split(probe.num_train, 0)
  val_data = synthetic_split(probe.num_val, 1)
  peer = None if args.no_torch else torch_peer_epoch(probe, args.epochs)

  rows = []
  for b in populations:
    # B=1 is one model: the baseline mode (cross-entropy on the same head).
    mode = "baseline" if b == 1 else "amlfs"
    t_plain = None
    if not args.no_plain:  # plain vmap of flax's nn.Conv model: the reference
      config = configs.Config(**base, mode=mode, population=b)
      program, _ = make(config)
      t_plain = statistics.median(time_plain_vmap(program, config, train_data, val_data,
                                                  args.epochs))
      print(f"B={b}: plain vmap {t_plain:.3f} s/epoch", flush=True)
    for conv in args.conv_impls:
      config = configs.Config(**base, mode=mode, population=b, conv_impl=conv)
      program, engine = make(config)
      flops = train_step_flops(program, config)
      t = statistics.median(time_engine(engine, train_data, val_data, args.epochs))
      images = b * config.steps_per_epoch * config.batch_size
      mfu = images / config.batch_size * flops / t / (args.peak_tflops * 1e12)
      rows.append((b, conv, t, images / t, mfu, t_plain, peer))
      print(f"B={b}: engine ({conv}) {t:.3f} s/epoch", flush=True)

  epoch_images = f"{probe.steps_per_epoch * probe.batch_size}-image epochs"
  print(f"\nouter step (train one epoch of {epoch_images}, validate {probe.num_val}, "
        "update mu, broadcast)")
  print(f"{'B':>3} {'conv':>8} {'engine s':>9} {'img/s':>9} {'MFU':>6} {'plain vmap s':>13} "
        f"{'engine/plain':>13} {'torch x B s':>12} {'engine/torch':>13}")
  for b, conv, t, ips, mfu, t_plain, peer in rows:
    plain = f"{t_plain:13.3f} {t / t_plain:13.2f}" if t_plain else f"{'-':>13} {'-':>13}"
    torch_b = f"{peer * b:12.2f} {t / (peer * b):13.2f}" if peer else f"{'-':>12} {'-':>13}"
    print(f"{b:>3} {conv:>8} {t:9.3f} {ips:9.0f} {mfu:6.1%} {plain} {torch_b}")
  if rows:
    b = max(r[0] for r in rows)
    t, conv = min((r[2], r[1]) for r in rows if r[0] == b)
    print(f"\nestimated full run: {probe.epochs} epochs x {t:.2f} s = "
          f"{probe.epochs * t / 60:.1f} min for B={b} with conv_impl={conv!r} "
          "(plus compilation and checkpoints)")


if __name__ == "__main__":
  main()
