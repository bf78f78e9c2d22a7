"""The search refuses bad input up front, with an error naming the option, split or function.

Everything here fails before any XLA compilation (in the constructor, the split checks or
at trace time), so the module is cheap.
"""

import dataclasses

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxloss import search
from tests.test_search_common import MLP_TASK, config, dataset, identity_theta


@pytest.mark.parametrize("value", [np.inf, -np.inf, np.nan])
def test_non_finite_initial_mu(value):
  mu = np.asarray(identity_theta()).copy()
  mu[3] = value
  with pytest.raises(ValueError, match=r"`initial_mu` must be finite; entries \[3\]"):
    config(initial_mu=mu)


@pytest.mark.parametrize("bad", [[], "cross-entropy", [[1.0, None]]])
def test_initial_mu_must_be_a_non_empty_array_of_numbers(bad):
  with pytest.raises(ValueError, match="`initial_mu`"):
    config(initial_mu=bad)


@pytest.mark.parametrize("sigma", [0.0, -0.2, np.nan, np.inf, "0.2", True, None])
def test_bad_sigma(sigma):
  with pytest.raises(ValueError, match="SearchConfig: `sigma` must be a positive finite float"):
    config(sigma=sigma)
  assert config(sigma=np.float32(0.1)).sigma == np.float32(0.1)  # numpy scalars are fine


def test_bad_options_are_named():
  with pytest.raises(ValueError, match="`mu_optimizer`"):
    config(mu_optimizer=0.05)
  with pytest.raises(ValueError, match="`reward_fn`"):
    config(reward_fn="accuracy")
  with pytest.raises(ValueError, match="`select_best`"):
    config(select_best="yes")
  with pytest.raises(ValueError, match="`common_random_numbers`"):
    config(common_random_numbers=None)


def test_empty_splits_are_named():
  train, val, test = dataset()
  empty = lambda split: tuple(a[:0] for a in split)
  with pytest.raises(ValueError, match=r"`val` must hold at least 1 example.*empty split"):
    search.run(MLP_TASK, config(epochs=1), train, empty(val))
  with pytest.raises(ValueError, match=r"`train` must hold at least 1 example.*empty split"):
    search.run(MLP_TASK, config(epochs=1), empty(train), val)
  with pytest.raises(ValueError, match=r"`monitor\['test'\]`.*empty split"):
    search.run(MLP_TASK, config(epochs=1), train, val, monitor={"test": empty(test)})
  with pytest.raises(ValueError, match="`data`.*empty split"):
    search.evaluate_dataset(MLP_TASK, None, empty(test))


def test_splits_whose_leaves_differ_in_length_are_named():
  (x, y), val, _ = dataset()
  with pytest.raises(ValueError, match=r"every array of `train` must have the same leading"):
    search.run(MLP_TASK, config(epochs=1), (x, y[:-1]), val)
  with pytest.raises(ValueError, match=r"every array of `val` must have the same leading"):
    search.run(MLP_TASK, config(epochs=1), (x, y), (val[0][:5], val[1]))
  with pytest.raises(ValueError, match="`train` must be a pytree of arrays, got no arrays"):
    search.run(MLP_TASK, config(epochs=1), (), val)


def _task(train_step=None, evaluate=None):
  return dataclasses.replace(MLP_TASK, **{k: v for k, v in
                                          dict(train_step=train_step, evaluate=evaluate).items()
                                          if v is not None})


def _run(task, **kwargs):
  train, val, _ = dataset()
  return search.run(task, config(epochs=1, **kwargs), train, val)


def test_train_step_returning_other_dtypes_is_named():
  def half(state, batch, theta, key):
    state, metrics = MLP_TASK.train_step(state, batch, theta, key)
    params = {k: v.astype(jnp.float16) for k, v in state.params.items()}
    return state._replace(params=params), metrics

  with pytest.raises(ValueError, match=r"`train_step` must return a state whose leaves keep "
                     r"their shapes and dtypes; state.*float16.* for float32"):
    _run(_task(train_step=half))


def test_train_step_returning_other_shapes_or_structure_is_named():
  def reshaped(state, batch, theta, key):
    state, metrics = MLP_TASK.train_step(state, batch, theta, key)
    return state._replace(params={**state.params, "b1": state.params["b1"][:3]}), metrics

  with pytest.raises(ValueError, match=r"`train_step`.*state.*b1"):
    _run(_task(train_step=reshaped))

  def extra(state, batch, theta, key):
    state, metrics = MLP_TASK.train_step(state, batch, theta, key)
    return state._replace(params={**state.params, "new": jnp.zeros(())}), metrics

  with pytest.raises(ValueError, match="`train_step` must return a state with the structure"):
    _run(_task(train_step=extra))

  def not_a_pair(state, batch, theta, key):
    return MLP_TASK.train_step(state, batch, theta, key)[0]

  with pytest.raises(ValueError, match=r"`train_step` must return `\(state, metrics\)`"):
    _run(_task(train_step=not_a_pair))

  def vector_metric(state, batch, theta, key):
    state, metrics = MLP_TASK.train_step(state, batch, theta, key)
    return state, {**metrics, "per_example": jnp.zeros(3)}

  with pytest.raises(ValueError, match="`train_step` metric 'per_example' must be a scalar"):
    _run(_task(train_step=vector_metric))


@pytest.mark.parametrize("output, match", [
    (lambda m: [m["correct"], m["count"]], "non-empty dict"),
    (lambda m: {}, "non-empty dict"),
    (lambda m: {**m, "per_class": jnp.zeros(4, jnp.int32)}, "'per_class' must be a scalar"),
    (lambda m: {**m, "any_right": m["correct"] > 0}, "'any_right' must be a summable number"),
])
def test_evaluate_outputs_of_the_wrong_structure_or_dtype_are_named(output, match):
  evaluate = lambda state, batch: output(MLP_TASK.evaluate(state, batch))
  with pytest.raises(ValueError, match=f"`evaluate`.*{match}|`evaluate` output {match}"):
    _run(_task(evaluate=evaluate))


def test_reward_fn_must_return_one_real_scalar():
  with pytest.raises(ValueError, match="`reward_fn` must return one scalar per copy"):
    _run(MLP_TASK, reward_fn=lambda totals: jnp.stack([totals["correct"], totals["count"]]))


def test_the_mu_optimizer_is_checked_by_the_policy_too():
  with pytest.raises(ValueError, match="optax"):
    search.GaussianPolicy(optimizer=optax)
