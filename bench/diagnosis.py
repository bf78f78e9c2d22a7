"""Which parts of the AM-LFS theta hurt, and when: one epoch from a common state, one part at
a time.

::

  python bench/diagnosis.py --dataset mnist1d --warm 0 5 --json runs/diag_mnist1d.json
  python bench/diagnosis.py --dataset cifar10-subset --epochs 10 --warm 0 4 --samples 4

From a state (``--warm 0``: the initialisation; ``--warm k``: after ``k`` epochs of plain
cross-entropy, the schedule counting from epoch 0 of an ``--epochs``-epoch run), the script trains
ONE epoch of many copies in one vmapped program (same batches for all): copy 0 with
``theta = mu = identity`` (cross-entropy), and for each part of theta (``t`` slopes, ``t``
biases, ``tau`` slopes, ``tau`` biases, ``all``) and each sigma, ``--samples`` copies with
``theta = mu + sigma * eps`` perturbed in that part only. It reports the validation accuracy
of every copy relative to copy 0, and, on 2,000 training examples at the start state, what the
sampled thetas do to the loss: the fraction of examples where the guard
``max(tau(p), delta p)`` is active, the ratio of the loss's slope in ``log p_y`` to
cross-entropy's (``a p / (a p + b)`` for ``tau = a p + b``: how much harder or softer the copy
pushes the target probability), and the target-logit shift ``|s_y b_t|`` (the ``t`` biases
are multiplied by the scale ``s = |W||x|`` under the eq. 4 scale). A sigma of 0.001 on all of
theta measures the noise floor (copies that differ by rounding-level changes of the loss).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples"))

import amlfs_study as study  # noqa: E402

import jaxloss  # noqa: E402
from jaxloss import search  # noqa: E402
from jaxloss.search import strategies as st  # noqa: E402

PART_NAMES = st.PARTS + ("all",)


def part_mask(part: str, m: int) -> np.ndarray:
  """A part of theta (:data:`PART_NAMES`), or one coordinate: ``'tau_biases[0]'``."""
  mask = np.zeros(4 * m, np.float32)
  if part == "all":
    mask[:] = 1
  elif "[" in part:
    name, index = part.rstrip("]").split("[")
    mask[st.PARTS.index(name) * m + int(index)] = 1
  else:
    i = st.PARTS.index(part)
    mask[i * m:(i + 1) * m] = 1
  return mask


def theta_effects(cos, s, y, theta, delta=0.01):
  """Guard fraction, slope ratio vs CE in log p_y, mean |target-logit shift|; one theta."""
  m = theta.shape[0] // 4
  a_t, b_t, a_tau, b_tau = theta.reshape(4, m)
  s = jnp.broadcast_to(s, cos.shape)
  cy = jnp.take_along_axis(cos, y[:, None], 1)[:, 0]
  sy = jnp.take_along_axis(s, y[:, None], 1)[:, 0]
  i = jnp.clip(jnp.floor((cy + 1) * 0.5 * m), 0, m - 1).astype(jnp.int32)
  target = sy * (a_t[i] * cy + b_t[i])
  logits = (s * cos).at[jnp.arange(len(y)), y].set(target)
  logp = jax.nn.log_softmax(logits, axis=1)
  py = jnp.exp(jnp.take_along_axis(logp, y[:, None], 1)[:, 0])
  j = jnp.clip(jnp.floor(py * m), 0, m - 1).astype(jnp.int32)
  tau = a_tau[j] * py + b_tau[j]
  guard = tau <= delta * py
  ratio = jnp.where(guard, 1.0, a_tau[j] * py / jnp.where(guard, 1.0, tau))
  return {"guard": jnp.mean(guard), "slope_ratio": jnp.mean(ratio),
          "slope_ratio_abs_log": jnp.mean(jnp.abs(jnp.log(jnp.maximum(jnp.abs(ratio), 1e-6)))),
          "logit_shift": jnp.mean(jnp.abs(sy * b_t[i])), "p_y": jnp.mean(py),
          "s_y": jnp.mean(sy)}


def run(args):
  problem = study.PROBLEMS[args.dataset](args)
  m = problem.num_intervals
  mu = np.asarray(jaxloss.identity_theta(m))
  rng = np.random.default_rng(args.seed)
  thetas, labels = [mu], [("mu", 0.0)]
  parts = tuple(args.parts or PART_NAMES)
  for sigma in args.sigmas:
    for part in parts:
      mask = part_mask(part, m)
      for _ in range(args.samples):
        thetas.append(mu + sigma * mask * rng.standard_normal(4 * m).astype(np.float32))
        labels.append((part, sigma))
  for _ in range(args.samples):
    thetas.append(mu + 0.001 * rng.standard_normal(4 * m).astype(np.float32))
    labels.append(("noise floor", 0.001))
  thetas = jnp.asarray(np.stack(thetas))
  num = thetas.shape[0]
  print(f"{args.dataset}: {num} copies, {problem.info.get('model', '')}", flush=True)
  out = {"args": vars(args), "states": []}
  for warm in args.warm:
    t0 = time.perf_counter()
    # The start state: the initialisation, or `warm` epochs of cross-entropy (one copy)
    # through the engine (search.run); the schedule counts on in the optimiser state.
    if warm:
      one = study.run_mode(problem, "fixed", num=1, selection="best", epochs=warm,
                           seed=args.seed)["result"].state
    else:
      one = jax.jit(problem.task.init)(jax.random.key(args.seed))
    # Chunks of ``--chunk`` copies (copy 0 of every chunk is mu: one compiled program, and a
    # check that the chunks agree on it), to bound memory. Each chunk is ONE epoch of a grid
    # of fixed thetas from the start state (search.run with initial_state, no selection).
    chunk = min(args.chunk or num, num)
    rest = np.asarray(thetas[1:])
    vals, mu_vals = [], []
    for start in range(0, len(rest), chunk - 1):
      part = np.concatenate([np.asarray(thetas[:1]), rest[start:start + chunk - 1]])
      pad = chunk - len(part)
      part = np.concatenate([part, np.repeat(part[:1], pad, 0)]) if pad else part
      res = study.run_mode(problem, st.Grid(part.tolist()), num=chunk, selection="none",
                           epochs=1, seed=args.seed + warm, initial_state=one)
      v = np.asarray(res["records"][0]["rewards"], np.float64)
      mu_vals.append(float(v[0]))
      vals.append(v[1:chunk - pad])
    copy0 = jax.tree.map(lambda a: a[0], res["result"].search_state.population)
    mu_test = search.evaluate_dataset(problem.task, copy0, problem.test,
                                      batch_size=problem.eval_batch_size)["accuracy"]
    val = np.concatenate([[mu_vals[0]], *vals])
    if len(set(mu_vals)) > 1:
      print(f"  note: the mu copy differs between chunks: {mu_vals}")
    # Loss effects at the start state, on training examples.
    n = min(2000, len(problem.train[1]))
    x, y = jnp.asarray(problem.train[0][:n]), jnp.asarray(problem.train[1][:n])
    cos, s = jax.jit(problem.head)(one, x)
    effects = jax.jit(jax.vmap(lambda th: theta_effects(cos, s, y, th)))(thetas)
    effects = {k: np.asarray(v) for k, v in effects.items()}
    rows = []
    for part in parts + ("noise floor",):
      for sigma in (args.sigmas if part != "noise floor" else [0.001]):
        idx = [i for i, lab in enumerate(labels) if lab == (part, sigma)]
        d = val[idx] - val[0]
        rows.append({
            "part": part, "sigma": sigma, "n": len(idx),
            "mean_delta": float(d.mean()), "median_delta": float(np.median(d)),
            "best_delta": float(d.max()), "worst_delta": float(d.min()),
            "frac_better": float(np.mean(d > 0)),
            "guard": float(effects["guard"][idx].mean()),
            "slope_ratio_abs_log": float(effects["slope_ratio_abs_log"][idx].mean()),
            "logit_shift": float(effects["logit_shift"][idx].mean())})
    state = {"warm": warm, "mu_val": float(val[0]), "mu_test": float(mu_test),
             "p_y": float(effects["p_y"][0]), "s_y": float(effects["s_y"][0]),
             "rows": rows, "seconds": time.perf_counter() - t0,
             "val": val.tolist(), "labels": labels}
    out["states"].append(state)
    print(format_state(args.dataset, state), flush=True)
  if args.json:
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as f:
      json.dump(out, f)
  return out


def format_state(name, state) -> str:
  lines = [f"\n{name}, one epoch from the state after {state['warm']} CE epoch(s): "
           f"mu (CE) copy val {state['mu_val']:.4f} test {state['mu_test']:.4f}; at the start "
           f"state mean p_y {state['p_y']:.3f}, mean s_y = |W_y||x| {state['s_y']:.2f} "
           f"({state['seconds']:.0f} s)",
           "| part | sigma | n | mean Δval | median Δval | best Δval | worst Δval | "
           "frac > mu | guard active | mean abs log slope ratio | mean abs logit shift |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
  for r in state["rows"]:
    lines.append(f"| {r['part']} | {r['sigma']} | {r['n']} | {r['mean_delta']:+.4f} | "
                 f"{r['median_delta']:+.4f} | {r['best_delta']:+.4f} | {r['worst_delta']:+.4f} | "
                 f"{r['frac_better']:.2f} | {r['guard']:.3f} | "
                 f"{r['slope_ratio_abs_log']:.3f} | {r['logit_shift']:.3f} |")
  return "\n".join(lines)


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--dataset", choices=study.DATASETS, default="mnist1d",
                 help="as examples/amlfs_study.py (default: mnist1d).")
  p.add_argument("--data-dir", default=None,
                 help=f"cifar10-subset: a CIFAR-10 folder or archive (default: "
                      f"${study.DATA_DIR_ENV}).")
  p.add_argument("--epochs", type=int, default=20,
                 help="length of the run the learning-rate schedule is for (default: 20).")
  p.add_argument("--warm", nargs="+", type=int, default=[0, 5],
                 help="start states: after this many cross-entropy epochs (default: 0 5).")
  p.add_argument("--samples", type=int, default=8,
                 help="perturbed copies per part and sigma (default: 8).")
  p.add_argument("--sigmas", nargs="+", type=float, default=[0.2, 0.05],
                 help="standard deviations of the perturbations (default: 0.2 0.05).")
  p.add_argument("--seed", type=int, default=0, help="initialisation and data order.")
  p.add_argument("--batch-size", type=int, default=None, help="as amlfs_study.py.")
  p.add_argument("--label-noise", type=float, default=0.0, help="training split only.")
  p.add_argument("--depth", type=int, default=8, help="cifar10-subset: ResNet depth (6n+2).")
  p.add_argument("--width", type=int, default=8, help="cifar10-subset: ResNet width.")
  p.add_argument("--population", type=int, default=8, help="unused here (the problem's B).")
  p.add_argument("--num-train", type=int, default=0, help="cifar10-subset: training images.")
  p.add_argument("--num-val", type=int, default=0, help="cifar10-subset: validation images.")
  p.add_argument("--parts", nargs="+", default=None,
                 help="parts to perturb (default: the four parts and all); one coordinate: "
                      "'tau_biases[0]'")
  p.add_argument("--chunk", type=int, default=0, help="copies per program (0: all at once)")
  p.add_argument("--json", default=None, help="write the results to this file.")
  return p.parse_args(argv)


if __name__ == "__main__":
  run(parse_args())
