"""Cross-entropy of a linear head that never builds the logits: ``linear_cross_entropy``.

``linear_cross_entropy(input, linear_weight, target, ...)`` equals
``cross_entropy(input @ linear_weight.T + linear_bias, target, ...)``, torch 2.13's
``torch.nn.functional.linear_cross_entropy``, value for value and gradient for gradient.
It is the loss of every large-vocabulary model: with 32k tokens and a 128k
vocabulary the float32 logits alone are 16 GiB.

How: the vocabulary is cut into chunks of ``chunk_size`` classes. The forward pass
runs over the chunks once, keeping per token only a running log-sum-exp and the
few sums the loss needs (the target's logit; the class-weighted sum of the logits
for label smoothing; the target-weighted sum for class-probability targets). A
custom VJP runs over the chunks again: it recomputes each chunk's logits from
``input`` and the chunk's rows of ``linear_weight``, turns them into the chunk's
logit gradient ``dz`` (softmax times the cotangent, minus the target term) and
immediately contracts it into ``d input += dz @ W_chunk`` and the chunk's rows of
``d linear_weight = dz.T @ input`` and ``d linear_bias``. Neither pass holds more
than one ``(N, chunk_size)`` block of logits; the only full-size buffers are the
inputs and their gradients. The last chunk is ragged: it is the last
``chunk_size`` classes, overlapping its predecessor, with the overlap masked out,
so no padded copy of the weight matrix is made.

Composition: the chunks are a ``lax.scan``, so the loss works under ``jit``,
``grad``, ``value_and_grad`` and ``vmap`` (including ``vmap`` of ``grad``).
Higher order: reverse-over-reverse (``grad`` of ``grad``, ``jax.jacrev`` of
``jax.jacrev``) works and is exact, because the backward pass is itself ordinary
JAX code; it differentiates that backward scan, which stores per-chunk
intermediates, so second derivatives cost logits-sized memory. ``jax.hessian``
works too and equals the naive form's Hessian (``jax.hessian`` is
``jacfwd(jacrev(f))``: the forward mode runs over the custom VJP's backward pass,
which is ordinary JAX code; tests/test_linear.py compares it). Forward mode of
the loss itself (``jax.jvp``, ``jax.jacfwd`` of the loss) raises ``TypeError``,
as for every ``jax.custom_vjp`` function: for it, compute the logits and call
:func:`jaxloss.cross_entropy`, which supports every transformation.

Precision: ``bfloat16``/``float16`` operands stay in their dtype for the matrix
products (as they would in ``input @ W.T``) with float32 accumulation
(``preferred_element_type``); the log-sum-exp, the per-token sums, the logit
gradient and the ``d input`` accumulator are float32. The result has the
inputs' dtype.

K-dimensional heads (``linear_weight`` of shape ``(C, d1, ..., dK, D)``) use the
reference path, logits then :func:`jaxloss.cross_entropy`, as torch's chunked
path does (it falls back to its reference with a warning); the arguments are
checked here first, so that errors name this function's arguments.

Layout: there is no ``axis``. The class axis is that of ``linear_weight`` (axis 0,
torch's ``nn.Linear`` layout, and ``(N, C, d1, ..., dK)`` for probability targets
of a K-dimensional head); the logits are never the caller's array. A Flax
``nn.Dense(C).kernel`` ``(D, C)`` is passed as ``kernel.T``.

torch's ``options`` (``torch.nn.LinearCrossEntropyOptions``) are accepted, so
that torch code that opts into chunking ports unchanged, and do not change the
result: torch's chunked path exists to avoid materialising the logits, which this
kernel never does (its chunks, over the vocabulary, are set by ``chunk_size``).
``batch_chunk_size``, ``chunking_method``, ``acc_policy``, ``acc_dtype`` and
``allow_retain_graph`` are therefore ignored (accumulation is always float32 or
wider, torch's most accurate policy; nothing is consumed in place, so a retained
graph is not a concern).
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
from jax import lax

from jaxloss import _common as C
from jaxloss.classification import cross_entropy

Array = C.Array
ArrayLike = C.ArrayLike

FN = "linear_cross_entropy"

# The default chunk holds about 2**24 logits (64 MiB in float32) per pass:
# ``chunk_size = 2**24 // N`` rounded down to a power of two, at least 128 classes
# (narrower products run the matrix units poorly) and at most the vocabulary.
DEFAULT_CHUNK_ELEMENTS = 2 ** 24
MIN_AUTO_CHUNK = 128


def default_chunk_size(num_tokens: int, num_classes: int) -> int:
  """The vocabulary chunk ``linear_cross_entropy`` uses when ``chunk_size=None``."""
  per_token = DEFAULT_CHUNK_ELEMENTS // max(num_tokens, 1)
  chunk = 1 << max(per_token.bit_length() - 1, 0)
  return max(1, min(max(chunk, MIN_AUTO_CHUNK), num_classes))


# ----------------------------------------------------------------------------
# The chunked statistics and their VJP
# ----------------------------------------------------------------------------
#
# For tokens x (N, D), weight W (V, D), bias b (V,), class weights w (V,) and, with
# probability targets, q (N, V), with z = x W^T + b, the primitive returns per token
#
#   lse_n = log sum_c exp z_nc
#   zy_n  = z_{n, y_n}                         (class-index targets)
#   s_n   = sum_c w_c z_nc                     (label smoothing; w = 1 without weights)
#   r_n   = sum_c w_c q_nc z_nc                (probability targets)
#
# from which the loss is assembled with ordinary JAX operations.


def _acc_dtype(dtype) -> jnp.dtype:
  return C.compute_dtype(jnp.zeros((), dtype))


def _chunk(x, w_lin, b, i, cv, acc):
  """The logits of chunk ``i``: ``(start, cols, valid, z)``, ``z`` of shape ``(N, cv)``."""
  num_classes = w_lin.shape[0]
  start = jnp.minimum(i * cv, num_classes - cv)
  wc = lax.dynamic_slice_in_dim(w_lin, start, cv, 0).astype(x.dtype)
  z = lax.dot_general(x, wc, (((1,), (1,)), ((), ())), preferred_element_type=acc)
  if b is not None:
    z = z + lax.dynamic_slice_in_dim(b, start, cv, 0).astype(acc)[None, :]
  cols = start + lax.iota(start.dtype, cv)
  valid = cols >= i * cv  # the ragged last chunk overlaps its predecessor
  return start, cols, valid, z, wc


def _slice(v, start, cv, axis, acc):
  return None if v is None else lax.dynamic_slice_in_dim(v, start, cv, axis).astype(acc)


def _stats_forward(x, w_lin, b, cw, q, y, cfg):
  cv, num_chunks, want_zy, want_s, want_r = cfg
  acc = _acc_dtype(x.dtype)
  n = x.shape[0]
  zeros = jnp.zeros((n,), acc)

  def body(carry, i):
    m, s, zy, sw, r = carry
    start, cols, valid, z, _ = _chunk(x, w_lin, b, i, cv, acc)
    zm = jnp.where(valid[None, :], z, -jnp.inf)
    m_new = jnp.maximum(m, jnp.max(zm, axis=1))
    shift = jnp.where(jnp.isfinite(m_new), m_new, jnp.zeros((), acc))
    s = s * jnp.exp(m - shift) + jnp.sum(jnp.exp(zm - shift[:, None]), axis=1)
    zero = jnp.zeros((), acc)
    if want_zy:
      hit = (cols[None, :] == y[:, None]) & valid[None, :]
      zy = zy + jnp.sum(jnp.where(hit, z, zero), axis=1)
    wc = _slice(cw, start, cv, 0, acc)
    weighted = z if wc is None else z * wc[None, :]
    if want_s:
      sw = sw + jnp.sum(jnp.where(valid[None, :], weighted, zero), axis=1)
    if want_r:
      qc = _slice(q, start, cv, 1, acc)
      r = r + jnp.sum(jnp.where(valid[None, :], weighted * qc, zero), axis=1)
    return (m_new, s, zy, sw, r), None

  init = (jnp.full((n,), -jnp.inf, acc), zeros, zeros, zeros, zeros)
  (m, s, zy, sw, r), _ = lax.scan(body, init, jnp.arange(num_chunks, dtype=jnp.int32))
  lse = jnp.where(jnp.isfinite(m), m, jnp.zeros((), acc)) + jnp.log(s)
  return lse, zy, sw, r


@functools.partial(jax.custom_vjp, nondiff_argnums=(6,))
def _head_stats(x, w_lin, b, cw, q, y, cfg):
  return _stats_forward(x, w_lin, b, cw, q, y, cfg)


def _head_stats_fwd(x, w_lin, b, cw, q, y, cfg):
  out = _stats_forward(x, w_lin, b, cw, q, y, cfg)
  return out, (x, w_lin, b, cw, q, y, out[0])


def _update(buf, start, value, axis):
  """``buf[start:start + len] += value`` along ``axis`` (in place inside the scan)."""
  old = lax.dynamic_slice_in_dim(buf, start, value.shape[axis], axis)
  return lax.dynamic_update_slice_in_dim(buf, old + value.astype(buf.dtype), start, axis)


def _head_stats_bwd(cfg, res, cts):
  cv, num_chunks, want_zy, want_s, want_r = cfg
  x, w_lin, b, cw, q, y, lse = res
  g_lse, g_zy, g_s, g_r = cts
  acc = lse.dtype
  zero = jnp.zeros((), acc)
  want_dcw = cw is not None and (want_s or want_r)

  def body(carry, i):
    dx, dw, db, dcw, dq = carry
    start, cols, valid, z, wc_lin = _chunk(x, w_lin, b, i, cv, acc)
    dz = g_lse[:, None] * jnp.exp(z - lse[:, None])
    if want_zy:
      hit = cols[None, :] == y[:, None]
      dz = dz + jnp.where(hit, g_zy[:, None], zero)
    wc = _slice(cw, start, cv, 0, acc)
    if want_s:
      dz = dz + (g_s[:, None] if wc is None else g_s[:, None] * wc[None, :])
    qc = _slice(q, start, cv, 1, acc) if want_r else None
    if want_r:
      wq = qc if wc is None else wc[None, :] * qc
      dz = dz + g_r[:, None] * wq
    dz = jnp.where(valid[None, :], dz, zero)
    dz_mm = dz.astype(x.dtype)
    dx = dx + lax.dot_general(dz_mm, wc_lin, (((1,), (0,)), ((), ())),
                              preferred_element_type=acc)
    dw = _update(dw, start, lax.dot_general(dz_mm, x, (((0,), (0,)), ((), ())),
                                            preferred_element_type=acc), 0)
    if db is not None:
      db = _update(db, start, jnp.sum(dz, axis=0), 0)
    if want_dcw:
      coef = jnp.zeros_like(g_lse)[:, None]
      if want_s:
        coef = coef + g_s[:, None]
      if want_r:
        coef = coef + g_r[:, None] * qc
      dcw = _update(dcw, start, jnp.sum(jnp.where(valid[None, :], coef * z, zero), axis=0), 0)
    if dq is not None:
      gq = g_r[:, None] * z if wc is None else g_r[:, None] * (wc[None, :] * z)
      dq = _update(dq, start, jnp.where(valid[None, :], gq, zero), 1)
    return (dx, dw, db, dcw, dq), None

  init = (jnp.zeros(x.shape, acc), jnp.zeros_like(w_lin),
          None if b is None else jnp.zeros_like(b),
          None if not want_dcw else jnp.zeros_like(cw),
          None if q is None else jnp.zeros_like(q))
  (dx, dw, db, dcw, dq), _ = lax.scan(body, init, jnp.arange(num_chunks, dtype=jnp.int32))
  if cw is not None and dcw is None:
    dcw = jnp.zeros_like(cw)
  return dx.astype(x.dtype), dw, db, dcw, dq, None


_head_stats.defvjp(_head_stats_fwd, _head_stats_bwd)


# ----------------------------------------------------------------------------
# Validation
# ----------------------------------------------------------------------------


def _check_chunk_size(chunk_size) -> int | None:
  if chunk_size is None:
    return None
  chunk = C.static_int(FN, "chunk_size", chunk_size)
  if chunk < 1:
    raise ValueError(f"{FN}: `chunk_size` must be a positive int or None, got {chunk_size!r}.")
  return chunk


# torch 2.13's ``LinearCrossEntropyOptions`` fields (a frozen dataclass).
TORCH_OPTION_FIELDS = ("allow_retain_graph", "batch_chunk_size", "chunking_method",
                       "acc_policy", "acc_dtype")


def _check_options(options) -> None:
  """Accepts ``None`` or torch's ``LinearCrossEntropyOptions`` (checked by its fields).

  torch is not imported: any dataclass instance whose fields are among torch's
  option fields passes, as does a ``dict`` of them.
  """
  if options is None:
    return
  if isinstance(options, dict):
    fields = tuple(options)
  elif dataclasses.is_dataclass(options) and not isinstance(options, type):
    fields = tuple(f.name for f in dataclasses.fields(options))
  else:
    raise ValueError(
        f"{FN}: `options` must be None or torch's LinearCrossEntropyOptions (accepted and "
        f"ignored: this kernel never builds the logits; `chunk_size=` sets its chunks), got "
        f"{type(options).__name__}.")
  unknown = [f for f in fields if f not in TORCH_OPTION_FIELDS]
  if unknown:
    raise ValueError(
        f"{FN}: `options` has fields {unknown} that torch's LinearCrossEntropyOptions does "
        f"not have (its fields: {', '.join(TORCH_OPTION_FIELDS)}).")


def _check_shapes(input, linear_weight, linear_bias):
  if input.ndim not in (1, 2):
    raise ValueError(
        f"{FN}: `input` must have shape (in_features,) or (N, in_features), got "
        f"{tuple(input.shape)}.")
  if linear_weight.ndim < 2:
    raise ValueError(
        f"{FN}: `linear_weight` must have shape (C, in_features) or (C, d1, ..., dK, "
        f"in_features), got {tuple(linear_weight.shape)}.")
  if linear_weight.shape[-1] != input.shape[-1]:
    raise ValueError(
        f"{FN}: `linear_weight` must have in_features={input.shape[-1]} (the last axis of "
        f"`input`) as its last axis, got shape {tuple(linear_weight.shape)}.")
  out_features = tuple(linear_weight.shape[1:-1])
  if linear_bias is not None:
    C.check_shape(FN, "linear_bias", linear_bias, linear_weight.shape[:-1],
                  "one bias per class, `linear_weight`'s shape without its last axis")
  if out_features and input.ndim == 1:
    raise ValueError(
        f"{FN}: a K-dimensional `linear_weight` of shape {tuple(linear_weight.shape)} "
        f"requires batched `input` (N, {input.shape[-1]}), got shape {tuple(input.shape)}.")
  return out_features


# ----------------------------------------------------------------------------
# Public API
# ----------------------------------------------------------------------------


def linear_cross_entropy(input: ArrayLike, linear_weight: ArrayLike, target: ArrayLike, *,
                         linear_bias: ArrayLike | None = None, weight: ArrayLike | None = None,
                         reduction: str = "mean", ignore_index: int | None = None,
                         label_smoothing: float = 0.0, options=None,
                         chunk_size: int | None = None,
                         where: ArrayLike | None = None) -> Array:
  r"""Cross-entropy of a linear head, ``torch.nn.functional.linear_cross_entropy``.

  With logits :math:`z = x W^\top + b` (never materialised), class indices
  :math:`y_n`, class weights :math:`w` and smoothing :math:`\varepsilon`:

  .. math::
     \ell_n = (1 - \varepsilon)\, w_{y_n} (\operatorname{lse}_c z_{n,c} - z_{n,y_n})
              + \frac{\varepsilon}{C} \sum_c w_c (\operatorname{lse}_c z_{n,c} - z_{n,c})

  and ``'mean'`` is :math:`\sum_n \ell_n / \sum_n w_{y_n}` over the counted samples,
  exactly :func:`jaxloss.cross_entropy` of the logits (see it for class-probability
  targets, ignored samples and the ``where`` mask). The vocabulary is processed
  in chunks of ``chunk_size`` classes, in the forward pass and in a custom VJP that
  recomputes each chunk's logits, so that neither holds the ``(N, C)`` logits; see
  the module docstring for memory, precision and higher-order derivatives.

  Args:
    input: ``(in_features,)`` or ``(N, in_features)``.
    linear_weight: ``(C, in_features)``, or ``(C, d1, ..., dK, in_features)`` for a
      K-dimensional loss (batched ``input`` only; computed through the logits).
    target: integer class indices of shape ``()``, ``(N,)`` or ``(N, d1, ..., dK)``;
      or floating class probabilities of the logits' shape ``(C,)``, ``(N, C)`` or
      ``(N, C, d1, ..., dK)`` (differentiable).
    linear_bias: optional ``(C,)`` (or ``(C, d1, ..., dK)``) bias of the head.
    weight: optional class weights ``(C,)``; differentiable here for both target
      kinds (torch refuses with class indices).
    reduction: ``'none' | 'mean' | 'sum'``.
    ignore_index: a class index whose targets are ignored. ``None`` (the default)
      means ``-100`` for class-index targets, as in torch; with class-probability
      targets it must stay ``None`` (torch raises for any value).
    label_smoothing: :math:`\varepsilon \in [0, 1]`, a static Python float.
    (There is no ``axis``: the class axis is ``linear_weight``'s first; see the
    module docstring.)
    options: torch's ``LinearCrossEntropyOptions`` (or ``None``): accepted and
      ignored, see the module docstring (chunking is always on here and is set by
      ``chunk_size``). Any object with only torch's option fields
      (``allow_retain_graph``, ``batch_chunk_size``, ``chunking_method``,
      ``acc_policy``, ``acc_dtype``) is accepted; anything else raises.
    chunk_size: classes per chunk, a static int (beyond torch). ``None`` picks
      :func:`default_chunk_size`: about ``2**24`` logits per chunk, at least 128
      classes. A value of at least ``C`` makes one chunk.
    where: optional bool mask broadcastable to the per-sample loss shape (beyond
      torch); masked samples leave the sum and the (weighted) denominator and get
      exactly-zero gradients, even where ``input`` is non-finite.

  Returns:
    The loss in the inputs' dtype (float32 accumulation for half precision): a
    scalar, or the per-sample loss for ``reduction='none'``. A class index
    outside ``[0, C)`` (not ignored; torch raises) gives ``nan``, in the value and
    the gradients, and is reported under ``checkify.checkify``.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> import jaxloss
    >>> x = jnp.array([[1.0, 0.5], [-0.5, 2.0], [0.0, 1.0]])     # 3 tokens, 2 features
    >>> w = jnp.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-1.0, 0.5]])   # 4 classes
    >>> y = jnp.array([2, 1, -100])                              # the last is ignored
    >>> loss = jaxloss.linear_cross_entropy(x, w, y, chunk_size=3)
    >>> print(f"{loss:.4f}")
    0.7815
    >>> logits = x @ w.T                                          # the same, materialised
    >>> print(f"{jaxloss.cross_entropy(logits, y):.4f}")
    0.7815
    >>> g = jax.grad(jaxloss.linear_cross_entropy, argnums=(0, 1))(x, w, y, chunk_size=3)
    >>> print(g[0].shape, g[1].shape)
    (3, 2) (4, 2)

  References:
    Wijmans et al., "Cut Your Losses in Large-Vocabulary Language Models", ICLR
    2025 (https://arxiv.org/abs/2411.09009): the loss without materialised logits.
    Milakov and Gimelshein, "Online normalizer calculation for softmax", 2018
    (https://arxiv.org/abs/1805.02867): the running log-sum-exp over chunks.
    Szegedy et al., "Rethinking the Inception Architecture for Computer Vision",
    CVPR 2016: label smoothing.
  """
  C.check_reduction(FN, reduction)
  eps = C.static_float(FN, "label_smoothing", label_smoothing)
  if not 0.0 <= eps <= 1.0:
    raise ValueError(f"{FN}: `label_smoothing` must lie in [0, 1], got {eps}.")
  _check_options(options)
  chunk = _check_chunk_size(chunk_size)
  if ignore_index is not None:
    ignore_index = C.static_int(FN, "ignore_index", ignore_index)
  return _linear_cross_entropy(input, linear_weight, target, linear_bias, weight, where,
                               reduction, ignore_index, eps, chunk)


# One jitted kernel with static options (the house rule): an eager call runs one
# compiled program; inside a caller's jit it is inlined.
@functools.partial(jax.jit, static_argnums=(6, 7, 8, 9))
def _linear_cross_entropy(input, linear_weight, target, linear_bias, weight, where, reduction,
                          ignore_index, eps, chunk):
  input = C.as_float_array(FN, "input", input)
  linear_weight = C.as_float_array(FN, "linear_weight", linear_weight)
  if linear_bias is not None:
    linear_bias = C.as_float_array(FN, "linear_bias", linear_bias)
  out_features = _check_shapes(input, linear_weight, linear_bias)
  num_classes = linear_weight.shape[0]
  logits_shape = tuple(input.shape[:-1]) + (num_classes,) + out_features
  target = jnp.asarray(target)
  probs = tuple(target.shape) == logits_shape  # torch's rule
  if probs and ignore_index is not None:
    raise ValueError(
        f"{FN}: `ignore_index` cannot be specified when `target` holds class "
        f"probabilities (a target of the logits' shape {logits_shape}); leave it None.")
  ignore = -100 if ignore_index is None else ignore_index
  if probs and not jnp.issubdtype(target.dtype, jnp.floating):
    raise ValueError(
        f"{FN}: `target` of the logits' shape {logits_shape} holds class probabilities "
        f"and must be floating-point, got dtype {target.dtype}.")

  if out_features:  # K-dimensional: the reference path, as torch's chunked op does
    _check_k_dimensional(target, probs, logits_shape, weight, where, num_classes)
    flat_w = linear_weight.reshape(math.prod(linear_weight.shape[:-1]), input.shape[-1])
    logits = input @ flat_w.T
    if linear_bias is not None:
      logits = logits + linear_bias.reshape(-1)
    return cross_entropy(logits.reshape(logits_shape), target, weight, ignore_index=ignore,
                         reduction=reduction, label_smoothing=eps, where=where)

  batched = input.ndim == 2
  x = input if batched else input[None]
  t = target if batched else target[None]
  if where is not None:
    where = C.prepare_where(FN, where, x.shape[:1] if batched else (),
                            "the per-sample loss")
    where = where if batched else where[None]
  arrays = [input, linear_weight] + [a for a in (linear_bias,) if a is not None]
  if probs:
    t = C.as_float_array(FN, "target", t)
    arrays.append(t)
  out_dtype = C.output_dtype(*arrays)
  acc = C.compute_dtype(*arrays)
  mm_dtype = out_dtype  # the matrix products run in the inputs' (promoted) dtype
  x = C.upcast(x, mm_dtype)
  cw = None
  if weight is not None:
    cw = C.as_float_array(FN, "weight", weight)
    C.check_shape(FN, "weight", cw, (num_classes,), "one weight per class")
    cw = C.upcast(cw, acc)
  if num_classes == 0:
    raise ValueError(f"{FN}: `linear_weight` must have at least one class, got shape "
                     f"{tuple(linear_weight.shape)}.")
  cv = default_chunk_size(x.shape[0], num_classes) if chunk is None else min(chunk, num_classes)
  num_chunks = -(-num_classes // cv)

  if probs:
    loss = _probability_loss(x, linear_weight, linear_bias, cw, t, where, eps, cv, num_chunks,
                             acc)
    loss = C.reduce_loss(loss, reduction, where, out_dtype=out_dtype)
  else:
    counted, index = C.prepare_class_index(
        FN, t, x.shape[:1], num_classes, ignore, where,
        f"class indices for logits of shape {logits_shape}")
    bad = C.invalid_class_index(index, num_classes)
    loss, target_weight = _index_loss(x, linear_weight, linear_bias, cw, counted, index, bad,
                                      eps, cv, num_chunks, acc)
    denominator = None
    if target_weight is not None and reduction == "mean":
      denominator = jnp.sum(jnp.where(counted, target_weight, jnp.zeros((), acc)))
    loss = C.reduce_loss(loss, reduction, counted, denominator=denominator,
                         out_dtype=out_dtype, bad=bad)
  return loss if batched or reduction != "none" else loss[0]


def _check_k_dimensional(target, probs, logits_shape, weight, where, num_classes):
  """The K-dimensional path's argument checks, naming this function's arguments.

  (It then calls :func:`jaxloss.cross_entropy` on logits it builds itself, whose
  own errors would name ``cross_entropy`` and its ``input``.)
  """
  sample_shape = logits_shape[:1] + logits_shape[2:]
  if not probs:
    if jnp.issubdtype(target.dtype, jnp.floating):
      raise ValueError(
          f"{FN}: a floating-point `target` holds class probabilities and must have the "
          f"logits' shape {logits_shape} (N, C, d1, ..., dK), got {tuple(target.shape)} "
          "(class indices must be integers).")
    target = C.as_int_array(FN, "target", target)
    C.check_shape(FN, "target", target, sample_shape,
                  f"class indices for logits of shape {logits_shape}: (N, d1, ..., dK)")
  if weight is not None:
    weight = C.as_float_array(FN, "weight", weight)
    C.check_shape(FN, "weight", weight, (num_classes,), "one weight per class")
  C.prepare_where(FN, where, sample_shape, "the per-sample loss (N, d1, ..., dK)")


def _index_loss(x, w_lin, b, cw, counted, index, bad, eps, cv, num_chunks, acc):
  num_classes = w_lin.shape[0]
  # Uncounted rows enter as zeros ("double where"): their gradient is exactly 0
  # even where `input` is inf/nan, and nothing non-finite reaches d linear_weight.
  (x,) = C.mask_inputs(counted[:, None], 0.0, x)
  cfg = (cv, num_chunks, True, eps > 0.0, False)
  lse, zy, s, _ = _head_stats(x, w_lin, b, cw, None, index, cfg)
  # The nan contract for an out-of-range target: a nan value, and (through the
  # log-sum-exp, whose derivative reaches every logit of the row) nan gradients.
  zy = jnp.where(bad, jnp.nan, zy)
  lse = C.nan_gradient_where(bad, lse)
  zero = jnp.zeros((), acc)
  target_weight = None
  nll = lse - zy
  if cw is not None:
    target_weight = jnp.take(cw, index, mode="fill")
    nll = nll * target_weight
  nll = jnp.where(counted, nll, zero)
  if eps == 0.0:
    return nll, target_weight
  total_weight = num_classes if cw is None else jnp.sum(cw)
  smooth = jnp.where(counted, total_weight * lse - s, zero)
  return (1.0 - eps) * nll + smooth * (eps / num_classes), target_weight


def _probability_loss(x, w_lin, b, cw, q, where, eps, cv, num_chunks, acc):
  num_classes = w_lin.shape[0]
  if where is not None:
    x, q = C.mask_inputs(where[:, None], 0.0, x, q)
  cfg = (cv, num_chunks, False, eps > 0.0, True)
  lse, _, s, r = _head_stats(x, w_lin, b, cw, q, jnp.zeros(x.shape[:1], jnp.int32), cfg)
  q_acc = C.upcast(q, acc)
  mass = jnp.sum(q_acc if cw is None else q_acc * cw[None, :], axis=1)  # sum_c w_c q_nc
  loss = lse * mass - r
  if eps > 0.0:
    total_weight = num_classes if cw is None else jnp.sum(cw)
    loss = (1.0 - eps) * loss + (eps / num_classes) * (total_weight * lse - s)
  return loss
