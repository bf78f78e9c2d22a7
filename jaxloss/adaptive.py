"""Adaptive softmax (Grave et al.): ``torch.nn.AdaptiveLogSoftmaxWithLoss`` in JAX.

The classes ``0 .. n_classes - 1`` (sorted by decreasing frequency) are cut at
``cutoffs = [c_1, ..., c_k]`` into a *shortlist* ``[0, c_1)`` and ``k`` tail
clusters ``[c_i, c_{i+1})`` (``c_{k+1} = n_classes``). The *head* is a linear
layer over the shortlist plus one logit per cluster; tail cluster ``i`` is a
projection to ``floor(in_features / div_value**i)`` features followed by a linear
layer over its classes. For a shortlist class, ``log p(y|x) = log_softmax(head)[y]``;
for a class of cluster ``i``,

.. math::
   \\log p(y \\mid x) = \\log \\operatorname{softmax}(h(x))_{c_1 + i - 1}
                     + \\log \\operatorname{softmax}(t_i(x))_{y - c_i}.

Functional core (no Flax needed): :func:`adaptive_log_softmax_with_loss`
(``(output, loss)``, torch's ``forward``), :func:`adaptive_log_prob` (all classes,
torch's ``log_prob``) and :func:`adaptive_predict` (torch's ``predict``). The
parameters are arrays in torch's layout: ``head_weight`` ``(c_1 + k, in_features)``,
optional ``head_bias``, and per cluster ``(projection (hsz_i, in_features),
output (osz_i, hsz_i))`` — torch's ``head.weight``, ``head.bias``,
``tail.{i}.0.weight`` and ``tail.{i}.1.weight``.

``AdaptiveLogSoftmaxWithLoss`` (``jaxloss.adaptive.AdaptiveLogSoftmaxWithLoss``,
also ``jaxloss.nn.AdaptiveLogSoftmaxWithLoss``) is a ``flax.linen`` module whose
parameters are named exactly as torch's ``state_dict()`` keys, with torch's
shapes and initialisation, so ``{"params": {k: v.numpy() for k, v in
torch_module.state_dict().items()}}`` runs it with torch's weights. Flax is
imported only when that class is first accessed: ``import jaxloss`` never imports
it.

Shapes under ``jit``: torch evaluates a cluster only on the rows whose target lies
in it, a data-dependent shape. Here every cluster is evaluated on every row and
the rows are selected, which gives the same values and gradients with static
shapes. Each cluster's log-softmax goes through
:func:`jaxloss.linear_cross_entropy`, so neither the head's nor a cluster's
``(N, classes)`` logits are held (``chunk_size`` sets the chunk). ``log_prob``
and ``predict`` build the full ``(N, n_classes)`` log-probabilities, as torch's do.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxloss import _common as C
from jaxloss.linear import linear_cross_entropy

Array = C.Array
ArrayLike = C.ArrayLike


class ASMOutput(NamedTuple):
  """torch's ``_ASMoutput``: the target log-probabilities and the mean NLL."""
  output: Array
  loss: Array


# ----------------------------------------------------------------------------
# Validation
# ----------------------------------------------------------------------------


def check_cutoffs(fn: str, cutoffs: Sequence[int], n_classes: int) -> list[int]:
  """torch's constructor check; returns the cutoffs with ``n_classes`` appended."""
  cutoffs = list(cutoffs)
  if not cutoffs:
    raise ValueError(f"{fn}: `cutoffs` should be a sequence of length larger than 0.")
  if (cutoffs != sorted(cutoffs) or min(cutoffs) <= 0 or max(cutoffs) > n_classes - 1
      or len(set(cutoffs)) != len(cutoffs) or any(int(c) != c for c in cutoffs)):
    raise ValueError(
        f"{fn}: `cutoffs` should be a sequence of unique, positive integers sorted in an "
        f"increasing order, where each value is between 1 and n_classes-1 "
        f"(n_classes={n_classes}), got {cutoffs}.")
  return [int(c) for c in cutoffs] + [n_classes]


