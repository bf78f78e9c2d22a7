"""The CIFAR example's fast-path convolution (``conv_impl='patches'``) against flax's ``nn.Conv``.

``models.PatchConv`` holds the same parameters as ``nn.Conv`` and must compute the same
function: checked in float64 (forward and every gradient, through a vmapped population with
shared and per-copy inputs), and by training: the search engine trains a population of
ResNet-8s on scikit-learn's digits (real data, 8x8 images, offline) with either convolution
from the same seed, and the curves must agree within noise.
"""

import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'examples')
if EXAMPLES not in sys.path:
  sys.path.insert(0, EXAMPLES)

from cifar10 import configs, models  # noqa: E402

import jaxloss  # noqa: E402
from jaxloss import search  # noqa: E402


def _variables(model, key, shape, b):
  return jax.vmap(lambda k: model.init(k, jnp.zeros((1,) + shape, model.dtype), train=False))(
      jax.random.split(key, b))


def _loss(model):
  def loss(variables, x):
    (features, kernel), updates = model.apply(variables, x, train=True, mutable=['batch_stats'])
    return jnp.sum(jnp.sin(features @ kernel)), updates
  return loss


@pytest.mark.parametrize('shape, shared_input', [((12, 12, 3), True), ((7, 9, 2), False)])
def test_patch_conv_equals_nn_conv_in_float64(shape, shared_input):
  """Same parameters, same values and gradients (params and input), population vmapped."""
  with jax.enable_x64(True):
    b, n = 2, 3
    xla = models.CifarResNet(depth=8, width=4, dtype=jnp.float64, param_dtype=jnp.float64)
    patches = xla.clone(conv_impl='patches')
    variables = _variables(xla, jax.random.key(0), shape, b)
    same = jax.tree.map(lambda a, c: a.shape == c.shape and bool(jnp.all(a == c)),
                        variables, _variables(patches, jax.random.key(0), shape, b))
    assert all(jax.tree.leaves(same))  # one parameter tree, same initialisation
    x = jax.random.normal(jax.random.key(1), (n,) + shape, jnp.float64)
    if not shared_input:
      x = x * jnp.arange(1, b + 1, dtype=jnp.float64).reshape(b, 1, 1, 1, 1)
    outs = []
    for model in (xla, patches):
      grad = jax.value_and_grad(_loss(model), argnums=(0, 1), has_aux=True)
      outs.append(jax.jit(jax.vmap(grad, in_axes=(0, None if shared_input else 0)))(variables, x))
    for a, c in zip(jax.tree.leaves(outs[0]), jax.tree.leaves(outs[1])):
      np.testing.assert_allclose(c, a, rtol=1e-10, atol=1e-12 * float(jnp.max(jnp.abs(a))))


def test_patch_conv_strided_shapes_match_nn_conv():
  for size in (5, 6, 7, 8):
    for strides in (1, 2):
      x = jnp.ones((2, size, size + 1, 3))
      a = models.conv_layer('xla', 5, strides, jnp.float32, jnp.float32)
      c = models.conv_layer('patches', 5, strides, jnp.float32, jnp.float32)
      params = a.init(jax.random.key(0), x)
      assert a.apply(params, x).shape == c.apply(params, x).shape
      np.testing.assert_allclose(c.apply(params, x), a.apply(params, x), rtol=2e-6, atol=2e-6)


def test_bf16_compute_keeps_float32_parameters():
  model = models.CifarResNet(depth=8, width=4, dtype=jnp.bfloat16, conv_impl='patches')
  variables = model.init(jax.random.key(0), jnp.zeros((2, 8, 8, 3)), train=False)
  assert {a.dtype for a in jax.tree.leaves(variables)} == {jnp.dtype(jnp.float32)}
  features, _ = model.apply(variables, jnp.ones((2, 8, 8, 3)), train=False)
  assert features.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(features)))


