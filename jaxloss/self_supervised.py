r"""Contrastive and metric-learning losses on a batch of embeddings.

* :func:`ntxent`: NT-Xent, ``optax.losses.ntxent`` (and pytorch-metric-learning's
  ``NTXentLoss``);
* :func:`info_nce`: InfoNCE with in-batch negatives, one-directional or
  symmetric (CLIP);
* :func:`supervised_contrastive_loss` (SupCon), :func:`batch_hard_triplet_loss`,
  :func:`batch_all_triplet_loss`, :func:`multi_similarity_loss`: equal to
  pytorch-metric-learning 2.9's ``SupConLoss``, ``TripletMarginLoss`` with
  ``BatchHardMiner`` / without a miner, and ``MultiSimilarityLoss``.

A batch of embeddings with group labels: samples with the same label are
positive pairs, every other sample is a negative. Temperatures, margins and the
multi-similarity scales are traced (``vmap`` over them gives each copy the
static call's value). ``where`` masks samples. Memory: each loss forms a
``B x B`` similarity (or distance) matrix, ``B x B x B`` for the batch-all
triplets; ``chunk_size`` computes it in blocks of anchors (``lax.map`` under
``jax.checkpoint``), holding ``chunk_size x B`` at a time in the forward and the
backward pass. ``docs/metric_learning.md`` lists the differences between libraries.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from jaxloss import _common as C

Array = C.Array
ArrayLike = C.ArrayLike


def cosine_similarity_matrix(embeddings: Array, epsilon: ArrayLike) -> Array:
  """``S[i, j] = cos(e_i, e_j)`` with each squared norm clamped below at ``epsilon``.

  optax's normalisation: ``e / sqrt(max(|e|^2, epsilon))`` (its gradient is the
  clamped function's: a norm below the clamp is a constant).
  """
  sq_norm = jnp.sum(jnp.square(embeddings), axis=-1, keepdims=True)
  unit = embeddings / jnp.sqrt(jnp.clip(sq_norm, epsilon))
  return unit @ unit.T


def _masked_logsumexp(x: Array, mask: Array) -> Array:
  """``logsumexp`` of ``x`` over the last axis where ``mask``; ``-inf`` for an empty row.

  An empty row is computed over every entry and then replaced, so that its
  gradient is exactly zero (not ``0 / 0``).
  """
  has = jnp.any(mask, axis=-1)
  m = mask | ~has[..., None]
  lse = jax.nn.logsumexp(jnp.where(m, x, -jnp.inf), axis=-1, where=m)
  return jnp.where(has, lse, jnp.full((), -jnp.inf, lse.dtype))


def _map_rows(block_fn, row_args: tuple, chunk_size: int | None):
  """``block_fn(*row_args)`` (per-row outputs), in blocks of ``chunk_size`` rows.

  The blocks run one after the other (``lax.map``), each under ``jax.checkpoint``:
  the forward and the backward pass hold one ``chunk_size x B`` block of the
  similarity matrix at a time instead of the whole ``B x B`` matrix (the
  backward pass recomputes each block). Padded rows are sliced off.
  """
  n = row_args[0].shape[0]
  if chunk_size is None or chunk_size >= n:
    return block_fn(*row_args)
  blocks = -(-n // chunk_size)
  pad = blocks * chunk_size - n
  padded = [jnp.pad(a, [(0, pad)] + [(0, 0)] * (a.ndim - 1)) for a in row_args]
  stacked = [a.reshape((blocks, chunk_size) + a.shape[1:]) for a in padded]
  out = jax.lax.map(lambda xs: jax.checkpoint(block_fn)(*xs), stacked)
  return jax.tree.map(lambda o: o.reshape((blocks * chunk_size,) + o.shape[2:])[:n], out)


def _pair_masks(labels_i, index_i, valid_i, labels, valid):
  """(positive, negative) masks of a block of anchors against the batch."""
  same = labels_i[:, None] == labels[None, :]
  not_self = index_i[:, None] != jnp.arange(labels.shape[0])[None, :]
  counted = valid_i[:, None] & valid[None, :]
  return same & not_self & counted, ~same & counted


def _prepare(embeddings, where, dtype, normalize_fn):
  """Unit (or raw) embeddings, masked rows replaced by a finite stand-in; the valid mask."""
  e = C.upcast(embeddings, dtype)
  n = e.shape[0]
  valid = jnp.ones((n,), bool) if where is None else where
  if where is not None:
    (e,) = C.mask_inputs(where[:, None], 1, e)  # finite, zero gradient
  return (e if normalize_fn is None else normalize_fn(e)), valid


@functools.partial(jax.jit, static_argnames=("chunk_size",))
def _ntxent_kernel(embeddings, labels, temperature, where, *, chunk_size=None):
  out_dtype = C.output_dtype(embeddings)
  dtype = C.compute_dtype(embeddings)
  eps = jnp.finfo(embeddings.dtype).eps  # optax's clamp, in the input's precision

  def unit(e):
    return e / jnp.sqrt(jnp.clip(jnp.sum(jnp.square(e), axis=-1, keepdims=True), eps))
  u, valid = _prepare(embeddings, where, dtype, unit)
  tau = jnp.asarray(temperature, dtype)

  def block(u_i, labels_i, index_i, valid_i):
    positive, negative = _pair_masks(labels_i, index_i, valid_i, labels, valid)
    sim = (u_i @ u.T) / tau
    # -log(e^{s_ij} / (e^{s_ij} + sum_{k negative} e^{s_ik})) for each positive (i, j),
    # as logaddexp(s_ij, logsumexp_negatives_i) - s_ij: no overflow, and 0 for an
    # anchor without negatives.
    neg_lse = _masked_logsumexp(sim, negative)[:, None]
    pair = jnp.logaddexp(sim, neg_lse) - sim
    return (jnp.sum(jnp.where(positive, pair, jnp.zeros((), dtype)), axis=1),
            jnp.sum(positive, axis=1, dtype=dtype))

  total, count = _map_rows(block, (u, labels, jnp.arange(u.shape[0]), valid), chunk_size)
  return (jnp.sum(total) / jnp.sum(count)).astype(out_dtype)


def _check_scalar(fn: str, name: str, x: ArrayLike) -> Array:
  x = jnp.asarray(x)
  if x.ndim:
    raise ValueError(f"{fn}: `{name}` must be a scalar, got shape {tuple(x.shape)}.")
  return x


def _check_chunk_size(fn: str, chunk_size) -> int | None:
  if chunk_size is None:
    return None
  chunk_size = C.static_int(fn, "chunk_size", chunk_size)
  if chunk_size < 1:
    raise ValueError(f"{fn}: `chunk_size` must be a positive int or None, got {chunk_size}.")
  return chunk_size


def _check_batch(fn: str, embeddings, labels, where):
  embeddings = C.as_float_array(fn, "embeddings", embeddings)
  C.check_ndim(fn, "embeddings", embeddings, 2)
  labels = jnp.asarray(labels)
  C.check_shape(fn, "labels", labels, embeddings.shape[:1], "one label per embedding")
  where = C.prepare_where(fn, where, embeddings.shape[:1], "one entry per embedding")
  return embeddings, labels, where


def ntxent(embeddings: ArrayLike, labels: ArrayLike, temperature: ArrayLike = 0.07, *,
           where: ArrayLike | None = None, chunk_size: int | None = None) -> Array:
  r"""Normalized temperature-scaled cross-entropy (NT-Xent), ``optax.losses.ntxent``.

  With :math:`s_{ij} = \cos(e_i, e_j) / \tau`, the mean over the positive pairs
  :math:`(i, j)` (same label, :math:`i \ne j`, both orders) of

  .. math:: -\log \frac{e^{s_{ij}}}{e^{s_{ij}} + \sum_{k:\, y_k \ne y_i} e^{s_{ik}}}

  (the other positives of anchor :math:`i` are not in its denominator, as
  optax and pytorch-metric-learning's ``NTXentLoss``). Values and gradients
  are optax's; a batch without any positive pair gives ``nan`` (the mean of
  nothing, as optax).

  Args:
    embeddings: ``(batch, features)`` embeddings.
    labels: ``(batch,)`` group labels (any dtype compared with ``==``); equal
      labels mark positive pairs.
    temperature: the temperature :math:`\tau` (traced).
    where: optional ``(batch,)`` bool mask; a masked sample is neither an
      anchor, a positive nor a negative, and its embedding gets an exactly-zero
      gradient (padding of a variable-size batch). Beyond optax.
    chunk_size: ``None`` (the default) computes the ``B x B`` similarity matrix
      at once; an int computes it in blocks of ``chunk_size`` anchors (the same
      value, to rounding), holding one ``chunk_size x B`` block at a time, in the
      backward pass too (which recomputes it). Beyond optax.

  Returns:
    The scalar loss, in ``embeddings``' dtype. Memory: the similarity matrix is
    ``B x B`` (``chunk_size x B`` with ``chunk_size``).

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> embeddings = jnp.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [-0.6, 0.8]])
    >>> loss = jaxloss.ntxent(embeddings, jnp.array([0, 0, 1, 1]), temperature=0.5)
    >>> print(f"{float(loss):.4f}")
    0.4302

  References:
    - Chen et al., "A Simple Framework for Contrastive Learning of Visual
      Representations", ICML 2020. https://arxiv.org/abs/2002.05709
    - pytorch-metric-learning, ``NTXentLoss``.
    - optax, ``optax.losses.ntxent``.
  """
  fn = "ntxent"
  embeddings, labels, where = _check_batch(fn, embeddings, labels, where)
  temperature = _check_scalar(fn, "temperature", temperature)
  return _ntxent_kernel(embeddings, labels, temperature, where,
                        chunk_size=_check_chunk_size(fn, chunk_size))



# ---------------------------------------------------------------------------------------------
# Metric learning, as pytorch-metric-learning (pml) 2.9 computes it
# ---------------------------------------------------------------------------------------------


def _unit(e: Array) -> Array:
  """``torch.nn.functional.normalize(e, dim=-1)`` (pml's ``CosineSimilarity``/``LpDistance``)."""
  norm = jnp.sqrt(jnp.sum(jnp.square(e), axis=-1, keepdims=True))
  return e / jnp.maximum(norm, jnp.asarray(1e-12, e.dtype))


def _euclidean_rows(a: Array, b: Array) -> Array:
  """``|a_i - b_j|`` from ``|a|^2 + |b|^2 - 2 a.b`` (torch.cdist's matmul form).

  Zero gradient at a zero distance (as torch.cdist), never ``inf * 0``.
  """
  sq = (jnp.sum(jnp.square(a), -1)[:, None] + jnp.sum(jnp.square(b), -1)[None, :]
        - 2 * (a @ b.T))
  positive = sq > 0
  return jnp.where(positive, jnp.sqrt(jnp.where(positive, sq, 1)), jnp.zeros((), sq.dtype))


def _avg_non_zero(losses: Array, counts: Array | None = None) -> Array:
  """pml's ``AvgNonZeroReducer``: the mean of the losses above 0; 0 if there are none."""
  if counts is None:
    counts = losses > 0
    losses = jnp.where(counts, losses, jnp.zeros((), losses.dtype))
  total, n = jnp.sum(losses), jnp.sum(counts, dtype=losses.dtype)
  return jnp.where(n > 0, total / jnp.maximum(n, 1), jnp.zeros((), losses.dtype))


@functools.partial(jax.jit, static_argnames=("symmetric", "normalize", "chunk_size"))
def _info_nce_kernel(query, key, temperature, where, *, symmetric, normalize, chunk_size):
  out_dtype = C.output_dtype(query, key)
  dtype = C.compute_dtype(query, key)
  q, k = C.upcast(query, dtype), C.upcast(key, dtype)
  n = q.shape[0]
  valid = jnp.ones((n,), bool) if where is None else where
  if where is not None:
    q, k = C.mask_inputs(where[:, None], 1, q, k)
  if normalize:
    q, k = _unit(q), _unit(k)
  tau = jnp.asarray(temperature, dtype)

  def direction(a, b):
    def block(a_i, valid_i):
      sim = (a_i @ b.T) / tau
      return _masked_logsumexp(sim, valid_i[:, None] & valid[None, :])
    lse = _map_rows(block, (a, valid), chunk_size)
    positive = jnp.sum(a * b, axis=-1) / tau  # s_ii
    return jnp.where(valid, lse - positive, jnp.zeros((), dtype))

  per_pair = direction(q, k)
  if symmetric:
    per_pair = (per_pair + direction(k, q)) / 2
  return (jnp.sum(per_pair) / jnp.sum(valid, dtype=dtype)).astype(out_dtype)


def info_nce(query: ArrayLike, key: ArrayLike, temperature: ArrayLike = 0.07, *,
             symmetric: bool = False, normalize: bool = True,
             where: ArrayLike | None = None, chunk_size: int | None = None) -> Array:
  r"""InfoNCE with in-batch negatives: pair ``i`` of ``(query, key)`` is the positive.

  With :math:`s_{ij} = \cos(q_i, k_j) / \tau` (or :math:`q_i \cdot k_j / \tau`
  when ``normalize=False``), the mean over the pairs of

  .. math:: \ell_i = -\log \frac{e^{s_{ii}}}{\sum_j e^{s_{ij}}}
            = \mathrm{CE}(s_{i,:}, i)

  i.e. ``cross_entropy(q @ k.T / tau, arange(B))``. ``symmetric=True`` averages
  it with the key-to-query direction, ``cross_entropy(k @ q.T / tau, arange(B))``,
  as CLIP trains (its learnt ``logit_scale`` is :math:`1/\tau`). The
  one-directional loss equals pytorch-metric-learning's
  ``NTXentLoss(temperature)(query, arange(B), ref_emb=key, ref_labels=arange(B))``.

  Args:
    query: ``(B, D)`` embeddings.
    key: ``(B, D)`` embeddings; ``key[i]`` is ``query[i]``'s positive, every
      other key a negative.
    temperature: :math:`\tau` (traced: ``vmap`` over it works).
    symmetric: also the key-to-query direction (CLIP's loss), averaged.
    normalize: L2-normalise the embeddings first (``torch.nn.functional.normalize``).
    where: optional ``(B,)`` bool mask of the pairs; a masked pair is neither a
      positive nor a negative and gets exactly-zero gradients.
    chunk_size: compute the ``B x B`` similarity matrix in blocks of
      ``chunk_size`` rows (``lax.map``, rematerialised in the backward pass),
      holding ``chunk_size x B`` at a time.

  Returns:
    The scalar loss, in the embeddings' dtype. Memory: ``B x B`` (the logits),
    ``chunk_size x B`` with ``chunk_size``.

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> q = jnp.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    >>> k = jnp.array([[0.9, 0.1], [0.2, 1.0], [1.0, 0.8]])
    >>> print(f"{float(jaxloss.info_nce(q, k, 0.1, symmetric=True)):.4f}")
    0.1446

  References:
    - van den Oord et al., "Representation Learning with Contrastive Predictive
      Coding", 2018. https://arxiv.org/abs/1807.03748
    - Radford et al., "Learning Transferable Visual Models From Natural Language
      Supervision" (CLIP), ICML 2021. https://arxiv.org/abs/2103.00020
  """
  fn = "info_nce"
  query = C.as_float_array(fn, "query", query)
  key = C.as_float_array(fn, "key", key)
  C.check_ndim(fn, "query", query, 2)
  C.check_same_shape(fn, "query", query, "key", key)
  temperature = _check_scalar(fn, "temperature", temperature)
  where = C.prepare_where(fn, where, query.shape[:1], "one entry per pair")
  return _info_nce_kernel(query, key, temperature, where, symmetric=bool(symmetric),
                          normalize=bool(normalize),
                          chunk_size=_check_chunk_size(fn, chunk_size))


@functools.partial(jax.jit, static_argnames=("chunk_size",))
def _supcon_kernel(embeddings, labels, temperature, where, *, chunk_size):
  out_dtype = C.output_dtype(embeddings)
  dtype = C.compute_dtype(embeddings)
  u, valid = _prepare(embeddings, where, dtype, _unit)
  tau = jnp.asarray(temperature, dtype)
  zero = jnp.zeros((), dtype)

  def block(u_i, labels_i, index_i, valid_i):
    positive, negative = _pair_masks(labels_i, index_i, valid_i, labels, valid)
    sim = (u_i @ u.T) / tau
    denominator = _masked_logsumexp(sim, positive | negative)
    log_prob = sim - jnp.where(jnp.isfinite(denominator), denominator, zero)[:, None]
    n_pos = jnp.sum(positive, axis=1, dtype=dtype)
    mean_log_prob = (jnp.sum(jnp.where(positive, log_prob, zero), axis=1)
                     / (n_pos + jnp.finfo(dtype).tiny))
    return -mean_log_prob, jnp.any(negative, axis=1)

  losses, has_negative = _map_rows(block, (u, labels, jnp.arange(u.shape[0]), valid),
                                   chunk_size)
  # pml: no positive pair or no negative pair in the batch -> 0.
  losses = jnp.where(jnp.any(has_negative), losses, zero)
  return _avg_non_zero(losses).astype(out_dtype)


def supervised_contrastive_loss(embeddings: ArrayLike, labels: ArrayLike,
                                temperature: ArrayLike = 0.1, *,
                                where: ArrayLike | None = None,
                                chunk_size: int | None = None) -> Array:
  r"""Supervised contrastive loss (SupCon), pytorch-metric-learning's ``SupConLoss``.

  With :math:`s_{ij} = \cos(e_i, e_j) / \tau`, :math:`P(i)` the other samples
  with anchor :math:`i`'s label and :math:`A(i)` every other sample,

  .. math:: \ell_i = -\frac{1}{|P(i)|} \sum_{p \in P(i)}
            \log \frac{e^{s_{ip}}}{\sum_{a \in A(i)} e^{s_{ia}}}

  (Khosla et al.'s :math:`\mathcal{L}^{sup}_{out}`), reduced as pml's
  ``AvgNonZeroReducer``: the mean of the :math:`\ell_i` above 0 (an anchor
  without positives has :math:`\ell_i = 0` and is left out), 0 if none is; a
  batch without any negative pair gives 0 (as pml).

  Args:
    embeddings: ``(B, D)`` embeddings (L2-normalised inside, as pml's
      ``CosineSimilarity``).
    labels: ``(B,)`` class labels (any dtype compared with ``==``).
    temperature: :math:`\tau` (traced).
    where: optional ``(B,)`` bool mask; a masked sample is neither an anchor, a
      positive nor a negative, and gets exactly-zero gradients.
    chunk_size: compute the ``B x B`` similarity matrix in blocks of
      ``chunk_size`` anchors (see :func:`ntxent`).

  Returns:
    The scalar loss, in ``embeddings``' dtype. Memory: ``B x B``.

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> e = jnp.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [-0.6, 0.8]])
    >>> loss = jaxloss.supervised_contrastive_loss(e, jnp.array([0, 0, 1, 1]), 0.5)
    >>> print(f"{float(loss):.4f}")
    0.4302

  References:
    - Khosla et al., "Supervised Contrastive Learning", NeurIPS 2020.
      https://arxiv.org/abs/2004.11362
    - pytorch-metric-learning, ``SupConLoss``.
  """
  fn = "supervised_contrastive_loss"
  embeddings, labels, where = _check_batch(fn, embeddings, labels, where)
  temperature = _check_scalar(fn, "temperature", temperature)
  return _supcon_kernel(embeddings, labels, temperature, where,
                        chunk_size=_check_chunk_size(fn, chunk_size))


@functools.partial(jax.jit, static_argnames=("mining", "normalize", "chunk_size"))
def _triplet_kernel(embeddings, labels, margin, where, *, mining, normalize, chunk_size):
  out_dtype = C.output_dtype(embeddings)
  dtype = C.compute_dtype(embeddings)
  e, valid = _prepare(embeddings, where, dtype,
                      _unit if normalize else None)
  margin = jnp.asarray(margin, dtype)
  zero = jnp.zeros((), dtype)

  def hard_block(e_i, labels_i, index_i, valid_i):
    positive, negative = _pair_masks(labels_i, index_i, valid_i, labels, valid)
    d = _euclidean_rows(e_i, e)
    # The hardest positive (farthest) and negative (closest) of each anchor, by index:
    # the gradient reaches those two distances only, as pml's BatchHardMiner.
    p = jnp.argmax(jnp.where(positive, d, -jnp.inf), axis=1)
    q = jnp.argmin(jnp.where(negative, d, jnp.inf), axis=1)
    ap = jnp.take_along_axis(d, p[:, None], axis=1)[:, 0]
    an = jnp.take_along_axis(d, q[:, None], axis=1)[:, 0]
    mined = jnp.any(positive, axis=1) & jnp.any(negative, axis=1)
    return jnp.where(mined, jax.nn.relu(ap - an + margin), zero)

  def all_block(e_i, labels_i, index_i, valid_i):
    positive, negative = _pair_masks(labels_i, index_i, valid_i, labels, valid)
    d = _euclidean_rows(e_i, e)
    violation = d[:, :, None] - d[:, None, :] + margin  # (anchor, positive, negative)
    triplet = positive[:, :, None] & negative[:, None, :]
    loss = jnp.where(triplet, jax.nn.relu(violation), zero)
    return jnp.sum(loss, axis=(1, 2)), jnp.sum(loss > 0, axis=(1, 2), dtype=dtype)

  rows = (e, labels, jnp.arange(e.shape[0]), valid)
  if mining == "hard":
    out = _avg_non_zero(_map_rows(hard_block, rows, chunk_size))
  else:
    total, count = _map_rows(all_block, rows, chunk_size)
    out = _avg_non_zero(total, count)
  return out.astype(out_dtype)


_TRIPLET_ARGS = """
  Args:
    embeddings: ``(B, D)`` embeddings.
    labels: ``(B,)`` class labels (any dtype compared with ``==``).
    margin: :math:`m` (traced), pml's default ``0.05``.
    normalize: L2-normalise the embeddings first (pml's default ``LpDistance``
      does); ``False``: the Euclidean distance of the raw embeddings
      (``LpDistance(normalize_embeddings=False)``).
    where: optional ``(B,)`` bool mask; a masked sample is neither an anchor, a
      positive nor a negative, and gets exactly-zero gradients.
    chunk_size: compute the distances in blocks of ``chunk_size`` anchors
      (see :func:`ntxent`).
"""


def _triplet(fn, mining, embeddings, labels, margin, normalize, where, chunk_size):
  embeddings, labels, where = _check_batch(fn, embeddings, labels, where)
  margin = _check_scalar(fn, "margin", margin)
  return _triplet_kernel(embeddings, labels, margin, where, mining=mining,
                         normalize=bool(normalize), chunk_size=_check_chunk_size(fn, chunk_size))


def batch_hard_triplet_loss(embeddings: ArrayLike, labels: ArrayLike, margin: ArrayLike = 0.05,
                            *, normalize: bool = True, where: ArrayLike | None = None,
                            chunk_size: int | None = None) -> Array:
  r"""Batch-hard triplet loss, pml's ``TripletMarginLoss(margin)`` with ``BatchHardMiner()``.

  For each anchor :math:`a` with at least one positive and one negative in the
  batch, its farthest positive and closest negative (Euclidean distances
  :math:`d`):

  .. math:: \ell_a = \max\big(0,\ \max_{p} d_{ap} - \min_{n} d_{an} + m\big)

  reduced as pml's ``AvgNonZeroReducer`` (the mean of the :math:`\ell_a > 0`;
  0 if none). Hermans et al.'s batch-hard averages over every anchor instead:
  that is this loss times the fraction of anchors with a positive loss.
  {args}
  Returns:
    The scalar loss, in ``embeddings``' dtype. Memory: ``B x B`` distances.

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> e = jnp.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [-0.6, 0.8]])
    >>> loss = jaxloss.batch_hard_triplet_loss(e, jnp.array([0, 1, 0, 1]), margin=0.2)
    >>> print(f"{float(loss):.4f}")
    0.9818

  References:
    - Hermans et al., "In Defense of the Triplet Loss for Person
      Re-Identification", 2017. https://arxiv.org/abs/1703.07737
    - pytorch-metric-learning, ``TripletMarginLoss`` and ``BatchHardMiner``.
  """
  return _triplet("batch_hard_triplet_loss", "hard", embeddings, labels, margin, normalize,
                  where, chunk_size)


def batch_all_triplet_loss(embeddings: ArrayLike, labels: ArrayLike, margin: ArrayLike = 0.05,
                           *, normalize: bool = True, where: ArrayLike | None = None,
                           chunk_size: int | None = None) -> Array:
  r"""Batch-all triplet loss, pml's ``TripletMarginLoss(margin)`` (no miner).

  Every triplet :math:`(a, p, n)` of the batch (:math:`p \ne a` with
  :math:`a`'s label, :math:`n` with another label), Euclidean distances
  :math:`d`:

  .. math:: \ell_{apn} = \max(0,\ d_{ap} - d_{an} + m)

  reduced as pml's ``AvgNonZeroReducer``: the mean of the triplets with
  :math:`\ell_{apn} > 0` (Hermans et al.'s "BA≠0"); 0 if none. Equal to
  ``TripletMarginLoss(margin)`` with ``TripletMarginMiner(margin,
  type_of_triplets='all')`` too (that miner keeps the triplets with
  :math:`d_{an} - d_{ap} \le m`, a superset of the non-zero ones, and the
  reducer drops the rest).
  {args}
  Returns:
    The scalar loss, in ``embeddings``' dtype. Memory: ``B x B x B`` (the
    triplets), ``chunk_size x B x B`` with ``chunk_size``.

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> e = jnp.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [-0.6, 0.8]])
    >>> loss = jaxloss.batch_all_triplet_loss(e, jnp.array([0, 1, 0, 1]), margin=0.2)
    >>> print(f"{float(loss):.4f}")
    0.8944

  References:
    - Hermans et al., "In Defense of the Triplet Loss for Person
      Re-Identification", 2017. https://arxiv.org/abs/1703.07737
    - pytorch-metric-learning, ``TripletMarginLoss``.
  """
  return _triplet("batch_all_triplet_loss", "all", embeddings, labels, margin, normalize,
                  where, chunk_size)


for _f in (batch_hard_triplet_loss, batch_all_triplet_loss):
  _f.__doc__ = _f.__doc__.replace("  {args}\n", _TRIPLET_ARGS + "\n")
del _f


@functools.partial(jax.jit, static_argnames=("chunk_size",))
def _multi_similarity_kernel(embeddings, labels, alpha, beta, base, where, *, chunk_size):
  out_dtype = C.output_dtype(embeddings)
  dtype = C.compute_dtype(embeddings)
  u, valid = _prepare(embeddings, where, dtype, _unit)
  alpha, beta, base = (jnp.asarray(x, dtype) for x in (alpha, beta, base))

  def block(u_i, labels_i, index_i, valid_i):
    positive, negative = _pair_masks(labels_i, index_i, valid_i, labels, valid)
    sim = u_i @ u.T
    zero = jnp.zeros((), dtype)
    # log(1 + sum exp(.)) = logaddexp(0, logsumexp(.)); 0 for an empty set.
    pos = jnp.logaddexp(zero, _masked_logsumexp(alpha * (base - sim), positive)) / alpha
    neg = jnp.logaddexp(zero, _masked_logsumexp(beta * (sim - base), negative)) / beta
    return jnp.where(valid_i, pos + neg, zero)

  losses = _map_rows(block, (u, labels, jnp.arange(u.shape[0]), valid), chunk_size)
  return (jnp.sum(losses) / jnp.sum(valid, dtype=dtype)).astype(out_dtype)


def multi_similarity_loss(embeddings: ArrayLike, labels: ArrayLike, alpha: ArrayLike = 2.0,
                          beta: ArrayLike = 50.0, base: ArrayLike = 0.5, *,
                          where: ArrayLike | None = None,
                          chunk_size: int | None = None) -> Array:
  r"""Multi-similarity loss, pytorch-metric-learning's ``MultiSimilarityLoss``.

  With :math:`S_{ij} = \cos(e_i, e_j)`, the mean over the anchors of

  .. math:: \ell_i = \frac{1}{\alpha}\log\Big(1 + \sum_{p \in P(i)}
            e^{-\alpha (S_{ip} - \lambda)}\Big)
            + \frac{1}{\beta}\log\Big(1 + \sum_{n \in N(i)} e^{\beta (S_{in} - \lambda)}\Big)

  (:math:`\lambda` = ``base``; an empty set contributes 0). The pair mining of
  the paper is pml's separate ``MultiSimilarityMiner``: not applied here, as
  ``MultiSimilarityLoss`` alone.

  Args:
    embeddings: ``(B, D)`` embeddings (L2-normalised inside).
    labels: ``(B,)`` class labels (any dtype compared with ``==``).
    alpha: the positives' scale :math:`\alpha` (traced).
    beta: the negatives' scale :math:`\beta` (traced).
    base: the similarity offset :math:`\lambda` (traced).
    where: optional ``(B,)`` bool mask; a masked sample is neither an anchor, a
      positive nor a negative, and gets exactly-zero gradients.
    chunk_size: compute the ``B x B`` similarity matrix in blocks of
      ``chunk_size`` anchors (see :func:`ntxent`).

  Returns:
    The scalar loss, in ``embeddings``' dtype. Memory: ``B x B``.

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> e = jnp.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [-0.6, 0.8]])
    >>> print(f"{float(jaxloss.multi_similarity_loss(e, jnp.array([0, 0, 1, 1]))):.4f}")
    0.2688

  References:
    - Wang et al., "Multi-Similarity Loss with General Pair Weighting for Deep
      Metric Learning", CVPR 2019. https://arxiv.org/abs/1904.06627
    - pytorch-metric-learning, ``MultiSimilarityLoss``.
  """
  fn = "multi_similarity_loss"
  embeddings, labels, where = _check_batch(fn, embeddings, labels, where)
  alpha, beta, base = (_check_scalar(fn, n, x) for n, x in
                       (("alpha", alpha), ("beta", beta), ("base", base)))
  return _multi_similarity_kernel(embeddings, labels, alpha, beta, base, where,
                                  chunk_size=_check_chunk_size(fn, chunk_size))