def _check_params(fn, head_weight, head_bias, tail, cutoffs, input=None):
  """Validates the parameters; ``in_features`` is ``input``'s last axis when it has one.

  Taking it from ``input`` (not from ``head_weight``) makes a wrong
  ``head_weight`` the argument an error names, rather than every ``tail``
  projection that disagrees with it.
  """
  head_weight = C.as_float_array(fn, "head_weight", head_weight)
  C.check_ndim(fn, "head_weight", head_weight, 2)
  tail = [tuple(C.as_float_array(fn, f"tail[{i}]", w) for w in pair)
          for i, pair in enumerate(tail)]
  if any(len(pair) != 2 for pair in tail):
    raise ValueError(f"{fn}: `tail` must hold one (projection, output) pair per cluster.")
  cutoffs = list(cutoffs)
  if len(tail) != len(cutoffs):
    raise ValueError(
        f"{fn}: `tail` must hold one (projection, output) pair per cutoff "
        f"({len(cutoffs)}), got {len(tail)}.")
  n_classes = cutoffs[-1] + (tail[-1][1].shape[0] if tail else 0)
  bounds = check_cutoffs(fn, cutoffs, n_classes)
  in_features = head_weight.shape[1]
  why = "the shortlist plus one logit per cluster, by in_features"
  if input is not None and jnp.ndim(input) >= 1:
    in_features = jnp.shape(input)[-1]
    why += ", `input`'s last axis"
  C.check_shape(fn, "head_weight", head_weight, (bounds[0] + len(tail), in_features), why)
  if head_bias is not None:
    head_bias = C.as_float_array(fn, "head_bias", head_bias)
    C.check_shape(fn, "head_bias", head_bias, (head_weight.shape[0],))
  for i, (proj, out) in enumerate(tail):
    C.check_ndim(fn, f"tail[{i}][0]", proj, 2)
    C.check_shape(fn, f"tail[{i}][0]", proj, (proj.shape[0], in_features),
                  "(hidden, in_features)")
    C.check_shape(fn, f"tail[{i}][1]", out, (bounds[i + 1] - bounds[i], proj.shape[0]),
                  "(cluster size, hidden)")
  return head_weight, head_bias, tail, bounds


def _check_input(fn, input, in_features, batched_only=False):
  input = C.as_float_array(fn, "input", input)
  ndims = (2,) if batched_only else (1, 2)
  C.check_ndim(fn, "input", input, ndims)
  if input.shape[-1] != in_features:
    raise ValueError(
        f"{fn}: `input` must have in_features={in_features} as its last axis, got shape "
        f"{tuple(input.shape)}.")
  return input


# ----------------------------------------------------------------------------
# Functional core
# ----------------------------------------------------------------------------


