"""Shared machinery for every loss: reductions, masks, dtypes and validation.

Conventions every loss in jaxloss follows:

* **Reductions.** ``reduction`` is one of ``'none' | 'mean' | 'sum'`` (plus
  ``'batchmean'`` for :func:`jaxloss.kl_div`). An unknown value raises
  ``ValueError`` at trace time.
* **Masks.** The keyword-only ``where`` argument (beyond torch) is a boolean
  array broadcastable to the loss's unreduced shape. Masked-out entries are
  dropped from the sum *and* from the mean's denominator, are ``0`` under
  ``reduction='none'``, and receive an exactly-zero gradient (as long as the
  inputs at those positions are finite).
* **Class axis.** A loss with a class axis takes it where torch does (axis 1,
  or 0 for a 1-D input) and accepts a keyword-only ``axis`` for any other layout
  (``axis=-1``: JAX's class-last). :func:`class_axis` validates it at trace time
  (``ValueError`` naming ``axis``); :func:`check_class_target_shape` adds a hint
  when the target's shape fits another axis (Flax's ``(N, T, C)`` logits).
* **Traced options.** Numeric options used only arithmetically
  (``label_smoothing``, focal ``gamma``, margins) may be traced:
  :func:`numeric_option` checks a Python value at trace time; a traced value
  out of range gives ``nan`` (:func:`option_out_of_range`).
* **Precision.** Half-precision inputs (``bfloat16``, ``float16``) are computed
  in ``float32``; the result is cast back to the input dtype, as torch returns.
* **Errors.** Shape and dtype problems raise ``ValueError`` at trace time,
  naming the function, the argument, the expected and the received shape.
  Value problems that depend on data (a class index out of range, a
  probability outside ``[0, 1]``) cannot raise inside ``jit``; the losses emit
  checks instead (:func:`value_check`: :func:`jax.experimental.checkify.debug_check`
  without its effect, so a jitted caller keeps jax.jit's fast dispatch). They
  cost nothing normally and report under ``checkify.checkify``::

      from jax.experimental import checkify
      err, loss = jax.jit(checkify.checkify(jaxloss.nll_loss))(logp, target)
      err.throw()   # raises JaxRuntimeError: nll_loss: `target` ...

* **Kernels.** A public loss is a plain Python function that validates its
  arguments and static options (``ValueError`` naming the argument, torch's
  warnings on every call) and then calls one module-level ``jax.jit``-compiled
  kernel with those options as static arguments: an eager call runs one compiled
  program, and inside a caller's ``jit`` the kernel is simply inlined. A user's
  callable (``triplet_margin_with_distance_loss``'s ``distance_function``) is
  never jitted by the library.
* **The nan contract.** Without ``checkify``, every input that a check reports
  gives ``nan``, never a finite wrong number: the offending elements of the
  unreduced loss are ``nan`` (:func:`nan_where`), so is any reduction of them
  (``reduce_loss(..., bad=...)``), and the gradient is ``nan`` at the offending
  elements' inputs (:func:`nan_gradient_where`) and, for a reduced loss, at every
  argument that reaches the result. Masked (``where=False``) and ignored
  entries are never checked and never poisoned.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import checkify

Array = jax.Array
ArrayLike = Any

REDUCTIONS = ("none", "mean", "sum")
_HALF_DTYPES = (jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16))


# ----------------------------------------------------------------------------
# Validation (trace time)
# ----------------------------------------------------------------------------


def check_reduction(fn: str, reduction: str, allowed: Sequence[str] = REDUCTIONS) -> None:
  """Raises ``ValueError`` unless ``reduction`` is one of ``allowed``."""
  if not isinstance(reduction, str) or reduction not in allowed:
    raise ValueError(
        f"{fn}: `reduction` must be one of {tuple(allowed)}, got {reduction!r}."
    )


def reject_legacy_args(fn: str, size_average: Any, reduce: Any) -> None:
  """torch's deprecated ``size_average``/``reduce`` are not supported."""
  if size_average is not None or reduce is not None:
    raise ValueError(
        f"{fn}: the deprecated `size_average` and `reduce` arguments are not "
        "supported; use `reduction='none' | 'mean' | 'sum'` instead "
        "(size_average=False -> 'sum', reduce=False -> 'none')."
    )


def as_float_array(fn: str, name: str, x: ArrayLike) -> Array:
  """Converts to a floating-point array; raises for integer or bool input."""
  x = jnp.asarray(x)
  if not jnp.issubdtype(x.dtype, jnp.floating):
    raise ValueError(
        f"{fn}: `{name}` must be a floating-point array, got dtype {x.dtype}."
    )
  return x


