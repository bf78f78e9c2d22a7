"""The fixed losses of the examples' equal-compute baselines, as one loss of a 2-number theta.

``theta = [family, parameter]``: the engine's strategies hand every copy a float vector, so a
grid of *different* losses (``jaxloss.search.strategies.Grid(family_thetas(...))``) is a grid
of such vectors, and :func:`family_loss` picks the loss with ``lax.switch`` (under the
engine's ``vmap`` over copies every branch is computed and one selected: cheap next to the
model). Every family is the library's own loss on the plain logits ``scale * cosine`` (with
the eq. 4 scale ``|W_j| |x_i|``, the logits of a bias-free linear head):

=========  ===================================================  ========================
family     loss                                                 parameter
=========  ===================================================  ========================
``ls``     ``jaxloss.cross_entropy(label_smoothing=eps)``       eps (0: cross-entropy)
``poly1``  ``jaxloss.poly_loss_cross_entropy`` (Leng et al.)    epsilon
``focal``  ``jaxloss.softmax_focal_loss`` (Lin et al.)          gamma
``gce``    ``jaxloss.generalized_cross_entropy`` (Zhang et al.)  q
``sce``    ``jaxloss.symmetric_cross_entropy`` (Wang et al.)    alpha (beta 1, A -4)
=========  ===================================================  ========================
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

import jaxloss

FAMILIES = ("ls", "poly1", "focal", "gce", "sce")

#: The default grid of 8 losses (names and ``(family, parameter)``): cross-entropy, label
#: smoothing 0.1 and 0.2 (airbench's), Poly-1 (epsilon 1), focal (gamma 1), GCE (q 0.7, the
#: paper's, and 0.4) and SCE (alpha 0.1, beta 1: the paper's CIFAR-10 setting).
DEFAULT_GRID = (("ce", "ls", 0.0), ("ls 0.1", "ls", 0.1), ("ls 0.2", "ls", 0.2),
                ("poly1 1", "poly1", 1.0), ("focal 1", "focal", 1.0), ("gce 0.7", "gce", 0.7),
                ("gce 0.4", "gce", 0.4), ("sce 0.1", "sce", 0.1))


def family_theta(family: str, parameter: float) -> list[float]:
  """The theta ``[index of family, parameter]`` of one loss."""
  if family not in FAMILIES:
    raise ValueError(f"family must be one of {FAMILIES}, got {family!r}.")
  return [float(FAMILIES.index(family)), float(parameter)]


def family_grid(num: int) -> tuple[list[str], list[list[float]]]:
  """``num`` entries of :data:`DEFAULT_GRID` (cycled): their names and thetas."""
  chosen = [DEFAULT_GRID[i % len(DEFAULT_GRID)] for i in range(num)]
  return [name for name, _, _ in chosen], [family_theta(f, p) for _, f, p in chosen]


def _branches():
  def ls(logits, labels, eps):
    return jaxloss.cross_entropy(logits, labels, label_smoothing=eps)

  def poly1(logits, labels, epsilon):
    one_hot = jax.nn.one_hot(labels, logits.shape[-1], dtype=logits.dtype)
    return jnp.mean(jaxloss.poly_loss_cross_entropy(logits, one_hot, epsilon=epsilon))

  def focal(logits, labels, gamma):
    return jaxloss.softmax_focal_loss(logits, labels, gamma=gamma)

  def gce(logits, labels, q):
    return jaxloss.generalized_cross_entropy(logits, labels, q=q)

  def sce(logits, labels, alpha):
    return jaxloss.symmetric_cross_entropy(logits, labels, alpha=alpha, beta=1.0)

  return (ls, poly1, focal, gce, sce)


def family_loss(cosine, labels, theta, *, scale):
  """The mean loss of family ``theta[0]`` with parameter ``theta[1]`` on ``scale * cosine``.

  The signature of ``jaxloss.amlfs_loss`` (so a task takes either), for ``theta`` of 2
  numbers (:func:`family_theta`).
  """
  theta = jnp.asarray(theta)
  if theta.shape != (2,):
    raise ValueError(f"family_loss: `theta` must be [family, parameter], got shape "
                     f"{theta.shape}.")
  logits = scale * cosine
  index = jnp.clip(jnp.round(theta[0]), 0, len(FAMILIES) - 1).astype(jnp.int32)
  parameter = theta[1].astype(logits.dtype)
  return jax.lax.switch(index, _branches(), logits, labels, parameter)