def adaptive_log_softmax_with_loss(input: ArrayLike, target: ArrayLike,
                                   head_weight: ArrayLike,
                                   tail: Sequence[tuple[ArrayLike, ArrayLike]],
                                   cutoffs: Sequence[int], *,
                                   head_bias: ArrayLike | None = None,
                                   chunk_size: int | None = None) -> ASMOutput:
  r"""The forward pass of ``torch.nn.AdaptiveLogSoftmaxWithLoss``: ``(output, loss)``.

  .. math::
     \mathrm{output}_n = \log p(y_n \mid x_n), \qquad
     \mathrm{loss} = -\frac{1}{N} \sum_n \mathrm{output}_n

  with :math:`\log p` the adaptive softmax of the module docstring.

  Args:
    input: ``(N, in_features)`` or ``(in_features,)``.
    target: integer classes ``(N,)`` or ``()`` in ``[0, n_classes)``, sorted by
      frequency (class 0 the most frequent).
    head_weight: ``(cutoffs[0] + len(cutoffs), in_features)``, torch's
      ``head.weight``.
    tail: per cluster ``(projection, output)`` of shapes ``(hsz_i, in_features)``
      and ``(cutoffs[i+1] - cutoffs[i], hsz_i)``: torch's ``tail.{i}.0.weight``
      and ``tail.{i}.1.weight``. ``n_classes`` is ``cutoffs[-1]`` plus the last
      cluster's size.
    cutoffs: torch's constructor ``cutoffs`` (without ``n_classes``).
    head_bias: optional ``(head_size,)``, torch's ``head.bias``.
    chunk_size: classes per chunk of the log-softmaxes (see
      :func:`jaxloss.linear_cross_entropy`).

  Returns:
    ``ASMOutput(output, loss)``: ``output`` of ``target``'s shape, ``loss`` a
    scalar, in the input dtype. A target outside ``[0, n_classes)`` gives
    ``nan`` (torch raises) and is reported under ``checkify.checkify``.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxloss.adaptive import adaptive_log_softmax_with_loss
    >>> x = jnp.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    >>> head = jnp.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])   # 2 shortlist + 1 cluster
    >>> tail = [(jnp.array([[1.0, -1.0]]), jnp.array([[1.0], [-1.0], [0.0]]))]
    >>> out = adaptive_log_softmax_with_loss(x, jnp.array([0, 3, 4]), head, tail, [2])
    >>> print(out.output.round(4), f"{out.loss:.4f}")
    [-0.6803 -1.5879 -2.1972] 1.4885

  References:
    Grave, Joulin, Cissé, Grangier and Jégou, "Efficient softmax approximation for
    GPUs", ICML 2017 (https://arxiv.org/abs/1609.04309).
  """
  fn = "adaptive_log_softmax_with_loss"
  head_weight, head_bias, tail, bounds = _check_params(fn, head_weight, head_bias, tail,
                                                       cutoffs, input)
  input = _check_input(fn, input, head_weight.shape[1])
  target = C.as_int_array(fn, "target", target)
  expected = tuple(input.shape[:-1])
  if target.shape != expected:
    raise ValueError(
        f"{fn}: `target` must have shape {expected} for `input` of shape "
        f"{tuple(input.shape)} (one class per row; () for a 1-D input), got "
        f"{tuple(target.shape)}.")
  batched = input.ndim == 2
  x = input if batched else input[None]
  t = (target if batched else target[None]).astype(jnp.int32)
  n_classes = bounds[-1]
  C.check_index_range(fn, "target", t, n_classes)
  valid = (t >= 0) & (t < n_classes)
  shortlist = bounds[0]

  # The head's class: the target itself in the shortlist, else its cluster's logit.
  head_target = jnp.where(t < shortlist, t, shortlist)
  for i in range(1, len(bounds)):
    head_target = jnp.where(t >= bounds[i], shortlist + i, head_target)
  head_target = jnp.where(valid, head_target, 0)
  lce = functools.partial(linear_cross_entropy, reduction="none", chunk_size=chunk_size)
  output = -lce(x, head_weight, head_target, linear_bias=head_bias)
  for i, (proj, out) in enumerate(tail):
    low, high = bounds[i], bounds[i + 1]
    rows = (t >= low) & (t < high)
    hidden = x @ proj.T.astype(x.dtype)
    relative = jnp.where(rows, t - low, 0)
    output = output - lce(hidden, out, relative, where=rows)
  output = C.nan_where(~valid, output)  # the nan contract: value and gradients
  loss = jnp.mean(-output)
  return ASMOutput(output if batched else output[0], loss)


def _full_log_prob(x, head_weight, head_bias, tail, bounds):
  head = x @ head_weight.T
  if head_bias is not None:
    head = head + head_bias
  head_logprob = jax.nn.log_softmax(head.astype(C.compute_dtype(head)), axis=1)
  shortlist = bounds[0]
  parts = [head_logprob[:, :shortlist]]
  for i, (proj, out) in enumerate(tail):
    cluster = (x @ proj.T) @ out.T
    cluster_logprob = jax.nn.log_softmax(cluster.astype(head_logprob.dtype), axis=1)
    parts.append(cluster_logprob + head_logprob[:, shortlist + i][:, None])
  return jnp.concatenate(parts, axis=1), head