def as_int_array(fn: str, name: str, x: ArrayLike) -> Array:
  """Converts to an integer array; raises for floating or bool input."""
  x = jnp.asarray(x)
  if not jnp.issubdtype(x.dtype, jnp.integer):
    raise ValueError(
        f"{fn}: `{name}` must be an integer array of class indices, got dtype "
        f"{x.dtype}."
    )
  return x


def check_ndim(fn: str, name: str, x: Array, ndims: int | Sequence[int]) -> None:
  ndims = (ndims,) if isinstance(ndims, int) else tuple(ndims)
  if x.ndim not in ndims:
    expected = " or ".join(f"{n}-D" for n in ndims)
    raise ValueError(
        f"{fn}: `{name}` must be {expected}, got shape {tuple(x.shape)}."
    )


def check_shape(fn: str, name: str, x: Array, expected: Sequence[int], why: str = "") -> None:
  """Raises ``ValueError`` unless ``x.shape == expected``."""
  if tuple(x.shape) != tuple(expected):
    why = f" ({why})" if why else ""
    raise ValueError(
        f"{fn}: `{name}` must have shape {tuple(expected)}{why}, got "
        f"{tuple(x.shape)}."
    )


def check_same_shape(fn: str, name_a: str, a: Array, name_b: str, b: Array) -> None:
  if a.shape != b.shape:
    raise ValueError(
        f"{fn}: `{name_b}` must have the same shape as `{name_a}` "
        f"{tuple(a.shape)}, got {tuple(b.shape)}."
    )


def broadcast_shape(fn: str, **arrays: Any) -> tuple[int, ...]:
  """The broadcast shape of the named arrays; ``ValueError`` naming them and their shapes."""
  shapes = {name: tuple(jnp.shape(a)) for name, a in arrays.items()}
  try:
    return tuple(jnp.broadcast_shapes(*shapes.values()))
  except ValueError:
    named = [f"`{name}` of shape {shape}" for name, shape in shapes.items()]
    listed = ", ".join(named[:-1]) + " and " + named[-1]
    raise ValueError(f"{fn}: {listed} cannot be broadcast together.") from None


def broadcast_pair(fn: str, name_a: str, a: Array, name_b: str, b: Array,
                   warn: bool = True) -> tuple[Array, Array]:
  """Broadcasts ``a`` and ``b`` as torch does, warning if the shapes differ.

  torch's element-wise losses broadcast ``input`` against ``target`` with a
  ``UserWarning``; so do we, and we raise ``ValueError`` if they cannot be
  broadcast.
  """
  if a.shape == b.shape:
    return a, b
  shape = broadcast_shape(fn, **{name_a: a, name_b: b})
  if warn:
    warnings.warn(
        f"{fn}: using a `{name_b}` size {tuple(b.shape)} that is different to "
        f"the `{name_a}` size {tuple(a.shape)}. This will likely lead to "
        "incorrect results due to broadcasting. Please ensure they have the "
        "same size.",
        stacklevel=3,
    )
  return jnp.broadcast_to(a, shape), jnp.broadcast_to(b, shape)


def warn_if_broadcast(fn: str, name_a: str, a: Any, name_b: str, b: Any) -> None:
  """:func:`broadcast_pair`'s shape check and ``UserWarning``, without computing anything.

  For the Python side of a loss whose jitted kernel broadcasts (so that the
  warning comes on every call, as torch's, not only when the kernel is traced).
  """
  shape_a, shape_b = tuple(jnp.shape(a)), tuple(jnp.shape(b))
  if shape_a == shape_b:
    return
  broadcast_shape(fn, **{name_a: a, name_b: b})
  warnings.warn(
      f"{fn}: using a `{name_b}` size {shape_b} that is different to "
      f"the `{name_a}` size {shape_a}. This will likely lead to "
      "incorrect results due to broadcasting. Please ensure they have the "
      "same size.",
      stacklevel=3,
  )


def prepare_where(fn: str, where: ArrayLike | None, shape: Sequence[int],
                  what: str = "the unreduced loss") -> Array | None:
  """Validates ``where`` and broadcasts it to ``shape`` as a bool array."""
  if where is None:
    return None
  where = jnp.asarray(where)
  if where.dtype != jnp.bool_:
    raise ValueError(f"{fn}: `where` must be a boolean array, got dtype {where.dtype}.")
  try:
    return jnp.broadcast_to(where, tuple(shape))
  except ValueError:
    raise ValueError(
        f"{fn}: `where` of shape {tuple(where.shape)} must be broadcastable "
        f"to the shape of {what}, {tuple(shape)}."
    ) from None


