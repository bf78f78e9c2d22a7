r"""The Gaussian search policy over the loss parameters ``theta`` (AM-LFS eq. 19-20).

``theta ~ N(mu, sigma^2 I)`` with a learned mean ``mu`` and a FIXED standard deviation
``sigma`` (the paper's 0.2 is a standard deviation, not a variance). After every epoch
the mean moves along the REINFORCE estimate of the gradient of the expected reward,

.. math::

  \hat g = \frac{1}{B} \sum_{i=1}^{B} R_i \, \nabla_\mu \log \mathcal N(\theta_i; \mu, \sigma^2 I)
          = \frac{1}{B} \sum_{i=1}^{B} R_i \, \frac{\theta_i - \mu}{\sigma^2},

with the rewards ``R_i`` normalised to zero mean and unit variance across the population.
The update is an optax update on ``mu`` whose *gradient* is ``-g_hat`` (optax minimises),
so any ``optax.GradientTransformation`` can drive it; the paper uses Adam, lr 0.05.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

Array = jax.Array

DEFAULT_SIGMA = 0.2
DEFAULT_LEARNING_RATE = 0.05


class PolicyState(NamedTuple):
  """The policy's learned state: the mean ``mu`` and the optax state of its optimiser."""
  mu: Array
  opt_state: Any


@functools.cache
def default_mu_optimizer() -> optax.GradientTransformation:
  """The paper's optimiser for ``mu``: Adam with learning rate 0.05 (one shared instance)."""
  return optax.adam(DEFAULT_LEARNING_RATE)


def check_sigma(sigma: float, where: str = "GaussianPolicy") -> None:
  """``sigma`` must be a finite positive real number (a standard deviation)."""
  if not (isinstance(sigma, numbers.Real) and not isinstance(sigma, (bool, np.bool_))
          and math.isfinite(sigma) and sigma > 0):
    raise ValueError(f"{where}: `sigma` must be a positive finite float (a standard "
                     f"deviation), got {sigma!r}.")


_check_sigma = check_sigma


def sample(key: Array, mu: Array, sigma: float, num: int) -> Array:
  """Draws ``num`` samples ``theta_i = mu + sigma * eps_i``, ``eps_i ~ N(0, I)``.

  Returns an array of shape ``(num,) + mu.shape`` in ``mu``'s dtype.
  """
  mu = jnp.asarray(mu)
  # One flat draw: multi-dimensional threefry draws compile several times slower on CPU.
  eps = jax.random.normal(key, (num * mu.size,), dtype=mu.dtype).reshape((num,) + mu.shape)
  return mu + sigma * eps


def log_prob(theta: Array, mu: Array, sigma: float) -> Array:
  """Log-density of ``N(mu, sigma^2 I)`` at ``theta`` (leading batch axes allowed).

  ``-0.5 * |theta - mu|^2 / sigma^2 - D * log(sigma) - D/2 * log(2 pi)``, summed over the
  ``mu.ndim`` trailing axes; ``D`` is ``mu.size``.
  """
  mu = jnp.asarray(mu)
  axes = tuple(range(-mu.ndim, 0))
  z = (theta - mu) / sigma
  dim = mu.size
  return (-0.5 * jnp.sum(z * z, axis=axes) - dim * math.log(sigma)
          - 0.5 * dim * math.log(2 * math.pi))


def grad_log_prob(theta: Array, mu: Array, sigma: float) -> Array:
  """``grad_mu log N(theta; mu, sigma^2 I) = (theta - mu) / sigma^2`` (per sample).

  Statistics calls this the *score function*; it is named for what it computes so that it
  is not confused with a reward's ``'score'`` (``evaluate_dataset``, monitored splits).
  """
  return (theta - mu) / (sigma * sigma)


#: The older name of :func:`grad_log_prob` (kept: it is public).
score = grad_log_prob


def normalize_rewards(rewards: Array, valid: Array | None = None) -> Array:
  """Normalises rewards to zero mean and unit variance over the ``valid`` entries.

  The mean and the (population, ``ddof=0``) standard deviation are computed over the valid
  (finite) entries only, so a diverged copy cannot corrupt the others. If every valid
  reward is equal (standard deviation 0), their normalised rewards are 0.

  An invalid entry gets ``min(-1, min of the valid normalised rewards)``: never better than
  any valid copy and at least one standard deviation below their mean, so REINFORCE pushes
  ``mu`` away from the ``theta`` that made a copy diverge. With no valid entry, every
  normalised reward is 0 (no update direction).

  Args:
    rewards: ``(B,)`` rewards (non-finite values allowed where ``valid`` is False).
    valid: ``(B,)`` booleans; default: ``isfinite(rewards)``.
  Returns:
    ``(B,)`` normalised rewards in ``rewards``' floating dtype.
  """
  rewards = jnp.asarray(rewards)
  if not jnp.issubdtype(rewards.dtype, jnp.floating):
    rewards = rewards.astype(jnp.float32)
  finite = jnp.isfinite(rewards)
  valid = finite if valid is None else jnp.logical_and(jnp.asarray(valid, bool), finite)
  safe = jnp.where(valid, rewards, 0)
  count = jnp.sum(valid)
  n = jnp.maximum(count, 1).astype(rewards.dtype)
  mean = jnp.sum(safe) / n
  centred = jnp.where(valid, safe - mean, 0)
  std = jnp.sqrt(jnp.sum(centred * centred) / n)
  z = jnp.where(std > 0, centred / jnp.where(std > 0, std, 1), 0)
  worst_valid = jnp.min(jnp.where(valid, z, jnp.inf))
  worst = jnp.where(count > 0, jnp.minimum(worst_valid, -1), 0).astype(rewards.dtype)
  return jnp.where(valid, z, worst)