def adaptive_log_prob(input: ArrayLike, head_weight: ArrayLike,
                      tail: Sequence[tuple[ArrayLike, ArrayLike]], cutoffs: Sequence[int], *,
                      head_bias: ArrayLike | None = None) -> Array:
  """Log-probabilities of all ``n_classes`` classes, torch's ``log_prob``: ``(N, n_classes)``.

  Args as :func:`adaptive_log_softmax_with_loss`; ``input`` is ``(N, in_features)``.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxloss.adaptive import adaptive_log_prob
    >>> head = jnp.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
    >>> tail = [(jnp.array([[1.0, -1.0]]), jnp.array([[1.0], [-1.0], [0.0]]))]
    >>> logp = adaptive_log_prob(jnp.array([[1.0, 0.0]]), head, tail, [2])
    >>> print(logp.shape, f"{jnp.exp(logp).sum():.4f}")
    (1, 5) 1.0000
  """
  fn = "adaptive_log_prob"
  head_weight, head_bias, tail, bounds = _check_params(fn, head_weight, head_bias, tail,
                                                       cutoffs, input)
  x = _check_input(fn, input, head_weight.shape[1], batched_only=True)
  logp, _ = _full_log_prob(x, head_weight, head_bias, tail, bounds)
  return logp.astype(C.output_dtype(x, head_weight))


def adaptive_predict(input: ArrayLike, head_weight: ArrayLike,
                     tail: Sequence[tuple[ArrayLike, ArrayLike]], cutoffs: Sequence[int], *,
                     head_bias: ArrayLike | None = None) -> Array:
  """The most probable class of each row, torch's ``predict``: ``(N,)`` int32.

  The head's argmax where it is a shortlist class (then no tail class can be more
  probable), else the argmax of the full log-probabilities, as torch decides.
  Every row's full log-probabilities are computed (static shapes under ``jit``).

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxloss.adaptive import adaptive_predict
    >>> head = jnp.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
    >>> tail = [(jnp.array([[1.0, -1.0]]), jnp.array([[1.0], [-1.0], [0.0]]))]
    >>> print(adaptive_predict(jnp.array([[3.0, 0.0], [2.0, 2.5]]), head, tail, [2]))
    [0 1]
  """
  fn = "adaptive_predict"
  head_weight, head_bias, tail, bounds = _check_params(fn, head_weight, head_bias, tail,
                                                       cutoffs, input)
  x = _check_input(fn, input, head_weight.shape[1], batched_only=True)
  logp, head = _full_log_prob(x, head_weight, head_bias, tail, bounds)
  head_best = jnp.argmax(head, axis=1).astype(jnp.int32)
  return jnp.where(head_best < bounds[0], head_best,
                   jnp.argmax(logp, axis=1).astype(jnp.int32))


# ----------------------------------------------------------------------------
# The Flax module (flax imported on first access)
# ----------------------------------------------------------------------------