# ----------------------------------------------------------------------------
# Data-dependent checks (reported under checkify)
# ----------------------------------------------------------------------------


# Why not plain ``checkify.debug_check``: its primitive carries an ``ErrorEffect``
# even outside checkify, and a jitted function whose program has any effect loses
# jax.jit's C++ dispatch fast path: every call of a jitted step that contains a
# checked loss paid ~70-90 us of Python dispatch on XLA:CPU (8 us without), which
# made ``cross_entropy`` 5-10% slower than optax at 4096 x 1000 (bench/losses.py).
# ``_value_check_p`` is the same check without the effect: lowered to nothing,
# kept alive by its own dead-code rule, and given checkify's own check rule, so
# ``checkify.checkify`` reports it through jit, vmap, grad, cond, loops, remat and
# custom derivatives (tests/test_nan_contract.py). One known gap: JAX drops a
# whole ``lax.scan`` whose outputs go unused, which is what the forward scan
# becomes under ``grad``, so ``checkify(grad(f))`` misses a check inside a scan
# body of ``f`` (the values and gradients are still nan, as always).
# ``JAXLOSS_EFFECTFUL_CHECKS=1`` restores ``debug_check`` (reports everywhere,
# slow dispatch). The checkify internals used here have been stable since
# jax 0.4; if they move, the import below fails and we fall back to debug_check.
def _effect_free_check():
  if os.environ.get("JAXLOSS_EFFECTFUL_CHECKS", "0") not in ("", "0"):
    return None
  try:
    import inspect  # pylint: disable=import-outside-toplevel

    from jax._src import checkify as ck  # pylint: disable=import-outside-toplevel
    from jax._src.interpreters import partial_eval as pe  # pylint: disable=import-outside-toplevel
    from jax.extend import core as jex_core  # pylint: disable=import-outside-toplevel
    from jax.interpreters import ad, batching, mlir  # pylint: disable=import-outside-toplevel
    params = list(inspect.signature(ck.assert_func).parameters)
    # jax <= 0.11: assert_func(error, pred, new_error), rules (error, enabled, *args);
    # jax 0.12: a CheckifyContext first in both.
    with_ctx = params[0] == "ctx"
    if params[with_ctx:] != ["error", "pred", "new_error"]:
      return None
    checks, failed, traceback = ck.error_checks, ck.FailedCheckError, ck.get_traceback
  except (ImportError, AttributeError, TypeError, ValueError):
    return None

  class _Origin:  # the check's source location, hashable by identity (an eqn param)
    def __init__(self, tb):
      self.tb = tb

  prim = jex_core.Primitive("jaxloss_value_check")
  prim.multiple_results = True
  prim.def_impl(lambda *args, **params: [])
  prim.def_abstract_eval(lambda *args, **params: [])
  mlir.register_lowering(prim, lambda ctx, *args, **params: [])

  def batch_rule(args, dims, **params):
    # One check for the batch: it fails if any entry fails, reporting the first failing one.
    size = next(x.shape[d] for x, d in zip(args, dims) if d is not None)
    pred, *fmt = (batching.bdim_at_front(a, d, size) for a, d in zip(args, dims))
    first = jnp.argmin(pred)
    prim.bind(jnp.all(pred), *(f[first] for f in fmt), **params)
    return [], []

  def jvp_rule(primals, tangents, **params):
    del tangents
    prim.bind(*primals, **params)
    return [], []

  def checkify_rule(*args, msg, fmt_tree, origin):
    ctx, (error, enabled, pred, *fmt) = (args[0], args[1:]) if with_ctx else (None, args)
    if failed in enabled:
      new = failed(origin.tb, msg, **jax.tree_util.tree_unflatten(fmt_tree, fmt))
      error = ck.assert_func(*((ctx,) if with_ctx else ()), error, jnp.logical_not(pred), new)
    return error, []

  batching.primitive_batchers[prim] = batch_rule
  ad.primitive_jvps[prim] = jvp_rule
  checks[prim] = checkify_rule
  # Never dead (jax <= 0.11 calls rule(used_outputs, eqn); 0.12 rule(used, live_ins, eqn)).
  pe.dce_rules[prim] = lambda *args: ([True] * len(args[-1].invars), args[-1])

  def check(pred, msg, **fmt):
    leaves, fmt_tree = jax.tree_util.tree_flatten(fmt)
    prim.bind(jnp.asarray(pred, bool), *(jnp.asarray(x) for x in leaves), msg=msg,
              fmt_tree=fmt_tree, origin=_Origin(traceback()))
  return check


