"""Times jaxloss.ctc_loss against optax.ctc_loss on the same inputs.

Both take logits here (optax applies ``log_softmax`` itself; jaxloss gets
``log_softmax(logits)`` in torch's (T, N, C) layout) and are summed over the
batch; timed under ``jax.jit`` for the value alone and for the value and the
gradient w.r.t. the logits. Prints the median of many repetitions, the ratio
jaxloss / optax, and the compiled memory (``memory_analysis()``) of each.

  python bench/ctc.py            # CPU or GPU, whatever JAX picks
  python bench/ctc.py --reps 50  # more repetitions
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxloss

# (T, N, C, S): frames, batch, classes incl. blank, longest target.
CASES = ((200, 32, 64, 50), (500, 32, 128, 100))


def make_inputs(t, n, c, s, seed=0):
  rng = np.random.default_rng(seed)
  logits = rng.normal(size=(n, t, c)).astype(np.float32)
  input_lengths = rng.integers(t // 2, t + 1, size=n)
  input_lengths[0] = t
  target_lengths = rng.integers(s // 2, s + 1, size=n)
  target_lengths[0] = s
  labels = rng.integers(1, c, size=(n, s))
  return (jnp.asarray(logits), jnp.asarray(labels, jnp.int32),
          jnp.asarray(input_lengths, jnp.int32), jnp.asarray(target_lengths, jnp.int32))


def jaxloss_sum(logits, labels, input_lengths, target_lengths):
  log_probs = jnp.transpose(jax.nn.log_softmax(logits), (1, 0, 2))
  return jaxloss.ctc_loss(log_probs, labels, input_lengths, target_lengths, reduction="sum")


def optax_sum(logits, labels, input_lengths, target_lengths):
  t, s = logits.shape[1], labels.shape[1]
  logit_paddings = (jnp.arange(t)[None, :] >= input_lengths[:, None]).astype(logits.dtype)
  label_paddings = (jnp.arange(s)[None, :] >= target_lengths[:, None]).astype(logits.dtype)
  return jnp.sum(optax.ctc_loss(logits, logit_paddings, labels, label_paddings))


def median_seconds(fns, args, reps):
  """Median wall time of each function, calls interleaved so that load drifts hit all alike."""
  for fn in fns.values():
    jax.block_until_ready(fn(*args))  # compile
    for _ in range(3):  # warm-up
      jax.block_until_ready(fn(*args))
  times = {name: [] for name in fns}
  for _ in range(reps):
    for name, fn in fns.items():
      start = time.perf_counter()
      jax.block_until_ready(fn(*args))
      times[name].append(time.perf_counter() - start)
  return {name: statistics.median(t) for name, t in times.items()}


def memory(fn, args):
  analysis = jax.jit(fn).lower(*args).compile().memory_analysis()
  if analysis is None:
    return "n/a"
  return (f"temp {analysis.temp_size_in_bytes / 2**20:7.2f} MiB, "
          f"out {analysis.output_size_in_bytes / 2**20:6.2f} MiB")


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--reps", type=int, default=20)
  args = parser.parse_args()
  print(f"jax {jax.__version__}, optax {optax.__version__}, device {jax.devices()[0]}")
  for t, n, c, s in CASES:
    inputs = make_inputs(t, n, c, s)
    ours, theirs = jaxloss_sum(*inputs), optax_sum(*inputs)
    print(f"\nT={t} N={n} C={c} S={s}: loss jaxloss {float(ours):.6g}, optax "
          f"{float(theirs):.6g} (rel. diff {abs(float(ours - theirs)) / abs(float(theirs)):.1e})")
    for mode in ("value", "value+grad"):
      fns = {}
      for name, fn in (("jaxloss", jaxloss_sum), ("optax", optax_sum)):
        fns[name] = fn if mode == "value" else jax.value_and_grad(fn)
      timed = median_seconds({name: jax.jit(fn) for name, fn in fns.items()}, inputs, args.reps)
      print(f"  {mode:10s}  jaxloss {timed['jaxloss'] * 1e3:8.2f} ms   optax "
            f"{timed['optax'] * 1e3:8.2f} ms   ratio jaxloss/optax "
            f"{timed['jaxloss'] / timed['optax']:.2f}")
      for name, fn in fns.items():
        print(f"      memory {name:8s} {memory(fn, inputs)}")


if __name__ == "__main__":
  main()
