r"""Self-supervised (contrastive) losses: NT-Xent, as optax's ``ntxent``.

A batch of embeddings with group labels: samples with the same label are
positive pairs, every other sample is a negative. Similarities are cosines
scaled by a temperature. Another contrastive loss (InfoNCE, supervised
contrastive) belongs here, on the same similarity matrix
(:func:`cosine_similarity_matrix`).
"""

from __future__ import annotations

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


@jax.jit
def _ntxent_kernel(embeddings, labels, temperature, where):
  out_dtype = C.output_dtype(embeddings)
  dtype = C.compute_dtype(embeddings)
  e = C.upcast(embeddings, dtype)
  n = e.shape[0]
  same = labels[:, None] == labels[None, :]
  valid = jnp.ones((n, n), bool)
  if where is not None:
    (e,) = C.mask_inputs(where[:, None], 1, e)  # a unit-norm stand-in: finite, zero gradient
    valid = where[:, None] & where[None, :]
  positive = same & ~jnp.eye(n, dtype=bool) & valid
  negative = ~same & valid
  eps = jnp.finfo(embeddings.dtype).eps  # optax's clamp, in the input's precision
  sim = cosine_similarity_matrix(e, eps) / jnp.asarray(temperature, dtype)
  # -log(e^{s_ij} / (e^{s_ij} + sum_{k negative} e^{s_ik})) for each positive (i, j),
  # as logaddexp(s_ij, logsumexp_negatives_i) - s_ij: no overflow, and 0 for an
  # anchor without negatives.
  neg_lse = jax.nn.logsumexp(jnp.where(negative, sim, -jnp.inf), axis=1, keepdims=True,
                             where=negative)
  pair = jnp.logaddexp(sim, neg_lse) - sim
  total = jnp.sum(jnp.where(positive, pair, jnp.zeros((), dtype)))
  return (total / jnp.sum(positive, dtype=dtype)).astype(out_dtype)


def ntxent(embeddings: ArrayLike, labels: ArrayLike, temperature: ArrayLike = 0.07, *,
           where: ArrayLike | None = None) -> Array:
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

  Returns:
    The scalar loss, in ``embeddings``' dtype.

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
  embeddings = C.as_float_array(fn, "embeddings", embeddings)
  C.check_ndim(fn, "embeddings", embeddings, 2)
  labels = jnp.asarray(labels)
  C.check_shape(fn, "labels", labels, embeddings.shape[:1], "one label per embedding")
  temperature = jnp.asarray(temperature)
  if temperature.ndim:
    raise ValueError(f"{fn}: `temperature` must be a scalar, got shape "
                     f"{tuple(temperature.shape)}.")
  where = C.prepare_where(fn, where, embeddings.shape[:1], "one entry per embedding")
  return _ntxent_kernel(embeddings, labels, temperature, where)

