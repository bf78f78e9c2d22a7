"""ResNet-20 for CIFAR (He et al., "Deep Residual Learning for Image Recognition", CVPR 2016).

Section 4.2 of the paper: a 3x3 convolution with 16 filters, then three stages of ``n`` basic
blocks (two 3x3 convolutions each) on feature maps of 32x32, 16x16 and 8x8 with 16, 32 and 64
filters, global average pooling and a 10-way fully connected layer; ``6n + 2`` weighted layers
(n = 3: ResNet-20, about 0.27M parameters). Shortcuts are identities everywhere (**option A**):
where a stage halves the map and doubles the channels, the shortcut subsamples by 2 and pads the
new channels with zeros, so it has no parameters.

BatchNorm follows PyTorch's defaults (momentum 0.1 for the running statistics, epsilon 1e-5);
its running statistics live in the ``batch_stats`` collection of the training state.
Convolutions use He initialisation (normal, fan-out), the classifier a small normal.

``dtype`` is the compute dtype (bfloat16 on GPU by default), ``param_dtype`` the storage dtype of
the parameters (float32 always): mixed precision without a loss scale (bfloat16 has float32's
exponent range). The network returns float32 features; the head is separate
(:func:`head_outputs`) so the AM-LFS loss sees float32 cosines and norms.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

import jaxloss



def _flat_normal(key, shape, dtype, std):
  # Drawn as a flat vector and reshaped: the same distribution as drawing in `shape`, but XLA
  # on the CPU (jaxlib 0.10) compiles a multi-dimensional threefry draw ~50x slower (seconds
  # per parameter), which dominated the start-up of the small CPU configurations.
  return (std * jax.random.normal(key, (math.prod(shape),), dtype)).reshape(shape)


def he_normal_fan_out(key, shape, dtype=jnp.float32):
  """He et al.'s initialisation N(0, 2 / fan_out), fan_out = kh * kw * out_channels."""
  fan_out = math.prod(shape[:-2]) * shape[-1]
  return _flat_normal(key, shape, dtype, math.sqrt(2.0 / fan_out))


def classifier_normal(key, shape, dtype=jnp.float32):
  """N(0, 0.01^2) for the classifier weights."""
  return _flat_normal(key, shape, dtype, 0.01)



class BasicBlock(nn.Module):
  """Two 3x3 convolutions with BatchNorm and an option-A identity shortcut."""

  features: int
  strides: int = 1
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool):
    conv = functools.partial(
        nn.Conv, kernel_size=(3, 3), padding=1, use_bias=False, kernel_init=he_normal_fan_out,
        dtype=self.dtype, param_dtype=self.param_dtype)
    norm = functools.partial(
        nn.BatchNorm, use_running_average=not train, momentum=0.9, epsilon=1e-5,
        dtype=self.dtype, param_dtype=self.param_dtype)
    y = conv(self.features, strides=(self.strides, self.strides))(x)
    y = nn.relu(norm()(y))
    y = conv(self.features)(y)
    y = norm()(y)
    shortcut = x
    if self.strides != 1 or x.shape[-1] != self.features:
      shortcut = option_a_shortcut(x, self.features, self.strides)
    return nn.relu(y + shortcut)


def option_a_shortcut(x, features: int, strides: int):
  """He et al.'s option A: subsample by ``strides`` and zero-pad the channels symmetrically."""
  x = x[:, ::strides, ::strides, :]
  extra = features - x.shape[-1]
  return jnp.pad(x, ((0, 0), (0, 0), (0, 0), (extra // 2, extra - extra // 2)))


class CifarResNet(nn.Module):
  """ResNet-(6n+2) for 32x32 images: ``(features (N, 4 width) float32, kernel (4 width, C))``.

  The classifier is a bias-free linear layer whose kernel is returned instead of applied, so
  that the head (:func:`head_outputs`) can form cosines and norms for the AM-LFS loss; its
  logits ``features @ kernel`` are the plain linear logits.
  """

  depth: int = 20
  width: int = 16
  num_classes: int = 10
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = True):
    if (self.depth - 2) % 6:
      raise ValueError(f'CifarResNet: depth must be 6n + 2, got {self.depth}.')
    blocks_per_stage = (self.depth - 2) // 6
    x = x.astype(self.dtype)
    x = nn.Conv(
        self.width, (3, 3), padding=1, use_bias=False, kernel_init=he_normal_fan_out,
        dtype=self.dtype, param_dtype=self.param_dtype, name='stem_conv')(x)
    x = nn.BatchNorm(
        use_running_average=not train, momentum=0.9, epsilon=1e-5, dtype=self.dtype,
        param_dtype=self.param_dtype, name='stem_bn')(x)
    x = nn.relu(x)
    for stage in range(3):
      for block in range(blocks_per_stage):
        strides = 2 if stage > 0 and block == 0 else 1
        x = BasicBlock(
            self.width * 2**stage, strides, dtype=self.dtype, param_dtype=self.param_dtype,
            name=f'stage{stage + 1}_block{block + 1}')(x, train)
    features = jnp.mean(x.astype(jnp.float32), axis=(1, 2))
    kernel = self.param(
        'classifier', classifier_normal, (features.shape[-1], self.num_classes),
        self.param_dtype)
    return features, kernel.astype(jnp.float32)


def head_outputs(features, kernel, logit_scale='norms'):
  """The head of the paper's eq. 4: ``(cosine (N, C), scale, logits (N, C))`` in float32.

  ``cosine[i, j] = x_i . W_j / (|x_i| |W_j|)`` is the cosine between feature ``x_i`` and class
  weight ``W_j`` (the columns of ``kernel``), from :func:`jaxloss.cosine_logits`.

  * ``logit_scale='norms'`` (the default): ``scale[i, j] = |x_i| |W_j|``, so the logits
    ``scale * cosine`` are the plain linear logits ``x_i . W_j`` (to float32 rounding) and the
    AM-LFS loss at the identity theta is exactly softmax cross-entropy of a bias-free linear
    head (the paper's eq. 4).
  * a float ``s``: ``scale = s``: logits ``s * cosine`` of normalised features and weights, as
    in CosFace/ArcFace (``s`` around 10-30 for 10 classes; ``s = 1`` is nearly uniform and
    stalls).

  ``logits = scale * cosine`` are what prediction (argmax) and the cross-entropy baseline use,
  so the baseline is the identity theta of the same head.
  """
  cosine, feature_norms, weight_norms = jaxloss.cosine_logits(
      features.astype(jnp.float32), kernel.astype(jnp.float32), weight_layout='dc',
      return_norms=True)
  if isinstance(logit_scale, str):
    if logit_scale != 'norms':
      raise ValueError(
          f"head_outputs: logit_scale must be 'norms' or a float, got {logit_scale!r}.")
    scale = feature_norms * weight_norms  # (N, 1) * (1, C)
  else:
    scale = jnp.asarray(logit_scale, jnp.float32)
  return cosine, scale, scale * cosine


def count_params(params) -> int:
  return int(sum(x.size for x in jax.tree_util.tree_leaves(params)))


def compute_dtype(name: str):
  """``'auto'``: bfloat16 on GPU/TPU, float32 on CPU; else the named dtype."""
  if name == 'auto':
    return jnp.bfloat16 if jax.default_backend() in ('gpu', 'cuda', 'rocm', 'tpu') else jnp.float32
  return jnp.dtype(name).type