_check_without_effect = _effect_free_check()


def value_check(pred: ArrayLike, msg: str, **fmt: Any) -> None:
  """A data-dependent check: a no-op unless run under ``checkify.checkify``."""
  if _check_without_effect is None:
    checkify.debug_check(pred, msg, **fmt)
  else:
    _check_without_effect(pred, msg, **fmt)


def check_index_range(fn: str, name: str, index: Array, num_classes: int,
                      valid: Array | None = None) -> None:
  """Checks ``0 <= index < num_classes`` where ``valid`` (e.g. not ignored)."""
  if index.size == 0:
    return
  if index.dtype.itemsize < 4:  # a narrow dtype would wrap num_classes
    index = index.astype(jnp.int32)
  ok = (index >= 0) & (index < num_classes)
  if valid is not None:
    ok = ok | ~valid
  bad = jnp.where(ok, 0, index)
  value_check(
      jnp.all(ok),
      f"{fn}: `{name}` holds class index {{bad}} outside [0, {num_classes}).",
      bad=jnp.where(jnp.any(~ok), bad.ravel()[jnp.argmax(~ok.ravel())], 0),
  )


def outside_unit_interval(x: Array) -> Array:
  """Where ``x`` is not in ``[0, 1]`` (nan included), as :func:`check_in_unit_interval` reports."""
  return ~((x >= 0) & (x <= 1))


def check_in_unit_interval(fn: str, name: str, x: Array) -> None:
  """Checks that every element of ``x`` lies in ``[0, 1]``."""
  if x.size == 0:
    return
  ok = (x >= 0) & (x <= 1)
  value_check(
      jnp.all(ok),
      f"{fn}: every element of `{name}` must lie in [0, 1]; found {{bad}}.",
      bad=jnp.where(jnp.any(~ok), x.ravel()[jnp.argmax(~ok.ravel())], 0),
  )


# ----------------------------------------------------------------------------
# The nan contract: invalid input gives nan, in values and in gradients
# ----------------------------------------------------------------------------


@jax.custom_jvp
def _nan_gradient_where(bad: Array, x: Array) -> Array:
  del bad
  return x


@_nan_gradient_where.defjvp
def _nan_gradient_where_jvp(primals, tangents):
  bad, x = primals
  _, dx = tangents
  # Linear in dx (a product with a primal-only factor), so it transposes: the
  # cotangent is multiplied by nan where bad, and 0 * nan is nan even where the
  # loss's own derivative is exactly 0 (a gather that missed, an inactive hinge).
  factor = jnp.where(bad, jnp.full((), jnp.nan, dx.dtype), jnp.ones((), dx.dtype))
  return x, dx * factor


def nan_gradient_where(bad: Array, x: Array) -> Array:
  """The identity on ``x`` whose derivative is ``nan`` where ``bad`` (broadcast to ``x``).

  Applied to a loss's floating inputs at the invalid entries, so that their
  gradient is ``nan`` whatever the loss's derivative there (XLA does not fold
  ``0 * nan``). ``bad`` must be a bool array broadcastable to ``x.shape``.
  """
  if not jnp.issubdtype(x.dtype, jnp.floating):
    return x
  return _nan_gradient_where(jnp.broadcast_to(bad, x.shape), x)


def nan_where(bad: Array, x: Array) -> Array:
  """``x`` with ``nan`` where ``bad``, in the value and in every gradient flowing into it."""
  bad = jnp.broadcast_to(bad, x.shape)
  return jnp.where(bad, jnp.full((), jnp.nan, x.dtype), nan_gradient_where(bad, x))


def nan_gradient_rows(bad: Array, *xs: Array, axis: int | None = None) -> tuple[Array, ...]:
  """:func:`nan_gradient_where` for per-sample ``bad`` on inputs with extra axes.

  ``bad`` has the per-sample shape; it gains the missing axes at ``axis``
  (default: the trailing axes) to broadcast against each ``x``.
  """
  out = []
  for x in xs:
    if x is None:
      out.append(None)
      continue
    b = bad
    extra = jnp.ndim(x) - b.ndim
    if extra > 0:
      where_axes = (tuple(range(b.ndim, b.ndim + extra)) if axis is None
                    else tuple(range(axis, axis + extra)))
      b = jnp.expand_dims(b, where_axes)
    out.append(nan_gradient_where(b, x))
  return tuple(out)


