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
from jaxloss.search import strategies
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


@pytest.mark.parametrize("sigma", [0.0, -0.2, np.nan, np.inf, None, (0.0, 0.0, 0.0, 0.0),
                                   "0.2", True])
def test_bad_sigma(sigma):
  with pytest.raises(ValueError, match="Gaussian: `sigma` must be a non-negative float"):
    strategies.Gaussian(sigma=sigma)


def test_numpy_sigma_is_fine():
  assert strategies.Gaussian(sigma=np.float32(0.1)).sigma == np.float32(0.1)
  assert config(strategy=strategies.Gaussian(sigma=np.float32(0.1))).strategy_name == "Gaussian"


@pytest.mark.parametrize("learning_rate", [np.nan, np.inf, -0.05, 0.0, True, "0.05"])
def test_bad_learning_rate(learning_rate):
  with pytest.raises(ValueError, match="Gaussian: `learning_rate` must be a positive finite"):
    strategies.Gaussian(learning_rate=learning_rate)


def test_bad_options_are_named():
  for optimizer in (0.05, optax, "adamw"):
    with pytest.raises(ValueError, match="`optimizer` must be 'adam', 'sgd' or an optax"):
      strategies.Gaussian(optimizer=optimizer)
  with pytest.raises(ValueError, match="`reward_fn`"):
    config(reward_fn="accuracy")
  with pytest.raises(ValueError, match="`selection` must be one of"):
    config(selection="yes")
  with pytest.raises(ValueError, match="`common_random_numbers`"):
    config(common_random_numbers=None)
  with pytest.raises(ValueError, match="`init`"):
    config(init="copies")
  for epochs in (0, -1, 1.5, True):
    with pytest.raises(ValueError, match="`epochs` must be a positive int"):
      config(epochs=epochs)


def test_strategy_must_be_a_name_or_an_instance():
  with pytest.raises(ValueError, match=r"SearchConfig: `strategy` must be one of \('default', "
                     r"'paper', 'random', 'fixed'\) or a strategy object, got 'nope'"):
    config(strategy="nope")
  with pytest.raises(ValueError, match=r"got the class Gaussian: instantiate it, e\.g\. "
                     r"Gaussian\(\.\.\.\)"):
    config(strategy=strategies.Gaussian)
  with pytest.raises(ValueError, match="instantiate it"):
    config(strategy=strategies.Grid)


@pytest.mark.parametrize("thetas, match", [
    ([[0.1, np.nan], [0.2, 0.3]], r"every entry of `thetas` must be finite; entries \[0\]"),
    ([[0.1, 0.2], [0.3]], r"every entry of `thetas` must have the same length \(a ragged"),
    ([], "`thetas` must hold at least one loss parameter vector"),
    ("cosface", "`thetas` must be a sequence of loss parameter vectors"),
    ([["a", "b"]], r"`thetas\[0\]` must be a vector of numbers"),
    ([[True, False]], r"`thetas\[0\]` must be a vector of numbers"),
])
def test_bad_grid_is_named(thetas, match):
  with pytest.raises(ValueError, match=f"Grid: {match}"):
    strategies.Grid(thetas)


def test_a_grid_must_give_one_theta_of_initial_mu_per_copy():
  mu = np.asarray(identity_theta())
  grid = [mu.tolist()] * 3
  with pytest.raises(ValueError, match="SearchConfig: the strategy Grid.*does not fit.*"
                     "`population_size` 4: Grid: 3 thetas for a population of 4"):
    config(strategy=strategies.Grid(grid))
  with pytest.raises(ValueError, match=r"one theta per copy, each of 8 values"):
    config(strategy=strategies.Grid([[0.1]] * 4))
  # Without `initial_mu`, a grid's mean is the initial mean (for the records).
  cfg = config(strategy=strategies.Grid(grid + [(mu + 0.4).tolist()]), initial_mu=None)
  np.testing.assert_allclose(cfg.initial_mu, mu + 0.1, rtol=1e-6)


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