def test_config_and_flag_select_the_convolution():
  assert configs.default().conv_impl == 'xla'
  assert configs.smoke(conv_impl='patches').conv_impl == 'patches'
  with pytest.raises(ValueError, match='conv_impl'):
    configs.default(conv_impl='winograd')
  with pytest.raises(ValueError, match='conv_impl'):
    models.conv_layer('winograd', 4, 1, jnp.float32, jnp.float32)


# ------------------------------------------------------------------------------------------------
# Training: same seed, same curves within noise
# ------------------------------------------------------------------------------------------------


def _digits():
  from sklearn.datasets import load_digits
  digits = load_digits()
  images = (digits.images / 16.0).astype(np.float32)[..., None]  # (1797, 8, 8, 1) in [0, 1]
  labels = digits.target.astype(np.int32)
  order = np.random.default_rng(0).permutation(len(labels))
  images, labels = images[order], labels[order]
  return (images[:1024], labels[:1024]), (images[1024:1408], labels[1024:1408]), (
      images[1408:], labels[1408:])


def _task(conv_impl):
  model = models.CifarResNet(depth=8, width=8, conv_impl=conv_impl)
  optimizer = optax.sgd(0.05, momentum=0.9)

  def init(key):
    variables = model.init(key, jnp.zeros((1, 8, 8, 1)), train=False)
    return variables['params'], {'batch_stats': variables['batch_stats']}

  def loss(params, model_state, batch, theta, key):
    del key  # no augmentation
    images, labels = batch
    (features, kernel), new_state = model.apply(
        {'params': params, **model_state}, images, train=True, mutable=['batch_stats'])
    cosine, scale, _ = models.head_outputs(features, kernel)  # the example's head (eq. 4)
    return jaxloss.amlfs_loss(cosine, labels, theta, scale=scale), new_state

  def evaluate(params, model_state, batch):
    images, labels = batch
    features, kernel = model.apply({'params': params, **model_state}, images, train=False)
    return search.classification_metrics(models.head_outputs(features, kernel)[2], labels)

  return search.optax_task(init=init, loss=loss, optimizer=optimizer, evaluate=evaluate)


def _search(conv_impl, train, val, test):
  task = _task(conv_impl)
  config = search.SearchConfig(
      initial_mu=jaxloss.identity_theta(6), population_size=4, epochs=6,
      batch_size=128, eval_batch_size=384, seed=0, output_dir=None, progress=False)
  result = search.run(task, config, train, val)
  return result, search.evaluate_dataset(task, result.state, test)['accuracy']


def test_patches_path_trains_like_the_xla_path_on_digits():
  """Same seed, data and thetas: the two convolutions give the same run up to float32
  rounding, which SGD amplifies into noise but not into a different model.

  The size of that noise: the xla path alone, compiled once as a loop and once unrolled,
  gives best validation accuracies 0.77 and 0.65 after epoch 3 (the steep part of the curve)
  and within 0.01 of each other from epoch 4 on. The bounds below are of that size.
  """
  train, val, test = _digits()
  (plain, plain_test), (fast, fast_test) = (_search(impl, train, val, test)
                                            for impl in ('xla', 'patches'))
  first_plain, first_fast = plain.records[0], fast.records[0]
  # Two different compiled programs: the sampled thetas agree to rounding, not bitwise.
  np.testing.assert_allclose(first_fast['thetas'], first_plain['thetas'], rtol=1e-6, atol=1e-6)
  # Epoch 1: every copy's mean training loss equal to float32 rounding amplified by 8 steps.
  np.testing.assert_allclose(first_fast['train_loss'], first_plain['train_loss'], rtol=1e-3)
  curve = lambda result: np.array([r['best_reward'] for r in result.records])
  plain_curve, fast_curve = curve(plain), curve(fast)
  gaps = np.abs(plain_curve - fast_curve)
  assert min(plain_curve[-1], fast_curve[-1]) > 0.9, (plain_curve, fast_curve)
  assert gaps.max() <= 0.15 and gaps[-2:].max() <= 0.04, (plain_curve, fast_curve)
  assert min(plain_test, fast_test) > 0.9 and abs(plain_test - fast_test) <= 0.04, (
      plain_test, fast_test)