# ----------------------------------------------------------------------------
# Precision
# ----------------------------------------------------------------------------


def compute_dtype(*arrays: Array) -> jnp.dtype:
  """The dtype to compute in: float32 for half precision, else the promotion."""
  dtype = jnp.result_type(*arrays)
  if not jnp.issubdtype(dtype, jnp.floating):
    dtype = jnp.result_type(dtype, jnp.float32)
  return jnp.dtype(jnp.float32) if dtype in _HALF_DTYPES else jnp.dtype(dtype)


def output_dtype(*arrays: Array) -> jnp.dtype:
  """The dtype of the result: the promotion of the floating inputs."""
  return jnp.dtype(jnp.result_type(*arrays))


def upcast(x: Array, dtype: jnp.dtype) -> Array:
  return x if x.dtype == dtype else x.astype(dtype)


# ----------------------------------------------------------------------------
# Reduction
# ----------------------------------------------------------------------------


def reduce_loss(loss: Array, reduction: str, where: Array | None = None, *,
                denominator: ArrayLike | None = None,
                out_dtype: jnp.dtype | None = None, bad: Array | None = None) -> Array:
  """Applies ``reduction`` to the unreduced ``loss``, honouring ``where``.

  Args:
    loss: the unreduced loss (already weighted, if the loss has weights).
    reduction: ``'none' | 'mean' | 'sum'``.
    where: optional bool mask of ``loss.shape``; ``False`` entries are zeroed
      and left out of the mean's denominator.
    denominator: the mean's denominator when it is not the count of unmasked
      entries (e.g. the sum of class weights); the caller masks it.
    out_dtype: dtype of the result (the input dtype for half precision).
    bad: optional bool mask (broadcastable to ``loss.shape``) of invalid entries
      (reported under ``checkify``): they become ``nan`` (value and gradient,
      :func:`nan_where`), and so does a reduction over any of them, whose
      gradient is then ``nan`` for every argument that reaches it. Masked
      entries are never poisoned.
  """
  if bad is not None:
    bad = jnp.broadcast_to(bad, loss.shape)
    if where is not None:
      bad = bad & where
  if where is not None:
    loss = jnp.where(where, loss, jnp.zeros((), loss.dtype))
  if bad is not None:
    loss = nan_where(bad, loss)
  if reduction == "none":
    out = loss
  elif reduction == "sum":
    out = jnp.sum(loss)
  elif reduction == "mean":
    if denominator is None:
      denominator = loss.size if where is None else jnp.sum(where, dtype=loss.dtype)
    out = jnp.sum(loss) / jnp.asarray(denominator, loss.dtype)
  else:  # validated by the caller; kept as a guard
    raise ValueError(f"unknown reduction {reduction!r}")
  if bad is not None and reduction != "none" and bad.size:
    out = nan_where(jnp.any(bad), out)
  return out if out_dtype is None else out.astype(out_dtype)


def mask_inputs(where: Array | None, safe: ArrayLike, *xs: Array) -> tuple[Array, ...]:
  """Replaces masked-out inputs by ``safe`` values (the "double where" trick).

  Keeps gradients at masked positions exactly zero even when the original
  inputs there would produce ``inf``/``nan`` in the backward pass.
  """
  if where is None:
    return xs
  return tuple(jnp.where(where, x, jnp.asarray(safe, x.dtype)) for x in xs)


def torch_abs(x: Array) -> Array:
  """``|x|`` whose derivative at 0 is 0, as torch's (``sign(x)``), not JAX's 1."""
  return x * jnp.sign(x)


def nonnegative_value(x: Array, tol: ArrayLike) -> Array:
  """``x`` with its rounding-negative values (in ``(-tol, 0)``) made ``+0.0``.

  For a loss that is mathematically ``>= 0`` but computed through sums of logs
  (CTC's ``-log p`` for a ``p`` that rounds above 1): a downstream ``log(loss)``
  must not see ``-8e-8``. There the value is ``x - stop_gradient(x) = 0`` with
  derivative 1, so the gradient is exactly that of the unclamped loss,
  everywhere (unlike :func:`clamp_min0`). Values at or below ``-tol`` are kept:
  they are not rounding (e.g. CTC on unnormalised ``log_probs``, which torch
  accepts); nan and inf pass through.
  """
  rounding = (x < 0) & (x > -jnp.asarray(tol, x.dtype))
  return jnp.where(rounding, x - jax.lax.stop_gradient(x), x)


