"""Small models, data and tasks shared by the search tests (plus checks of these helpers).

Three kinds of model, as the search API must serve each: a hand-written JAX MLP, a Flax
linen MLP with BatchNorm (batch statistics in the state, SGD momentum) and a Flax nnx MLP.
Every copy trains with :func:`jaxloss.amlfs_loss` on cosine logits (fixed scale 8).
"""

import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import jaxloss
from jaxloss import search

NUM_CLASSES = 4
DIM = 12
M = 2  # intervals of the AM-LFS piecewise-linear transforms: theta has 4 * M = 8 numbers.
SCALE = 8.0


def identity_theta():
  return jaxloss.identity_theta(M)


def amlfs_cosine_loss(cosine, target, theta):
  return jaxloss.amlfs_loss(cosine, target, theta, scale=SCALE)


def cosine_head(features, w):
  """Cosine logits of a bias-free linear head with ``(D, C)`` weights."""
  return jaxloss.cosine_logits(features, w, weight_layout="dc")


@functools.cache
def dataset(n_train=256, n_val=128, n_test=128, seed=0):
  """A noisy linear 4-class problem in 12 dimensions: (train, val, test) as numpy pairs."""
  rng = np.random.default_rng(seed)
  w = rng.normal(size=(DIM, NUM_CLASSES))
  n = n_train + n_val + n_test
  x = rng.normal(size=(n, DIM)).astype(np.float32)
  y = np.argmax(x @ w + 0.3 * rng.normal(size=(n, NUM_CLASSES)), axis=-1).astype(np.int32)
  split = lambda a, b: (x[a:b], y[a:b])
  return split(0, n_train), split(n_train, n_train + n_val), split(n_train + n_val, n)


# ---------------------------------------------------------------- hand-written JAX MLP


def mlp_init(key, hidden=16, dtype=jnp.float32):
  # One random draw for all weights: every threefry draw costs about a second of XLA CPU
  # compile time, and the suite runs on 2 shared cores.
  flat = jax.random.normal(key, ((DIM + NUM_CLASSES) * hidden,), dtype)
  return {"w1": flat[:DIM * hidden].reshape(DIM, hidden) / math.sqrt(DIM),
          "b1": jnp.zeros((hidden,), dtype),
          "w2": flat[DIM * hidden:].reshape(hidden, NUM_CLASSES) / math.sqrt(hidden)}


def mlp_cosine(params, x):
  h = jax.nn.relu(x @ params["w1"] + params["b1"])
  return cosine_head(h, params["w2"])


def _mlp_loss(params, model_state, batch, theta, key):
  x, y = batch
  # "Augmentation" from the step key (a random scalar gain: cheap to compile).
  x = x * (1 + 0.1 * jax.random.uniform(key, (), x.dtype))
  return amlfs_cosine_loss(mlp_cosine(params, x), y, theta), model_state


def _mlp_evaluate(params, model_state, batch):
  x, y = batch
  return search.classification_metrics(mlp_cosine(params, x), y)


MLP_TASK = search.optax_task(init=lambda key: (mlp_init(key), None), loss=_mlp_loss,
                             optimizer=optax.adam(0.02), evaluate=_mlp_evaluate)

# The same MLP in float64 (with float64 data): for comparisons of two different compiled
# programs (1 device against 4), whose float rounding differs (see test_search_sharding).
MLP64_TASK = search.optax_task(init=lambda key: (mlp_init(key, dtype=jnp.float64), None),
                               loss=_mlp_loss, optimizer=optax.adam(0.02),
                               evaluate=_mlp_evaluate)


# ------------------------------------------------------- Flax linen with BatchNorm


class LinenNet(nn.Module):
  hidden: int = 16
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool):
    x = nn.Dense(self.hidden, dtype=self.dtype, param_dtype=self.dtype)(x)
    x = nn.BatchNorm(use_running_average=not train, momentum=0.9, dtype=self.dtype,
                     param_dtype=self.dtype)(x)
    x = nn.relu(x)
    w = self.param("head", nn.initializers.lecun_normal(), (self.hidden, NUM_CLASSES),
                   self.dtype)
    return cosine_head(x, w)