def tail_sizes(in_features: int, n_classes: int, cutoffs: Sequence[int],
               div_value: float = 4.0) -> list[tuple[int, int]]:
  """``(hidden, cluster size)`` per cluster, as torch computes them."""
  bounds = check_cutoffs("AdaptiveLogSoftmaxWithLoss", cutoffs, n_classes)
  return [(int(in_features // (div_value ** (i + 1))), bounds[i + 1] - bounds[i])
          for i in range(len(bounds) - 1)]


def _torch_linear_init(fan_in: int):
  """torch.nn.Linear's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (weight and bias)."""
  bound = 1.0 / fan_in ** 0.5 if fan_in > 0 else 0.0

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)

  return init


@functools.cache
def _flax_module() -> type:
  import flax.linen as nn  # noqa: PLC0415  (flax is optional: imported on first use)

  class AdaptiveLogSoftmaxWithLoss(nn.Module):
    """``torch.nn.AdaptiveLogSoftmaxWithLoss`` as a ``flax.linen`` module.

    Parameters are named as torch's ``state_dict()`` keys (``head.weight``,
    ``head.bias``, ``tail.{i}.0.weight``, ``tail.{i}.1.weight``) with torch's
    shapes and default initialisation. ``__call__(input, target)`` returns
    ``ASMOutput(output, loss)``; ``log_prob`` and ``predict`` are torch's methods
    (``module.apply(variables, x, method="log_prob")``). See
    :mod:`jaxloss.adaptive` for the semantics.

    Attributes:
      in_features: size of each input row.
      n_classes: number of classes.
      cutoffs: increasing class cutoffs in ``[1, n_classes - 1]``.
      div_value: cluster ``i``'s projection has ``in_features // div_value**i``
        features.
      head_bias: whether the head has a bias.
      chunk_size: classes per chunk of the loss's log-softmaxes (beyond torch).
      param_dtype: dtype of the parameters.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from jaxloss.adaptive import AdaptiveLogSoftmaxWithLoss
      >>> asm = AdaptiveLogSoftmaxWithLoss(8, 20, cutoffs=(5, 12), div_value=2.0)
      >>> x, y = jnp.ones((3, 8)), jnp.array([0, 7, 19])
      >>> variables = asm.init(jax.random.key(0), x, y)
      >>> sorted(variables["params"])
      ['head.weight', 'tail.0.0.weight', 'tail.0.1.weight', 'tail.1.0.weight', 'tail.1.1.weight']
      >>> out = asm.apply(variables, x, y)
      >>> print(out.output.shape, out.loss.shape)
      (3,) ()
      >>> print(asm.apply(variables, x, method="log_prob").shape)
      (3, 20)
    """

    in_features: int
    n_classes: int
    cutoffs: Sequence[int]
    div_value: float = 4.0
    head_bias: bool = False
    chunk_size: int | None = None
    param_dtype: Any = jnp.float32

    def setup(self):
      bounds = check_cutoffs(type(self).__name__, self.cutoffs, self.n_classes)
      d = self.in_features
      head_size = bounds[0] + len(bounds) - 1
      self.head_weight = self.param("head.weight", _torch_linear_init(d), (head_size, d),
                                    self.param_dtype)
      self.head_bias_ = (self.param("head.bias", _torch_linear_init(d), (head_size,),
                                    self.param_dtype) if self.head_bias else None)
      tail = []
      for i, (hsz, osz) in enumerate(tail_sizes(d, self.n_classes, self.cutoffs,
                                                self.div_value)):
        proj = self.param(f"tail.{i}.0.weight", _torch_linear_init(d), (hsz, d),
                          self.param_dtype)
        out = self.param(f"tail.{i}.1.weight", _torch_linear_init(hsz), (osz, hsz),
                         self.param_dtype)
        tail.append((proj, out))
      self.tail = tail

    def _params(self):
      return dict(head_weight=self.head_weight, tail=self.tail, cutoffs=list(self.cutoffs))

    def __call__(self, input: ArrayLike, target: ArrayLike) -> ASMOutput:
      p = self._params()
      return adaptive_log_softmax_with_loss(input, target, p["head_weight"], p["tail"],
                                            p["cutoffs"], head_bias=self.head_bias_,
                                            chunk_size=self.chunk_size)

    def log_prob(self, input: ArrayLike) -> Array:
      p = self._params()
      return adaptive_log_prob(input, p["head_weight"], p["tail"], p["cutoffs"],
                               head_bias=self.head_bias_)

    def predict(self, input: ArrayLike) -> Array:
      p = self._params()
      return adaptive_predict(input, p["head_weight"], p["tail"], p["cutoffs"],
                              head_bias=self.head_bias_)

  AdaptiveLogSoftmaxWithLoss.__module__ = __name__
  AdaptiveLogSoftmaxWithLoss.__qualname__ = "AdaptiveLogSoftmaxWithLoss"
  return AdaptiveLogSoftmaxWithLoss


def __getattr__(name: str):
  if name == "AdaptiveLogSoftmaxWithLoss":
    return _flax_module()
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