def clamp_min0(x: Array) -> Array:
  """``torch.clamp_min(x, 0)``: its gradient is ``1`` where ``x >= 0`` (kink included)."""
  return jnp.where(x < 0, jnp.zeros((), x.dtype), x)


# ----------------------------------------------------------------------------
# Static options and class-index targets
# ----------------------------------------------------------------------------


def static_int(fn: str, name: str, value: Any) -> int:
  """``value`` as a Python int; ``ValueError`` for bools, traced or non-integral values."""
  if isinstance(value, bool):
    raise ValueError(f"{fn}: `{name}` must be a static Python int, got {value!r}.")
  try:
    out = int(value)
  except TypeError:  # traced values (jax.errors.ConcretizationTypeError is a TypeError)
    raise ValueError(f"{fn}: `{name}` must be a static Python int, got {value!r}.") from None
  if out != value:
    raise ValueError(f"{fn}: `{name}` must be an integer, got {value!r}.")
  return out


def static_float(fn: str, name: str, value: Any) -> float:
  """``value`` as a Python float; ``ValueError`` for traced values."""
  try:
    return float(value)
  except TypeError:
    raise ValueError(
        f"{fn}: `{name}` must be a static Python float, got a traced value {value!r}."
    ) from None


# ----------------------------------------------------------------------------
# The class axis: torch's layout by default, any axis on request
# ----------------------------------------------------------------------------


def class_axis(fn: str, axis: Any, x: Array, name: str = "input") -> int:
  """The non-negative class axis of ``x`` for the keyword ``axis``.

  ``None`` is torch's layout: axis ``1`` (``0`` for a 1-D ``x``). Otherwise a
  static Python int in ``[-x.ndim, x.ndim)`` (``-1``: JAX's class-last layout);
  anything else raises ``ValueError`` naming ``axis`` at trace time.
  """
  ndim = x.ndim if hasattr(x, "ndim") else np.ndim(x)
  if axis is None:
    return 0 if ndim <= 1 else 1
  return normalize_axis(fn, axis, ndim, what=f"`{name}` of shape {tuple(jnp.shape(x))}")


def torch_class_axis(x: Array) -> int:
  """torch's class axis of ``x``: ``1``, or ``0`` for a 1-D ``x``."""
  return 0 if jnp.ndim(x) <= 1 else 1


def move_class_axis(fn: str, axis: Any, x: Array, name: str = "input",
                    to: int | None = None) -> Array:
  """``x`` with its class axis (keyword ``axis``, see :func:`class_axis`) moved to ``to``.

  ``to`` defaults to torch's class axis, so that a loss written for torch's
  layout takes any layout; a no-op (no transpose) when the axes agree.
  """
  src = class_axis(fn, axis, x, name)
  dst = torch_class_axis(x) if to is None else to % max(jnp.ndim(x), 1)
  return x if src == dst else jnp.moveaxis(x, src, dst)


def layout_hint(input_shape: Sequence[int], target_shape: Sequence[int], cax: int,
                axis: Any) -> str:
  """A hint for a class-index target whose shape fits another class axis of the input.

  With torch's default layout, Flax's ``(N, T, C)`` logits and ``(N, T)`` labels
  fail the shape check; the hint says that ``axis=-1`` would fit (and, for an
  explicit ``axis``, which other axis would).
  """
  input_shape, target_shape = tuple(input_shape), tuple(target_shape)
  if len(input_shape) < 2:
    return ""
  fits = [a for a in range(len(input_shape))
          if a != cax and input_shape[:a] + input_shape[a + 1:] == target_shape]
  if not fits:
    return ""
  if axis is None:
    where = f"the class axis is {cax}, torch's layout"
  else:
    where = f"the class axis is {cax}, from axis={axis}"
  if fits[-1] == len(input_shape) - 1:
    other = "for class-last logits pass axis=-1"
  else:
    other = f"for classes on axis {fits[-1]} pass axis={fits[-1]}"
  return f" ({where}; {other})"


def check_class_target_shape(fn: str, target: Array, input_shape: Sequence[int], cax: int,
                             axis: Any, what: str = "") -> None:
  """``ValueError`` unless ``target`` has ``input_shape`` without ``cax``, with a layout hint."""
  expected = tuple(input_shape[:cax]) + tuple(input_shape[cax + 1:])
  if tuple(target.shape) != expected:
    why = f" ({what})" if what else ""
    raise ValueError(
        f"{fn}: `target` must have shape {expected}{why}, got {tuple(target.shape)}"
        f"{layout_hint(input_shape, target.shape, cax, axis)}.")