def make_linen_task(dtype=jnp.float32):
  """linen + BatchNorm + SGD momentum + a schedule, parameters and compute in ``dtype``."""
  net = LinenNet(dtype=dtype)

  def init(key):
    variables = net.init(key, jnp.zeros((1, DIM), dtype), train=False)
    # flax keeps batch statistics in float32 whatever the parameters' dtype.
    variables = jax.tree.map(lambda a: a.astype(dtype), variables)
    return variables["params"], {"batch_stats": variables["batch_stats"]}

  def loss(params, model_state, batch, theta, key):
    x, y = batch
    cosine, updates = net.apply({"params": params, **model_state}, x, train=True,
                                mutable=["batch_stats"])
    return amlfs_cosine_loss(cosine, y, theta), updates

  def evaluate(params, model_state, batch):
    x, y = batch
    return search.classification_metrics(
        net.apply({"params": params, **model_state}, x, train=False), y)

  return search.optax_task(
      init=init, loss=loss, evaluate=evaluate,
      optimizer=optax.sgd(optax.cosine_decay_schedule(0.1, 100), momentum=0.9))


LINEN_TASK = make_linen_task()
LINEN64_TASK = make_linen_task(jnp.float64)


# ------------------------------------------------------------------ Flax nnx


class NnxNet(nnx.Module):

  def __init__(self, rngs: nnx.Rngs, hidden: int = 16):
    self.hidden = nnx.Linear(DIM, hidden, rngs=rngs)
    self.head = nnx.Param(nnx.initializers.lecun_normal()(rngs.params(), (hidden, NUM_CLASSES)))

  def __call__(self, x):
    return cosine_head(nnx.relu(self.hidden(x)), self.head[...])


NNX_GRAPHDEF = nnx.graphdef(nnx.eval_shape(lambda: NnxNet(nnx.Rngs(0))))


def make_nnx_task():
  """An nnx model as a pure task: the state is ``(nnx.State of the params, opt_state)``."""
  optimizer = optax.adam(0.02)

  def init(key):
    params = nnx.state(NnxNet(nnx.Rngs(params=key)))
    return params, optimizer.init(params)

  def loss(params, batch, theta):
    x, y = batch
    return amlfs_cosine_loss(nnx.merge(NNX_GRAPHDEF, params)(x), y, theta)

  def train_step(state, batch, theta, key):
    params, opt_state = state
    value, grads = jax.value_and_grad(loss)(params, batch, theta)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return (optax.apply_updates(params, updates), opt_state), {"loss": value}

  def evaluate(state, batch):
    x, y = batch
    return search.classification_metrics(nnx.merge(NNX_GRAPHDEF, state[0])(x), y)

  return search.Task(init=init, train_step=train_step, evaluate=evaluate)


NNX_TASK = make_nnx_task()


# XLA's CPU backend needs several seconds to compile one outer step even for these tiny
# models (each threefry draw alone costs about a second); optimisation level 0 halves it and
# is irrelevant to what the tests check. The sharding and end-to-end tests use the defaults.
FAST_COMPILE = {"xla_backend_optimization_level": 0}


def config(**kwargs):
  # strategy='paper': the engine tests check the paper's algorithm (strategies.PAPER: sigma
  # 0.2, Adam 0.05 on mu); the library default, strategies.DEFAULT, has its own tests
  # (test_search_strategies.py, test_search_loop.py).
  defaults = dict(initial_mu=identity_theta(), population_size=4, epochs=3, batch_size=32,
                  seed=0, progress=False, compiler_options=FAST_COMPILE, strategy="paper")
  defaults.update(kwargs)
  return search.SearchConfig(**defaults)


def dataset64():
  """:func:`dataset` with float64 inputs (for the float64 tasks)."""
  return tuple((x.astype(np.float64), y) for x, y in dataset())


def assert_trees_equal(a, b):
  """Bitwise equality of two pytrees (same structure, dtypes and values)."""
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
      x, y = jax.random.key_data(x), jax.random.key_data(y)
    x, y = np.asarray(x), np.asarray(y)
    assert x.dtype == y.dtype and x.shape == y.shape
    np.testing.assert_array_equal(x, y)


def strip_times(records):
  return [{k: v for k, v in r.items() if k != "time"} for r in records]


# ------------------------------------------------------------ checks of the helpers


def test_identity_theta_loss_is_cross_entropy_of_scaled_cosines():
  rng = np.random.default_rng(0)
  cosine = jnp.asarray(rng.uniform(-1, 1, (6, NUM_CLASSES)), jnp.float32)
  target = jnp.asarray(rng.integers(0, NUM_CLASSES, 6))
  expected = optax.softmax_cross_entropy_with_integer_labels(SCALE * cosine, target).mean()
  value = jax.jit(amlfs_cosine_loss)(cosine, target, identity_theta())
  np.testing.assert_allclose(value, expected, rtol=1e-5)


def test_dataset_is_learnable_but_not_trivial():
  (x, y), _, _ = dataset()
  counts = np.bincount(y, minlength=NUM_CLASSES)
  assert counts.min() > 0.1 * len(y)
