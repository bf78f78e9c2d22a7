"""What the user supplies to the search: a :class:`Task` of three pure functions.

The engine never looks inside a training state: it is any pytree (parameters, batch
statistics, optimiser state, step counters, ...) for ONE model copy. The engine adds the
population axis itself.

* ``init(key) -> state``
* ``train_step(state, batch, theta, key) -> (state, metrics)``: one optimisation step with
  the loss given by ``theta``; ``metrics`` is a dict of scalars that includes ``'loss'``.
  ``key`` is the step's randomness (augmentation, dropout).
* ``evaluate(state, batch) -> dict`` of summable scalars, e.g. ``{'correct': .., 'count': ..}``
  (see :func:`classification_metrics`); they are summed over a split and turned into the
  reward by the reward function (default ``correct / count``: accuracy).

:func:`optax_task` builds the three functions for the common case of an optax optimiser and
a loss on the model's output; :func:`evaluate_dataset` is the final (test-split) evaluation,
separate from the reward.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

Array = jax.Array
PyTree = Any


@dataclasses.dataclass(frozen=True)
class Task:
  """The three user functions the search engine drives (all pure, jit-able, vmap-able).

  ``parts``: the user's functions and objects the task was built from, as ``(name, object)``
  pairs, for the resume fingerprint (a refused resume names them; :func:`optax_task` gives
  ``init``, ``loss``, ``optimizer``, ``evaluate``). They stand for the three functions only
  while those are closures over exactly these objects (as :func:`optax_task` builds them; a
  function replaced with ``dataclasses.replace`` is described itself).
  """
  init: Callable[[Array], PyTree]
  train_step: Callable[[PyTree, PyTree, Array, Array], tuple[PyTree, dict]]
  evaluate: Callable[[PyTree, PyTree], dict]
  parts: tuple = dataclasses.field(default=(), compare=False, repr=False)

  def named_parts(self) -> tuple[tuple[str, Any], ...]:
    """What the task depends on, by the user's names (``parts``, else the three functions)."""
    functions = (("init", self.init), ("train_step", self.train_step),
                 ("evaluate", self.evaluate))
    return self.parts if self.parts and _closes_over(functions, self.parts) else functions


def _closes_over(functions, parts) -> bool:
  """Whether the functions' closures hold exactly the ``parts`` objects (by identity)."""
  wanted, held = {id(obj) for _, obj in parts}, set()
  for _, fn in functions:
    cells = getattr(fn, "__closure__", None) or ()
    contents = set()
    for cell in cells:
      try:
        contents.add(id(cell.cell_contents))
      except ValueError:  # an empty cell
        return False
    if not contents or not contents <= wanted:
      return False
    held |= contents
  return held == wanted


class OptaxTaskState(NamedTuple):
  """The training state built by :func:`optax_task` (one model copy).

  Not flax's ``flax.training.train_state.TrainState`` (which holds ``apply_fn`` and ``tx``):
  this one is plain arrays only, so that it can be vmapped, broadcast and checkpointed.

  ``step`` counts optimisation steps (use it for schedules of your own; optax schedules
  count in ``opt_state``). ``model_state`` holds non-trained variables such as Flax
  ``batch_stats`` (``None`` or ``{}`` when there are none). All four are broadcast from the
  best copy, momentum included.
  """
  step: Array
  params: PyTree
  model_state: PyTree
  opt_state: PyTree


def optax_task(*, init: Callable[[Array], tuple[PyTree, PyTree]],
               loss: Callable[..., tuple[Array, PyTree]],
               optimizer: optax.GradientTransformation,
               evaluate: Callable[[PyTree, PyTree, PyTree], dict]) -> Task:
  """A :class:`Task` for an optax optimiser and a loss on the model's output.

  Args:
    init: ``init(key) -> (params, model_state)``; ``model_state`` is e.g. a Flax linen
      ``{'batch_stats': ...}`` collection, or ``None``.
    loss: ``loss(params, model_state, batch, theta, key) -> (scalar, new_model_state)``,
      differentiated with respect to ``params``; ``theta`` is the copy's loss parameters
      (e.g. passed on to :func:`jaxloss.amlfs_loss`), ``key`` the step's randomness.
    optimizer: any ``optax.GradientTransformation`` (a schedule inside it counts steps in
      the optimiser state, which is part of the broadcast training state).
    evaluate: ``evaluate(params, model_state, batch) -> dict`` of summable scalars.
  Returns:
    a :class:`Task` whose state is an :class:`OptaxTaskState`.
  """

  def task_init(key):
    params, model_state = init(key)
    return OptaxTaskState(step=jnp.zeros((), jnp.int32), params=params,
                          model_state=model_state, opt_state=optimizer.init(params))

  def train_step(state, batch, theta, key):
    grad_fn = jax.value_and_grad(loss, has_aux=True)
    (value, model_state), grads = grad_fn(state.params, state.model_state, batch, theta, key)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    new = OptaxTaskState(step=state.step + 1, params=params, model_state=model_state,
                         opt_state=opt_state)
    return new, {"loss": value}

  def task_evaluate(state, batch):
    return evaluate(state.params, state.model_state, batch)

  return Task(init=task_init, train_step=train_step, evaluate=task_evaluate,
              parts=(("init", init), ("loss", loss), ("optimizer", optimizer),
                     ("evaluate", evaluate)))