# ----------------------------------------------------------------------------
# Numeric options that may be traced
# ----------------------------------------------------------------------------


def is_concrete(value: Any) -> bool:
  """Whether ``value`` is known at trace time (a Python number or a concrete array)."""
  try:
    float(value)
  except (TypeError, jax.errors.ConcretizationTypeError):
    return False
  return True


def is_traced_option(value: Any) -> bool:
  """Whether :func:`numeric_option` returned a traced value (a static flag for the kernel)."""
  return not isinstance(value, float)


def numeric_option(fn: str, name: str, value: Any, ok, requirement: str) -> Any:
  """A numeric option (``label_smoothing``, ``gamma``, a margin) that may be traced.

  A value known at trace time is returned as a Python float after checking
  ``ok(value)`` (``False`` for nan, too): ``ValueError`` naming ``name``
  otherwise. A traced value cannot be checked at trace time: it is returned as
  a scalar array, and the loss applies :func:`option_out_of_range` to make its
  result ``nan`` (and report it under ``checkify``) when ``ok`` fails.
  """
  if type(value) in (float, int):  # the common case, without jnp's dispatch (~10 us/call)
    if not ok(value):
      raise ValueError(f"{fn}: `{name}` must {requirement}, got {float(value)}.")
    return float(value)
  if is_concrete(value):
    v = float(value)
    if jnp.ndim(value) != 0:
      raise ValueError(f"{fn}: `{name}` must be a scalar, got shape {jnp.shape(value)}.")
    if not ok(v):
      raise ValueError(f"{fn}: `{name}` must {requirement}, got {v}.")
    return v
  value = jnp.asarray(value)
  if value.ndim != 0:
    raise ValueError(f"{fn}: `{name}` must be a scalar, got shape {tuple(value.shape)}.")
  if not (jnp.issubdtype(value.dtype, jnp.floating) or jnp.issubdtype(value.dtype, jnp.integer)):
    raise ValueError(f"{fn}: `{name}` must be a real number, got dtype {value.dtype}.")
  return value


def option_out_of_range(fn: str, name: str, value: Any, ok, requirement: str) -> Array | None:
  """For a traced option: where it fails ``ok`` (a bool scalar), reported under ``checkify``.

  Only for an option that was traced when the loss was called (the kernel
  knows it from a static flag, see :func:`is_traced_option`; a Python number is
  checked by :func:`numeric_option` and also arrives traced in the kernel).
  Pass the result to :func:`nan_where` on the loss: a traced nan or
  out-of-range option gives ``nan``, never a finite wrong number.
  """
  good = jnp.asarray(ok(value))
  value_check(good, f"{fn}: `{name}` must {requirement}; got {{bad}}.", bad=value)
  return ~good


def check_label_smoothing(fn: str, label_smoothing: Any) -> Any:
  """``label_smoothing`` in ``[0, 1]``: a Python float, or a traced scalar (see
  :func:`numeric_option`; the loss makes its result ``nan`` for a traced value
  outside ``[0, 1]``).

  torch silently treats a negative value as 0 and raises above 1; we raise for
  both (and for nan), since a negative smoothing is always a bug.
  """
  return numeric_option(fn, "label_smoothing", label_smoothing, in_unit_interval,
                        "lie in [0, 1]")


def in_unit_interval(x: Any) -> Any:
  """``0 <= x <= 1`` (``False`` for nan), for Python numbers and arrays alike."""
  return (x >= 0) & (x <= 1)


