"""Shared machinery of the losses on cosine logits (``angular``, ``amlfs``).

Validation of a cosine matrix and of its range, the unbatched ``(C,)`` layout,
the logit scale (``scale``, alias ``s``) and the target-logit gather. Private:
the public losses document what these helpers check.
"""

from __future__ import annotations

import warnings
from typing import Any

import jax
import jax.numpy as jnp

from jaxloss import _common as C

Array = C.Array
ArrayLike = C.ArrayLike


def maybe_concrete(value: Any) -> float | None:
  """``float(value)`` if it is known at trace time, else ``None``."""
  try:
    return float(value)
  except (TypeError, jax.errors.ConcretizationTypeError):
    return None


def resolve_scale(fn: str, scale: ArrayLike | None, s: ArrayLike | None,
                  default: float | None) -> ArrayLike:
  """The logit scale from ``scale`` (or the deprecated ``s``), else ``default``.

  ``scale`` is the public name everywhere. ``s`` (insightface's and the papers'
  name) is the one deprecation path (a ``DeprecationWarning``, as optax deprecates):
  it goes away at the first release.
  """
  if s is not None:
    warnings.warn(f"{fn}: `s` is deprecated and will be removed; pass the logit scale as "
                  "`scale`.", DeprecationWarning, stacklevel=3)
    if scale is not None:
      raise ValueError(
          f"{fn}: pass the logit scale once, as `scale` (`s` is its deprecated name).")
    scale = s
  if scale is None:
    if default is None:
      raise ValueError(
          f"{fn}: `scale` is required (a float or an array broadcastable to (N, C)).")
    scale = default
  return scale


def check_cosine(fn: str, cosine: ArrayLike, name: str = "cosine") -> Array:
  """A floating ``(C,)`` or ``(N, C)`` cosine matrix with at least one class."""
  cosine = C.as_float_array(fn, name, cosine)
  if cosine.ndim not in (1, 2):
    raise ValueError(
        f"{fn}: `{name}` must have shape (C,) or (N, C), got {tuple(cosine.shape)}.")
  if cosine.shape[-1] < 1:
    raise ValueError(f"{fn}: `{name}` must have at least one class, got {tuple(cosine.shape)}.")
  return cosine


def cosine_tolerance(dtype) -> float:
  """How far beyond ``[-1, 1]`` a cosine may lie from rounding alone."""
  return max(1e-4, 4.0 * float(jnp.finfo(dtype).eps))


def check_cosine_range(fn: str, name: str, cosine: Array, tol: float,
                       valid: Array | None = None) -> Array:
  """Checks the cosines (N, C) of the ``valid`` rows; returns the rows (N,) that fail.

  Reported under ``checkify``; the caller makes the failing rows ``nan``.
  """
  ok = jnp.abs(cosine) <= 1.0 + tol
  if valid is not None:
    ok = ok | ~valid
  C.value_check(
      jnp.all(ok),
      f"{fn}: every element of `{name}` must be a cosine in [-1, 1] (up to rounding, "
      f"{tol:g}); found {{bad}}.",
      bad=jnp.where(jnp.any(~ok), cosine.ravel()[jnp.argmax(~ok.ravel())], 0),
  )
  return ~jnp.all(ok, axis=-1)


def cosine_layout(fn: str, cosine: ArrayLike, target: ArrayLike, scale: ArrayLike,
                  axis: int | None) -> tuple[ArrayLike, ArrayLike]:
  """The cosines (and a 2-D ``scale``) in the ``(N, C)`` layout, from the class axis ``axis``.

  ``None`` (and ``1``/``-1``) is the ``(N, C)`` layout already; ``0`` transposes a
  ``(C, N)`` cosine matrix. The target-shape error hints at the axis that fits.
  """
  if axis is None:
    return cosine, scale
  cosine = check_cosine(fn, cosine)
  cax = C.class_axis(fn, axis, cosine, "cosine")
  target = jnp.asarray(target)
  if cosine.ndim == 2 and target.ndim == 1:
    C.check_class_target_shape(fn, target, cosine.shape, cax, axis)
  if cosine.ndim == 2 and cax == 0:
    cosine = cosine.T
    if jnp.ndim(scale) == 2:
      scale = jnp.asarray(scale).T
  return cosine, scale


def batch_unbatched(fn: str, cosine: Array, target: ArrayLike, where: ArrayLike | None):
  """Adds a batch axis of 1 to an unbatched ``(C,)`` cosine, its scalar target and mask."""
  target = jnp.asarray(target)
  if cosine.ndim != 1:
    return cosine, target, where
  if target.ndim != 0:
    raise ValueError(
        f"{fn}: `target` must be a scalar class index for an unbatched `cosine` of shape "
        f"{tuple(cosine.shape)}, got shape {tuple(target.shape)}.")
  where = None if where is None else jnp.reshape(jnp.asarray(where), (1,))
  return cosine[None], target[None], where


def broadcast_scale(fn: str, scale: ArrayLike, shape: tuple[int, ...], dtype) -> Array:
  """``scale`` (a float or an array) broadcast to the logits' ``shape``."""
  scale = jnp.asarray(scale)
  if not (jnp.issubdtype(scale.dtype, jnp.floating)
          or jnp.issubdtype(scale.dtype, jnp.integer)):
    raise ValueError(f"{fn}: `scale` must be a real number or array, got dtype {scale.dtype}.")
  try:
    return jnp.broadcast_to(scale.astype(dtype), shape)
  except ValueError:
    raise ValueError(
        f"{fn}: `scale` of shape {tuple(scale.shape)} must be broadcastable to the "
        f"logits' shape {tuple(shape)} (a float, per-sample (N, 1), or (N, C))."
    ) from None


def take_target(x: Array, index: Array) -> Array:
  """``x[n, index[n]]`` for ``x`` of shape ``(N, C)``; ``nan`` out of bounds."""
  return jnp.take_along_axis(x, index[:, None], axis=1, mode="fill")[:, 0]
