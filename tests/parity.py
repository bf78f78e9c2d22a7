"""Parity harness: compare a jaxloss function against torch, values and VJPs.

``ParityTestCase.assert_parity`` evaluates the JAX loss (through
``self.variant``, so chex runs it with and without ``jit``) and the torch loss
on the same random inputs, then compares

* the value, and
* the vector-Jacobian product with a random cotangent (so every element of a
  ``reduction='none'`` output is checked) for every differentiable argument,

with the error measured relative to the largest reference magnitude:
``|jax - torch| <= rtol * max(|torch|)`` element-wise (1e-10 in float64,
1e-5 in float32).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np
import torch

RTOL = {np.float64: 1e-10, np.float32: 1e-5}
torch.set_default_dtype(torch.float64)


def to_torch(x: Any) -> Any:
  if isinstance(x, np.ndarray):
    return torch.from_numpy(np.array(x, copy=True))
  return x


def assert_close(actual: Any, expected: Any, rtol: float, what: str = "") -> None:
  """Element-wise closeness scaled by the reference's largest magnitude."""
  actual = np.asarray(actual, dtype=np.float64)
  expected = np.asarray(expected, dtype=np.float64)
  finite = np.isfinite(expected)
  scale = np.max(np.abs(expected[finite]), initial=0.0)
  chex.assert_trees_all_close(
      actual, expected, rtol=rtol, atol=rtol * max(scale, 1e-30),
      custom_message=what)


class ParityTestCase(chex.TestCase):
  """Base class for torch-parity tests."""

  def assert_parity(
      self,
      jax_fn: Callable[..., Any],
      torch_fn: Callable[..., Any],
      args: Sequence[Any],
      kwargs: Mapping[str, Any] | None = None,
      *,
      torch_kwargs: Mapping[str, Any] | None = None,
      grad_argnums: Sequence[int] = (0,),
      rtol: float | None = None,
      seed: int = 0,
  ) -> None:
    """Checks value and VJPs of ``jax_fn(*args, **kwargs)`` against torch.

    Args:
      jax_fn: the jaxloss function.
      torch_fn: the torch function.
      args: positional arguments as NumPy arrays (or Python scalars); their
        float dtype decides the tolerance.
      kwargs: static keyword arguments given to both functions.
      torch_kwargs: keyword arguments overriding ``kwargs`` for torch only
        (e.g. a torch ``distance_function``).
      grad_argnums: the positions of the differentiable arguments.
      rtol: overrides the dtype's default tolerance.
      seed: seed of the random cotangent.
    """
    kwargs = dict(kwargs or {})
    tkwargs = {**kwargs, **(torch_kwargs or {})}
    float_args = [a for a in args if isinstance(a, np.ndarray)
                  and np.issubdtype(a.dtype, np.floating)]
    dtype = float_args[0].dtype.type if float_args else np.float64
    rtol = rtol if rtol is not None else RTOL[dtype]

    # torch reference.
    targs = [to_torch(a) for a in args]
    for i in grad_argnums:
      targs[i] = targs[i].detach().clone().requires_grad_(True)
    tout = torch_fn(*targs, **tkwargs)
    cot = np.asarray(np.random.default_rng(seed).normal(size=tuple(tout.shape)), dtype)
    tgrads = torch.autograd.grad(
        tout, [targs[i] for i in grad_argnums], grad_outputs=to_torch(cot),
        allow_unused=True)

    # jax under test.
    def value(*a):
      return jax_fn(*a, **kwargs)

    def value_and_vjp(*a):  # one program: the value comes with the VJP
      out, pullback = jax.vjp(lambda *d: value(*_put(a, grad_argnums, d)),
                              *[a[i] for i in grad_argnums])
      return out, pullback(jnp.asarray(cot, out.dtype))

    jargs = [jnp.asarray(a) if isinstance(a, np.ndarray) else a for a in args]
    out, grads = self.variant(value_and_vjp)(*jargs)

    self.assertEqual(tuple(out.shape), tuple(tout.shape), "output shape")
    self.assertEqual(np.dtype(out.dtype), np.dtype(dtype), "output dtype")
    assert_close(out, tout.detach().numpy(), rtol, "value")
    for i, g, tg in zip(grad_argnums, grads, tgrads, strict=False):
      expected = np.zeros(args[i].shape) if tg is None else tg.numpy()
      assert_close(g, expected, rtol, f"gradient w.r.t. argument {i}")


def _put(args: Sequence[Any], positions: Sequence[int], values: Sequence[Any]) -> list:
  args = list(args)
  for i, v in zip(positions, values, strict=False):
    args[i] = v
  return args


def rand(rng: np.random.Generator, shape: Sequence[int], dtype: Any, low: float = -2.0,
         high: float = 2.0) -> np.ndarray:
  return rng.uniform(low, high, size=tuple(shape)).astype(dtype)


DTYPES = (np.float32, np.float64)
REDUCTIONS = ("none", "mean", "sum")
SHAPES = ((), (5,), (4, 3), (2, 3, 4))


def reduction_cases(configs):
  """Each config under every reduction, the dtypes alternating (both per config).

  A covering design rather than the full product keeps the suite fast: every
  config runs in float32 and float64, every reduction in both, and chex runs
  each case with and without jit.
  """
  for i, (name, cfg) in enumerate(configs):
    for j, reduction in enumerate(REDUCTIONS):
      dtype = DTYPES[(i + j) % 2]
      yield dict(testcase_name=f"{name}_{reduction}_{dtype.__name__}", cfg=cfg,
                 reduction=reduction, dtype=dtype)


def rotating_cases(options, reductions=REDUCTIONS, eager_subset=False):
  """Every option x reduction for element-wise losses; shapes and dtypes rotate.

  Each reduction meets both dtypes and every shape of :data:`SHAPES` is used
  (the full product would compile too often for the 2-core CI budget). An
  option may set ``min_ndim`` to skip the shapes it does not apply to.
  ``eager_subset``: one reduction per option, rotating, for the (slower)
  un-jitted variant.
  """
  for i, ((opt_name, opt), reduction) in enumerate(itertools.product(options, reductions)):
    if eager_subset and (i // len(reductions) + i) % len(reductions):
      continue
    shapes = [s for s in SHAPES if len(s) >= opt.get("min_ndim", 0)]
    shape, dtype = shapes[i % len(shapes)], DTYPES[(i + i // len(SHAPES)) % len(DTYPES)]
    if eager_subset:  # alternate the dtype between options
      dtype = DTYPES[(i // len(reductions)) % len(DTYPES)]
    name = f"{opt_name}_{reduction}_{'x'.join(map(str, shape)) or 'scalar'}_{dtype.__name__}"
    yield dict(testcase_name=name, shape=shape, reduction=reduction, dtype=dtype, opt=opt)


def num_grad(f: Callable[[np.ndarray], float], x: Any, h: float = 1e-6) -> np.ndarray:
  """Central differences of a scalar float64 NumPy function (for formula references)."""
  x = np.array(x, np.float64)
  g = np.zeros_like(x)
  for i in np.ndindex(x.shape):
    xp, xm = x.copy(), x.copy()
    xp[i] += h
    xm[i] -= h
    g[i] = (f(xp) - f(xm)) / (2 * h)
  return g