def prepare_class_index(fn: str, target: ArrayLike, sample_shape: Sequence[int],
                        num_classes: int, ignore_index: int, where: ArrayLike | None,
                        what: str = "one class index per sample") -> tuple[Array, Array]:
  """Validates integer class indices of ``sample_shape``; returns ``(counted, index)``.

  ``counted`` is ``False`` where the target equals ``ignore_index`` or ``where`` masks
  it. ``index`` is ``0`` where not counted, and ``num_classes`` (out of bounds, so a
  ``mode='fill'`` gather gives ``nan`` rather than JAX's silent wrap-around of
  negative indices) for a counted target outside ``[0, C)``, which is also reported
  under ``checkify``; :func:`invalid_class_index` recovers those targets, to pass
  as ``bad`` to :func:`reduce_loss` and :func:`nan_gradient_rows`.
  """
  target = as_int_array(fn, "target", target)
  check_shape(fn, "target", target, sample_shape, what)
  where = prepare_where(fn, where, sample_shape, "the per-sample loss (the shape of `target`)")
  info = jnp.iinfo(target.dtype)
  if info.min <= ignore_index <= info.max:
    counted = target != jnp.asarray(ignore_index, target.dtype)
  else:  # ignore_index is not representable in the target's dtype: nothing is ignored
    counted = jnp.ones(target.shape, bool)
  if where is not None:
    counted = counted & where
  check_index_range(fn, "target", target, num_classes, valid=counted)
  index = target.astype(jnp.int32) if target.dtype.itemsize < 4 else target  # room for C
  index = jnp.where((index < 0) | (index >= num_classes), num_classes, index)
  index = jnp.where(counted, index, jnp.zeros((), index.dtype))
  return counted, index


def invalid_class_index(index: Array, num_classes: int) -> Array:
  """The counted targets outside ``[0, C)``, from :func:`prepare_class_index`'s ``index``."""
  return index == num_classes


# ----------------------------------------------------------------------------
# optax's layout: the class (feature) axis is a keyword-only ``axis``, default -1
# ----------------------------------------------------------------------------


def normalize_axis(fn: str, axis: Any, ndim: int, name: str = "axis",
                   what: str | None = None) -> int:
  """``axis`` as a non-negative Python int below ``ndim``; ``ValueError`` naming ``name``
  otherwise (``what``: the array it indexes, for the message)."""
  if isinstance(axis, (bool, np.bool_)) or not isinstance(axis, (int, np.integer)):
    raise ValueError(f"{fn}: `{name}` must be a static Python int, got {axis!r}.")
  if not -ndim <= axis < ndim:
    where = what or f"an array of {ndim} dimension(s)"
    raise ValueError(f"{fn}: `{name}`={axis} is out of range for {where}.")
  return int(axis) % ndim


def optax_where(fn: str, where: ArrayLike | None, shape: Sequence[int], axis: int,
                what: str = "`logits`") -> Array | None:
  """An element mask of ``shape``, as optax's ``where``: one dimension fewer gains ``axis``.

  optax's class-axis losses accept ``where`` of the logits' shape (entries to
  include) or of the per-sample shape (samples to include), expanding the latter
  at ``axis``; both broadcast to ``shape`` here.
  """
  if where is None:
    return None
  where = jnp.asarray(where)
  if where.ndim == len(shape) - 1:
    where = jnp.expand_dims(where, axis)
  return prepare_where(fn, where, shape, what)


# optax's integer-label multiclass losses. prepare_class_index ignores `ignore_index`
# only when the labels' dtype can hold it: 2**64 never fits, so nothing is ignored.
_NO_IGNORE = 2 ** 64


def prepare_index_labels(fn: str, scores: ArrayLike, labels: ArrayLike, axis: int,
                         where: ArrayLike | None, name: str = "scores"):
  """Validates class scores and integer labels in optax's layout.

  Returns ``(scores, axis, counted, index, bad)``: ``counted`` is ``where`` (or
  ``None``), ``index`` the in-range labels (``0`` where invalid or masked), and
  ``bad`` the counted labels outside ``[0, C)``, which are reported under
  ``checkify`` and make the loss ``nan`` (the nan contract; optax's one-hot
  silently gives a finite number).
  """
  scores = as_float_array(fn, name, scores)
  if scores.ndim < 1:
    raise ValueError(f"{fn}: `{name}` must have a class axis, got shape {tuple(scores.shape)}.")
  axis = normalize_axis(fn, axis, scores.ndim)
  sample_shape = scores.shape[:axis] + scores.shape[axis + 1:]
  num_classes = scores.shape[axis]
  labels = jnp.asarray(labels)
  if not jnp.issubdtype(labels.dtype, jnp.integer):
    raise ValueError(f"{fn}: `labels` must be an integer array of class indices, got dtype "
                     f"{labels.dtype}.")
  if labels.shape != sample_shape:
    raise ValueError(f"{fn}: `labels` must have shape {tuple(sample_shape)} (`{name}`' shape "
                     f"without `axis`), got {tuple(labels.shape)}.")
  counted, index = prepare_class_index(fn, labels, sample_shape, num_classes, _NO_IGNORE,
                                       where)
  bad = invalid_class_index(index, num_classes)
  index = jnp.where(bad, jnp.zeros((), index.dtype), index)
  return scores, axis, (None if where is None else counted), index, bad