def classification_metrics(logits: Array, labels: Array, *,
                           per_example: bool = False) -> dict[str, Array]:
  """``{'correct': #(argmax == label), 'count': N}`` (int32), summable over batches.

  ``per_example=True`` adds ``'examples'``: 1 where the prediction is correct, else 0, one per
  example (what ``SearchConfig(selection='guarded')`` compares copies with).
  """
  hits = jnp.argmax(logits, axis=-1) == labels
  out = {"correct": jnp.sum(hits).astype(jnp.int32),
         "count": jnp.asarray(labels.shape[0], jnp.int32)}
  if per_example:
    out[EXAMPLES] = hits.astype(jnp.int32)
  return out


def accuracy(totals: dict) -> Array:
  """The default reward: ``totals['correct'] / totals['count']`` (float32)."""
  if "correct" not in totals or "count" not in totals:
    raise ValueError("accuracy: the `evaluate` function must return 'correct' and 'count' "
                     f"(or pass a `reward_fn`), got keys {sorted(totals)}.")
  return (jnp.asarray(totals["correct"], jnp.float32)
          / jnp.asarray(totals["count"], jnp.float32))


def leading_size(fn: str, name: str, data: PyTree) -> int:
  """The common leading (example) axis of every array in ``data``; ValueError otherwise."""
  leaves = jax.tree.leaves(data)
  if not leaves:
    raise ValueError(f"{fn}: `{name}` must be a pytree of arrays, got no arrays.")
  for a in leaves:
    if not hasattr(a, "shape") and not isinstance(a, (list, tuple, int, float)):
      raise ValueError(f"{fn}: `{name}` must be a pytree of arrays, got a "
                       f"{type(a).__name__} leaf.")
  sizes = {np.shape(a)[0] if np.ndim(a) else None for a in leaves}
  if len(sizes) != 1 or None in sizes:
    raise ValueError(f"{fn}: every array of `{name}` must have the same leading (example) "
                     f"axis, got shapes {[np.shape(a) for a in leaves]}.")
  return sizes.pop()


#: The one output of ``evaluate`` that is not summed: a per-example score vector (``1`` for a
#: correct prediction), concatenated over a split. Guarded selection compares copies with it.
EXAMPLES = "examples"


def check_evaluate_output(out, batch_size: int | None = None) -> dict:
  """``evaluate``'s output must be a non-empty dict of numeric scalars (summed over batches),
  plus optionally :data:`EXAMPLES`, a ``(batch_size,)`` vector (concatenated)."""
  if not isinstance(out, dict) or not out:
    raise ValueError("search: `evaluate` must return a non-empty dict of summable numeric "
                     f"scalars (e.g. search.classification_metrics), got {out!r:.200}.")
  checked = {}
  for name, value in out.items():
    try:
      value = jnp.asarray(value)
    except TypeError:
      raise ValueError(f"search: `evaluate` output {name!r} must be a numeric scalar, got "
                       f"{type(value).__name__}.") from None
    if name == EXAMPLES:
      if value.shape != (batch_size,):
        raise ValueError(f"search: `evaluate` output {EXAMPLES!r} must be one number per "
                         f"example of the batch, shape ({batch_size},), got {value.shape}.")
      checked[name] = value.astype(jnp.float32)
      continue
    if value.ndim != 0:
      raise ValueError(f"search: `evaluate` output {name!r} must be a scalar (it is summed "
                       f"over batches), got shape {value.shape}.")
    if not jnp.issubdtype(value.dtype, jnp.number):
      raise ValueError(f"search: `evaluate` output {name!r} must be a summable number (int or "
                       f"float), got dtype {value.dtype}; cast booleans, e.g. "
                       "`.astype(jnp.int32)`.")
    checked[name] = value
  return checked