def reinforce_ascent(thetas: Array, mu: Array, rewards: Array, sigma: float) -> Array:
  """The REINFORCE estimate ``(1/B) sum_i R_i (theta_i - mu) / sigma^2`` (ascent direction).

  With raw rewards it is an unbiased estimate of ``grad_mu E[R(theta)]``; the search uses
  it with normalised rewards (:func:`normalize_rewards`).
  """
  rewards = jnp.asarray(rewards, dtype=thetas.dtype)
  s = grad_log_prob(thetas, mu, sigma)
  weights = rewards.reshape(rewards.shape + (1,) * (s.ndim - 1))
  return jnp.mean(weights * s, axis=0)


@dataclasses.dataclass(frozen=True)
class GaussianPolicy:
  """``N(mu, sigma^2 I)`` over ``theta`` with ``mu`` trained by REINFORCE through optax.

  Attributes:
    sigma: the fixed standard deviation (default 0.2, the paper's value).
    optimizer: any ``optax.GradientTransformation`` for ``mu`` (default ``adam(0.05)``). It
      receives the NEGATED REINFORCE ascent direction as the gradient, so the usual
      minimising optax optimisers ascend the reward.
  """
  sigma: float = DEFAULT_SIGMA
  optimizer: optax.GradientTransformation = dataclasses.field(
      default_factory=default_mu_optimizer)

  def __post_init__(self):
    _check_sigma(self.sigma)
    if not (hasattr(self.optimizer, "init") and hasattr(self.optimizer, "update")):
      raise ValueError("GaussianPolicy: `optimizer` must be an optax.GradientTransformation, "
                       f"got {type(self.optimizer).__name__}.")

  def init(self, mu: Array) -> PolicyState:
    mu = jnp.asarray(mu)
    if not jnp.issubdtype(mu.dtype, jnp.floating):
      mu = mu.astype(jnp.float32)
    return PolicyState(mu=mu, opt_state=self.optimizer.init(mu))

  # ---------------------------------------------------------------- ask / tell
  # The strategy interface of the outer step (after evosax): ``init``, ``ask``, ``tell``,
  # ``mean``. All pure and jit-able; the state is a pytree (here a :class:`PolicyState`).

  def ask(self, key: Array, state: PolicyState, num: int) -> Array:
    """``num`` thetas ``mu + sigma * eps`` (shape ``(num,) + mu.shape``)."""
    return sample(key, state.mu, self.sigma, num)

  def tell(self, state: PolicyState, thetas: Array, rewards: Array,
           valid: Array) -> tuple[PolicyState, dict]:
    """One REINFORCE step on ``mu`` from the copies' ``rewards``.

    The rewards are normalised ONCE (:func:`normalize_rewards`: over the ``valid`` copies,
    invalid copies get the worst value) and returned as ``info['normalized_rewards']``.
    """
    normalized = normalize_rewards(rewards, valid)
    grad = -reinforce_ascent(thetas, state.mu, normalized, self.sigma)
    return self._apply(state, grad), {"normalized_rewards": normalized}

  def mean(self, state: PolicyState) -> Array:
    """The current mean ``mu`` (what records and plots show)."""
    return state.mu

  def spec(self) -> str:
    """What a compiled step and a resumed run depend on (see ``jaxloss.search.fingerprint``)."""
    from jaxloss.search.fingerprint import describe  # pylint: disable=import-outside-toplevel
    return f"GaussianPolicy(sigma={self.sigma!r}, optimizer={describe(self.optimizer)})"

  def _apply(self, state: PolicyState, grad: Array) -> PolicyState:
    updates, opt_state = self.optimizer.update(grad, state.opt_state, state.mu)
    mu = optax.apply_updates(state.mu, updates)
    return PolicyState(mu=mu.astype(state.mu.dtype), opt_state=opt_state)

  # ------------------------------------------------------------ older interface

  def sample(self, key: Array, mu: Array, num: int) -> Array:
    return sample(key, mu, self.sigma, num)

  def log_prob(self, theta: Array, mu: Array) -> Array:
    return log_prob(theta, mu, self.sigma)

  def gradient(self, thetas: Array, mu: Array, rewards: Array,
               valid: Array | None = None) -> Array:
    """The optax gradient for ``mu``: ``-reinforce_ascent`` with normalised rewards."""
    normalized = normalize_rewards(rewards, valid)
    return -reinforce_ascent(thetas, mu, normalized, self.sigma)

  def update(self, state: PolicyState, thetas: Array, rewards: Array,
             valid: Array | None = None) -> PolicyState:
    """One optax step on ``mu`` from the population's ``thetas`` and ``rewards``."""
    return self._apply(state, self.gradient(thetas, state.mu, rewards, valid))
