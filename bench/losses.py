"""jaxloss vs optax: the same loss on the same inputs, timed side by side.

For every jaxloss function that has an optax counterpart computing the same
number, both are jitted (value, and value-and-gradient) and timed in
interleaved rounds in one process, so the ratio is robust to a noisy, shared
machine. Functions without an optax counterpart are timed alone.

It also prints the compiled memory footprint of ``cross_entropy`` with
N=8192 rows and C=32768 and 131072 classes (compiled only, not run, unless
--large, which also times value and value-and-gradient against optax): the
forward pass must not build a one-hot of the logits' size.

    python bench/losses.py              # 4096-row problems
    python bench/losses.py --scale 32   # 32768 rows (GPU)
    python bench/losses.py --large      # also time the 8192 x 32768 and x 131072 cases
    python bench/losses.py --clock cpu --only 'cross_entropy[index]' --no-memory

It also compares ``linear_cross_entropy`` with the naive ``cross_entropy(input @ W.T)``:
time side by side at a CPU-sized shape (``--linear-shape``), and the compiled
temporaries of value-and-grad at N=8192, D=1024 and 4096, V=131072 and 262144.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxloss

GiB = 1024 ** 3

# The clock of every timing: wall time by default; ``--clock cpu`` uses the process's
# CPU time (all threads), which on a shared, oversubscribed machine does not count the
# time the process waits to be scheduled and so gives a much tighter A/A floor.
CLOCK = {"wall": time.perf_counter, "cpu": time.process_time}
_clock = time.perf_counter


def _block(tree):
  return jax.tree.map(lambda x: x.block_until_ready(), tree)


def time_interleaved(fns: dict[str, Callable[[], object]], rounds: int, reps: int
                     ) -> dict[str, float]:
  """Median seconds per call of each thunk, measured in interleaved rounds."""
  for fn in fns.values():  # compile and warm up
    _block(fn())
    _block(fn())
  samples = {name: [] for name in fns}
  names = list(fns)
  for r in range(rounds):
    # Alternate the order between rounds: whoever runs first in a round pays for it.
    for name in (names if r % 2 == 0 else names[::-1]):
      fn = fns[name]
      start = _clock()
      for _ in range(reps):
        out = fn()
      _block(out)
      samples[name].append((_clock() - start) / reps)
  return {name: statistics.median(s) for name, s in samples.items()}


def _value_and_grad(loss: Callable, argnums=0) -> Callable:
  return jax.jit(jax.value_and_grad(loss, argnums=argnums))


def cases(key: jax.Array, scale: int):
  """(name, jaxloss loss, optax loss or None, args) with both losses scalar."""
  n = 1024 * scale
  ks = jax.random.split(key, 8)
  x = jax.random.normal(ks[0], (n, 128))
  t = jax.random.normal(ks[1], (n, 128))
  logits = jax.random.normal(ks[2], (n, 1000))
  labels = jax.random.randint(ks[3], (n,), 0, 1000)
  probs = jax.nn.softmax(jax.random.normal(ks[4], (n, 1000)))
  logp = jax.nn.log_softmax(logits)
  binary = jax.random.bernoulli(ks[5], 0.3, (n, 128)).astype(jnp.float32)
  a, p, q = (jax.random.normal(k, (n, 128)) for k in jax.random.split(ks[6], 3))
  pm1 = jnp.where(jax.random.bernoulli(ks[7], 0.5, (n, 128)), 1.0, -1.0)
  y = jax.random.randint(ks[7], (n,), 0, 128)
  return [
      ("mse_loss", lambda x, t: jaxloss.mse_loss(x, t),
       lambda x, t: optax.losses.squared_error(x, t).mean(), (x, t)),
      ("l1_loss", lambda x, t: jaxloss.l1_loss(x, t), None, (x, t)),
      ("huber_loss", lambda x, t: jaxloss.huber_loss(x, t, delta=0.5),
       lambda x, t: optax.losses.huber_loss(x, t, delta=0.5).mean(), (x, t)),
      ("smooth_l1_loss", lambda x, t: jaxloss.smooth_l1_loss(x, t, beta=0.5),
       lambda x, t: optax.losses.huber_loss(x, t, delta=0.5).mean() / 0.5, (x, t)),
      ("cross_entropy[index]", lambda z, y: jaxloss.cross_entropy(z, y),
       lambda z, y: optax.losses.softmax_cross_entropy_with_integer_labels(z, y).mean(),
       (logits, labels)),
      ("cross_entropy[probs]", lambda z, q: jaxloss.cross_entropy(z, q),
       lambda z, q: optax.losses.softmax_cross_entropy(z, q).mean(), (logits, probs)),
      ("cross_entropy[smooth=0.1]",
       lambda z, y: jaxloss.cross_entropy(z, y, label_smoothing=0.1),
       lambda z, y: optax.losses.softmax_cross_entropy(
           z, optax.losses.smooth_labels(jax.nn.one_hot(y, z.shape[-1]), 0.1)).mean(),
       (logits, labels)),
      ("nll_loss", lambda lp, y: jaxloss.nll_loss(lp, y), None, (logp, labels)),
      ("binary_cross_entropy_with_logits",
       lambda x, b: jaxloss.binary_cross_entropy_with_logits(x, b),
       lambda x, b: optax.losses.sigmoid_binary_cross_entropy(x, b).mean(), (x, binary)),
      ("binary_cross_entropy", lambda s, b: jaxloss.binary_cross_entropy(s, b), None,
       (jax.nn.sigmoid(x), binary)),
      ("kl_div[batchmean]", lambda lp, q: jaxloss.kl_div(lp, q, reduction="batchmean"),
       lambda lp, q: optax.losses.kl_divergence(lp, q).mean(), (logp, probs)),
      ("kl_div[log_target]",
       lambda lp, lq: jaxloss.kl_div(lp, lq, reduction="batchmean", log_target=True),
       lambda lp, lq: optax.losses.kl_divergence_with_log_targets(lp, lq).mean(),
       (logp, jnp.log(probs))),
      ("poisson_nll_loss", lambda x, t: jaxloss.poisson_nll_loss(x, jnp.abs(t)), None, (x, t)),
      ("gaussian_nll_loss",
       lambda x, t: jaxloss.gaussian_nll_loss(x, t, jnp.ones_like(x)), None, (x, t)),
      ("soft_margin_loss", lambda x, s: jaxloss.soft_margin_loss(x, s), None, (x, pm1)),
      ("multilabel_soft_margin_loss",
       lambda x, b: jaxloss.multilabel_soft_margin_loss(x, b), None, (x, binary)),
      ("multi_margin_loss", lambda x, y: jaxloss.multi_margin_loss(x, y), None, (x, y)),
      ("hinge_embedding_loss", lambda x, s: jaxloss.hinge_embedding_loss(x, s), None,
       (x, pm1)),
      ("margin_ranking_loss", lambda a, b: jaxloss.margin_ranking_loss(a, b, pm1), None,
       (x, t)),
      ("cosine_embedding_loss",
       lambda a, b: jaxloss.cosine_embedding_loss(a, b, pm1[:, 0]), None, (a, p)),
      ("triplet_margin_loss", lambda a, p: jaxloss.triplet_margin_loss(a, p, q),
       lambda a, p: optax.losses.triplet_margin_loss(a, p, q).mean(), (a, p)),
      ("sigmoid_focal_loss",
       lambda x, b: jaxloss.sigmoid_focal_loss(x, b, alpha=0.25, reduction="mean"),
       lambda x, b: optax.losses.sigmoid_focal_loss(x, b, alpha=0.25).mean(), (x, binary)),
  ] + optax_named_cases(ks, n, x, t, logits, labels, probs, logp, binary, a, p)


def optax_named_cases(ks, n, x, t, logits, labels, probs, logp, binary, a, p):
  """The losses under optax's names (and cosine_similarity), each against optax's .mean()."""
  seg = jax.random.normal(ks[0], (max(n // 256, 2), 16, 16, 8))
  seg_t = jax.nn.one_hot(jax.random.randint(ks[1], seg.shape[:-1], 0, 8), 8)
  m = max(n // 4, 8)
  emb = jax.random.normal(ks[2], (m, 128))
  groups = jnp.arange(m) // 2
  mean = lambda f: (lambda *args: f(*args).mean())  # noqa: E731
  o = optax.losses
  return [
      ("safe_softmax_cross_entropy",
       lambda z, q: jaxloss.safe_softmax_cross_entropy(z, q, reduction="mean"),
       mean(o.safe_softmax_cross_entropy), (logits, probs)),
      ("poly_loss_cross_entropy",
       lambda z, q: jaxloss.poly_loss_cross_entropy(z, q, reduction="mean"),
       mean(o.poly_loss_cross_entropy), (logits, probs)),
      ("multiclass_hinge_loss",
       lambda z, y: jaxloss.multiclass_hinge_loss(z, y, reduction="mean"),
       mean(o.multiclass_hinge_loss), (logits, labels)),
      ("multiclass_perceptron_loss",
       lambda z, y: jaxloss.multiclass_perceptron_loss(z, y, reduction="mean"),
       mean(o.multiclass_perceptron_loss), (logits, labels)),
      ("multiclass_sparsemax_loss",
       lambda z, y: jaxloss.multiclass_sparsemax_loss(z, y, reduction="mean"),
       mean(o.multiclass_sparsemax_loss), (logits, labels)),
      ("sparsemax_loss", lambda x, b: jaxloss.sparsemax_loss(x, b, reduction="mean"),
       mean(o.sparsemax_loss), (x, binary)),
      ("log_cosh", lambda x, t: jaxloss.log_cosh(x, t, reduction="mean"), mean(o.log_cosh),
       (x, t)),
      ("generalized_kl_divergence",
       lambda lp, q: jaxloss.generalized_kl_divergence(lp, q, reduction="mean"),
       mean(o.generalized_kl_divergence), (logp, probs)),
      ("cosine_similarity",
       lambda a, b: jaxloss.cosine_similarity(a, b, dim=-1, eps=0.0).mean(),
       mean(o.cosine_similarity), (a, p)),
      ("dice_loss", lambda s, q: jaxloss.dice_loss(s, q).mean(), mean(o.dice_loss),
       (seg, seg_t)),
      ("binary_dice_loss", lambda x, b: jaxloss.binary_dice_loss(x, b).mean(),
       mean(o.binary_dice_loss), (x, binary)),
      ("multiclass_generalized_dice_loss", jaxloss.multiclass_generalized_dice_loss,
       o.multiclass_generalized_dice_loss, (seg, seg_t)),
      # smp's convention against optax's dice_loss configured to the same value (counts over
      # the batch too, no smoothing; every class present); ours takes the class indices.
      ("soft_dice_loss (vs optax dice_loss)",
       lambda s, q: jaxloss.soft_dice_loss(s, jnp.argmax(q, -1), "multiclass", axis=-1),
       lambda s, q: o.dice_loss(s, q, smooth=0.0, axis=(0, 1, 2)).mean(), (seg, seg_t)),
      ("lovasz_softmax_loss (no optax peer)",
       lambda s, q: jaxloss.lovasz_softmax_loss(s, jnp.argmax(q, -1), axis=-1), None,
       (seg, seg_t)),
      ("ntxent", lambda e, y: jaxloss.ntxent(e, y, 0.5), lambda e, y: o.ntxent(e, y, 0.5),
       (emb, groups)),
      ("ranking_softmax_loss", jaxloss.ranking_softmax_loss, o.ranking_softmax_loss,
       (x, binary)),
  ]


def check_same_value(name, ours, theirs, args):
  # optax jitted or eager: XLA's fusion of optax's float32 ntxent loses ~1e-3 at N=256
  # (its eager value, jaxloss's and the float64 value agree).
  a = float(jax.jit(ours)(*args))
  b, b_eager = float(jax.jit(theirs)(*args)), float(theirs(*args))
  if not (np.isclose(a, b, rtol=1e-4, atol=1e-6) or np.isclose(a, b_eager, rtol=1e-4, atol=1e-6)):
    raise AssertionError(f"{name}: jaxloss {a} != optax {b} (eager {b_eager}): not the same loss")


def noise_floor(scale: int, rounds: int, reps: int) -> list[float]:
  """A/A ratios: one optax loss against an identical copy of itself (the method's noise)."""
  x = jax.random.normal(jax.random.key(0), (1024 * scale, 1000))
  y = jax.random.randint(jax.random.key(1), (1024 * scale,), 0, 1000)
  loss = lambda z, t: optax.losses.softmax_cross_entropy_with_integer_labels(z, t).mean()
  a, b = _value_and_grad(loss), _value_and_grad(lambda z, t: loss(z, t) + 0.0)
  out = []
  for _ in range(3):
    t = time_interleaved({"a": lambda: a(x, y), "b": lambda: b(x, y)}, rounds, reps)
    out.append(t["a"] / t["b"])
  return out


def run_speed(scale: int, rounds: int, reps: int, only: list[str] | None = None) -> None:
  floor = noise_floor(scale, rounds, reps)
  print("noise floor: A/A ratios of identical programs "
        + ", ".join(f"{r:.2f}" for r in floor)
        + " (ratios within this spread are equal)\n")
  print(f"{'loss':36s} {'pass':6s} {'jaxloss':>10s} {'optax':>10s} {'ratio':>7s}")
  ratios = []
  for name, ours, theirs, args in cases(jax.random.key(0), scale):
    if only and name not in only:
      continue
    if theirs is not None:
      check_same_value(name, ours, theirs, args)
    for label, wrap in (("value", jax.jit), ("grad", _value_and_grad)):
      fns = {"jaxloss": (lambda f=wrap(ours): f(*args))}
      if theirs is not None:
        fns["optax"] = (lambda f=wrap(theirs): f(*args))
      t = time_interleaved(fns, rounds, reps)
      if "optax" in t:
        ratio = t["jaxloss"] / t["optax"]
        ratios.append(ratio)
        print(f"{name:36s} {label:6s} {t['jaxloss']*1e6:9.1f}us {t['optax']*1e6:9.1f}us "
              f"{ratio:7.2f}")
      else:
        print(f"{name:36s} {label:6s} {t['jaxloss']*1e6:9.1f}us {'-':>10s} {'-':>7s}")
  if not ratios:
    return
  print(f"\njaxloss/optax time ratio over {len(ratios)} comparisons: "
        f"median {statistics.median(ratios):.2f}, max {max(ratios):.2f} "
        "(< 1 means jaxloss is faster)")


def memory_report(run: bool, class_counts=(32768, 131072)) -> None:
  """Compiled memory (and, with ``run``, time) of cross_entropy on N=8192 float32 logits."""
  n = 8192
  ours = lambda z, y: jaxloss.cross_entropy(z, y)
  theirs = lambda z, y: optax.losses.softmax_cross_entropy_with_integer_labels(z, y).mean()
  for c in class_counts:
    spec_z = jax.ShapeDtypeStruct((n, c), jnp.float32)
    spec_y = jax.ShapeDtypeStruct((n,), jnp.int32)
    onehot = lambda z, y, c=c: optax.losses.softmax_cross_entropy(z, jax.nn.one_hot(y, c)).mean()
    print(f"\ncross_entropy, N={n}, C={c} float32: logits are {n * c * 4 / GiB:.2f} GiB")
    print(f"{'':36s} {'pass':6s} {'temp GiB':>9s} {'out GiB':>8s}")
    for name, fn in (("jaxloss.cross_entropy", ours),
                     ("optax ..._with_integer_labels", theirs),
                     ("optax softmax_cross_entropy+one_hot", onehot)):
      for label, wrap in (("value", jax.jit), ("grad", _value_and_grad)):
        compiled = wrap(fn).lower(spec_z, spec_y).compile()
        mem = compiled.memory_analysis()
        temp = getattr(mem, "temp_size_in_bytes", float("nan")) / GiB
        out = getattr(mem, "output_size_in_bytes", float("nan")) / GiB
        print(f"{name:36s} {label:6s} {temp:9.3f} {out:8.3f}")
    if run:
      z = jax.random.normal(jax.random.key(1), (n, c))
      y = jax.random.randint(jax.random.key(2), (n,), 0, c)
      for label, wrap in (("value", jax.jit), ("grad", _value_and_grad)):
        ours_c, theirs_c = wrap(ours), wrap(theirs)
        t = time_interleaved({"jaxloss": lambda: ours_c(z, y), "optax": lambda: theirs_c(z, y)},
                             rounds=5, reps=3)
        print(f"time ({label}): jaxloss {t['jaxloss']*1e3:.2f} ms, optax "
              f"{t['optax']*1e3:.2f} ms, ratio {t['jaxloss']/t['optax']:.2f}")
      del z


def linear_memory_report(n: int = 8192, features=(1024, 4096), vocab=(131072, 262144)) -> None:
  """Compiled temporaries of value-and-grad (w.r.t. input and weight): chunked vs naive.

  XLA's memory analysis of the compiled programs; nothing is run, so the
  largest shapes cost only their compilation.
  """
  print(f"\nlinear_cross_entropy vs cross_entropy(input @ W.T), value_and_grad w.r.t. "
        f"(input, W), N={n}, float32, compiled temporaries (not run)")
  print(f"{'D':>5s} {'V':>7s} {'logits GiB':>10s} {'chunk':>6s} {'jaxloss temp GiB':>17s} "
        f"{'naive temp GiB':>15s} {'grads (out) GiB':>16s}")
  for d in features:
    for v in vocab:
      specs = (jax.ShapeDtypeStruct((n, d), jnp.float32), jax.ShapeDtypeStruct((v, d), jnp.float32),
               jax.ShapeDtypeStruct((n,), jnp.int32))
      temps = []
      for fn in (_linear_ours, _linear_naive):
        mem = _value_and_grad(fn, (0, 1)).lower(*specs).compile().memory_analysis()
        temps.append(getattr(mem, "temp_size_in_bytes", float("nan")) / GiB)
        out = getattr(mem, "output_size_in_bytes", float("nan")) / GiB
      chunk = jaxloss.linear.default_chunk_size(n, v)
      print(f"{d:5d} {v:7d} {n * v * 4 / GiB:10.2f} {chunk:6d} {temps[0]:17.3f} {temps[1]:15.3f} "
            f"{out:16.3f}")


def _linear_ours(x, w, y):
  return jaxloss.linear_cross_entropy(x, w, y)


def _linear_naive(x, w, y):
  return jaxloss.cross_entropy(x @ w.T, y)


def linear_speed(n: int, d: int, v: int, rounds: int, reps: int) -> None:
  """Time of linear_cross_entropy and of the naive form, side by side (value, value-and-grad)."""
  ks = jax.random.split(jax.random.key(3), 3)
  x = jax.random.normal(ks[0], (n, d))
  w = jax.random.normal(ks[1], (v, d)) / d ** 0.5
  y = jax.random.randint(ks[2], (n,), 0, v)
  a, b = float(jax.jit(_linear_ours)(x, w, y)), float(jax.jit(_linear_naive)(x, w, y))
  if not np.isclose(a, b, rtol=1e-4):
    raise AssertionError(f"linear_cross_entropy {a} != naive {b}")
  print(f"\nlinear_cross_entropy vs naive, N={n}, D={d}, V={v} (logits {n * v * 4 / 2**20:.0f} "
        f"MiB), chunk {jaxloss.linear.default_chunk_size(n, v)}")
  for label, wrap in (("value", jax.jit), ("grad", lambda f: _value_and_grad(f, (0, 1)))):
    ours, naive = wrap(_linear_ours), wrap(_linear_naive)
    t = time_interleaved({"jaxloss": lambda: ours(x, w, y), "naive": lambda: naive(x, w, y)},
                         rounds, reps)
    print(f"{label:6s} jaxloss {t['jaxloss']*1e3:8.2f} ms  naive {t['naive']*1e3:8.2f} ms  "
          f"ratio {t['jaxloss']/t['naive']:.2f}")


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--scale", type=int, default=4,
                      help="multiplies the base row count of 1024 (smaller problems time dispatch)")
  parser.add_argument("--rounds", type=int, default=15)
  parser.add_argument("--reps", type=int, default=10)
  parser.add_argument("--large", action="store_true", help="also run (time) the 8192-row cases")
  parser.add_argument("--clock", choices=sorted(CLOCK), default="wall",
                      help="wall time, or the process's CPU time (steadier on a shared machine)")
  parser.add_argument("--only", nargs="*", help="time only these losses (names as printed)")
  parser.add_argument("--no-memory", action="store_true", help="skip the compiled-memory tables")
  parser.add_argument("--linear-shape", type=int, nargs=3, default=(2048, 128, 32768),
                      metavar=("N", "D", "V"), help="shape of the linear_cross_entropy timing")
  args = parser.parse_args()
  global _clock
  _clock = CLOCK[args.clock]
  print(f"jax {jax.__version__}, optax {optax.__version__}, device {jax.devices()[0]}, "
        f"clock {args.clock}")
  run_speed(args.scale, args.rounds, args.reps, args.only)
  if args.only is None or "linear_cross_entropy" in args.only:
    linear_speed(*args.linear_shape, rounds=max(args.rounds // 3, 3), reps=max(args.reps // 5, 1))
  if not args.no_memory:
    memory_report(args.large)
    linear_memory_report()


if __name__ == "__main__":
  main()