def check_split(fn: str, name: str, data: PyTree, minimum: int = 1) -> int:
  """A split: a pytree of arrays with one common, non-empty leading (example) axis."""
  n = leading_size(fn, name, data)
  if n < minimum:
    raise ValueError(f"{fn}: `{name}` must hold at least {minimum} example(s), got {n}"
                     + (" (an empty split)." if n == 0 else "."))
  return n


def sum_over_batches(evaluate: Callable[[PyTree, PyTree], dict], state: PyTree, data: PyTree,
                     batch_size: int) -> dict:
  """Sums ``evaluate(state, batch)`` over ``data`` in order, inside one program.

  Full batches run in a ``lax.scan``; the remainder (if any) is one more call on a smaller
  batch, so no example is dropped or padded. Jit-able and vmap-able over ``state``. An
  :data:`EXAMPLES` output is concatenated (one value per example of ``data``), not summed.
  """
  n = check_split("evaluate", "data", data)
  batch_size = min(batch_size, n)
  num_full, rest = divmod(n, batch_size)

  def call(batch):
    out = check_evaluate_output(evaluate(state, batch), leading_size("evaluate", "data", batch))
    return out, out.pop(EXAMPLES, None)

  def body(totals, i):
    batch = jax.tree.map(lambda a: jax.lax.dynamic_slice_in_dim(a, i * batch_size, batch_size),
                         data)
    out, examples = call(batch)
    return jax.tree.map(jnp.add, totals, out), examples

  first = jax.tree.map(lambda a: a[:batch_size], data)
  totals, examples = call(first)
  parts = [] if examples is None else [examples]
  if num_full > 1:
    totals, more = jax.lax.scan(body, totals, jnp.arange(1, num_full))
    if more is not None:
      parts.append(more.reshape(-1))
  if rest:
    tail = jax.tree.map(lambda a: a[num_full * batch_size:], data)
    out, more = call(tail)
    totals = jax.tree.map(jnp.add, totals, out)
    if more is not None:
      parts.append(more)
  if parts:
    totals[EXAMPLES] = jnp.concatenate(parts)
  return totals


def without_examples(totals: dict) -> dict:
  """``totals`` less the per-example vector (what records, rewards and reports show)."""
  return {k: v for k, v in totals.items() if k != EXAMPLES}


@functools.lru_cache(maxsize=64)
def _evaluator(evaluate, batch_size, reward_fn):
  """One jitted evaluation per (function, batch size, reward): repeated calls reuse it."""

  @jax.jit
  def run(state, data):
    totals = sum_over_batches(evaluate, state, data, batch_size)
    return totals, (reward_fn or accuracy)(without_examples(totals))

  return run


def evaluate_dataset(evaluate: Callable[[PyTree, PyTree], dict] | Task, state: PyTree,
                     data: PyTree, *, batch_size: int = 1024,
                     reward_fn: Callable[[dict], Array] | None = None) -> dict[str, float]:
  """Final evaluation of ONE model state on a split (e.g. the test set), as Python numbers.

  Separate from the search's reward on purpose: the search never sees the test split.

  Args:
    evaluate: the task's ``evaluate(state, batch)`` (or the :class:`Task`).
    state: one copy's training state (e.g. ``SearchResult.state``).
    data: the split, a pytree of arrays with a leading example axis.
    batch_size: evaluation batch size (the last partial batch is included).
    reward_fn: turns the summed metrics into a score (default :func:`accuracy`), reported
      as ``'score'`` (and as ``'accuracy'`` when the default is used).
  Returns:
    the summed metrics plus ``'score'`` (and ``'accuracy'``), as floats / ints.
  """
  if isinstance(evaluate, Task):
    evaluate = evaluate.evaluate
  totals, score = jax.device_get(_evaluator(evaluate, batch_size, reward_fn)(state, data))
  out = {k: np.asarray(v).item() for k, v in without_examples(totals).items()}
  out["score"] = float(score)
  if reward_fn is None:
    out["accuracy"] = float(score)
  return out
