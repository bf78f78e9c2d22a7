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
from jax import lax

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



CONV_IMPLS = ('xla', 'patches')


class PatchConv(nn.Module):
  """A bias-free 'same' convolution as one matmul of image patches: ``patches @ kernel``.

  Holds the same ``kernel`` parameter as ``nn.Conv`` (shape ``(kh, kw, in, out)``, HWIO) and
  computes the same function, so the two are interchangeable on one set of parameters.

  Why: under ``jax.vmap`` over a population of copies, ``nn.Conv`` with per-copy inputs and
  kernels lowers to a grouped convolution with B groups of 16-64 channels, for which GPU
  convolution kernels are reportedly poor (``bench/NOTES.md``). Here the patches are gathered
  by pad-and-slice (plain data movement that XLA fuses) and the contraction is a
  ``dot_general``, which vmap turns into one batched matmul
  ``(B, N*H*W, kh*kw*in) @ (B, kh*kw*in, out)``. When the input is shared by all copies (the
  stem under common random numbers) the patches are gathered once and the matmul is a single
  dense ``(N*H*W, 27) @ (27, B*out)``.
  """

  features: int
  kernel_size: tuple = (3, 3)
  strides: tuple = (1, 1)
  kernel_init: Any = he_normal_fan_out
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    kh, kw = self.kernel_size
    sh, sw = self.strides
    kernel = self.param('kernel', self.kernel_init, (kh, kw, x.shape[-1], self.features),
                        self.param_dtype)
    x = x.astype(self.dtype)
    _, height, width, channels = x.shape
    out_h, out_w = -(-height // sh), -(-width // sw)
    # nn.Conv's padding=(k - 1) // 2 on each side (padding=1 for 3x3), at any stride.
    pad_h, pad_w = (kh - 1) // 2, (kw - 1) // 2
    x = jnp.pad(x, ((0, 0), (pad_h, kh - 1 - pad_h), (pad_w, kw - 1 - pad_w), (0, 0)))
    patches = jnp.concatenate(
        [x[:, i:i + sh * (out_h - 1) + 1:sh, j:j + sw * (out_w - 1) + 1:sw, :]
         for i in range(kh) for j in range(kw)], axis=-1)  # (N, H', W', kh*kw*in), HWI order
    flat_kernel = kernel.astype(self.dtype).reshape(kh * kw * channels, self.features)
    return lax.dot_general(patches, flat_kernel, (((3,), (0,)), ((), ())))


def conv_layer(impl: str, features: int, strides: int, dtype, param_dtype, name=None):
  """A 3x3 bias-free 'same' convolution with He initialisation, as ``nn.Conv`` or
  :class:`PatchConv` (``impl``, one of :data:`CONV_IMPLS`); same parameters either way."""
  if impl == 'xla':
    return nn.Conv(features, (3, 3), strides=(strides, strides), padding=1, use_bias=False,
                   kernel_init=he_normal_fan_out, dtype=dtype, param_dtype=param_dtype, name=name)
  if impl == 'patches':
    return PatchConv(features, (3, 3), (strides, strides), kernel_init=he_normal_fan_out,
                     dtype=dtype, param_dtype=param_dtype, name=name)
  raise ValueError(f'conv_impl must be one of {CONV_IMPLS}, got {impl!r}.')


class BasicBlock(nn.Module):
  """Two 3x3 convolutions with BatchNorm and an option-A identity shortcut."""

  features: int
  strides: int = 1
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  conv_impl: str = 'xla'

  @nn.compact
  def __call__(self, x, train: bool):
    def conv(features, strides=(1, 1), *, name):  # flax's auto names, for either impl
      return conv_layer(self.conv_impl, features, strides[0], self.dtype, self.param_dtype,
                        name=name)

    norm = functools.partial(
        nn.BatchNorm, use_running_average=not train, momentum=0.9, epsilon=1e-5,
        dtype=self.dtype, param_dtype=self.param_dtype)
    y = conv(self.features, strides=(self.strides, self.strides), name='Conv_0')(x)
    y = nn.relu(norm()(y))
    y = conv(self.features, name='Conv_1')(y)
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
  """ResNet-(6n+2) for 32x32 images: ``(features (N, 4 width), kernel (4 width, C))``, both
  float32 (float64 with float64 compute).

  The classifier is a bias-free linear layer whose kernel is returned instead of applied, so
  that the head (:func:`head_outputs`) can form cosines and norms for the AM-LFS loss; its
  logits ``features @ kernel`` are the plain linear logits.
  """

  depth: int = 20
  width: int = 16
  num_classes: int = 10
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  # 'xla': flax's nn.Conv; 'patches': PatchConv (same parameters, batched matmuls under vmap).
  conv_impl: str = 'xla'

  @nn.compact
  def __call__(self, x, train: bool = True):
    if (self.depth - 2) % 6:
      raise ValueError(f'CifarResNet: depth must be 6n + 2, got {self.depth}.')
    blocks_per_stage = (self.depth - 2) // 6
    x = x.astype(self.dtype)
    x = conv_layer(self.conv_impl, self.width, 1, self.dtype, self.param_dtype,
                   name='stem_conv')(x)
    x = nn.BatchNorm(
        use_running_average=not train, momentum=0.9, epsilon=1e-5, dtype=self.dtype,
        param_dtype=self.param_dtype, name='stem_bn')(x)
    x = nn.relu(x)
    for stage in range(3):
      for block in range(blocks_per_stage):
        strides = 2 if stage > 0 and block == 0 else 1
        x = BasicBlock(
            self.width * 2**stage, strides, dtype=self.dtype, param_dtype=self.param_dtype,
            conv_impl=self.conv_impl, name=f'stage{stage + 1}_block{block + 1}')(x, train)
    head_dtype = jnp.promote_types(self.dtype, jnp.float32)  # float32 for bf16 compute
    features = jnp.mean(x.astype(head_dtype), axis=(1, 2))
    kernel = self.param(
        'classifier', classifier_normal, (features.shape[-1], self.num_classes),
        self.param_dtype)
    return features, kernel.astype(head_dtype)


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
  dtype = jnp.promote_types(features.dtype, jnp.float32)
  cosine, feature_norms, weight_norms = jaxloss.cosine_logits(
      features.astype(dtype), kernel.astype(dtype), weight_layout='dc', return_norms=True)
  if isinstance(logit_scale, str):
    if logit_scale != 'norms':
      raise ValueError(
          f"head_outputs: logit_scale must be 'norms' or a float, got {logit_scale!r}.")
    scale = feature_norms * weight_norms  # (N, 1) * (1, C)
  else:
    scale = jnp.asarray(logit_scale, dtype)
  return cosine, scale, scale * cosine


def count_params(params) -> int:
  return int(sum(x.size for x in jax.tree_util.tree_leaves(params)))


def compute_dtype(name: str):
  """``'auto'``: bfloat16 on GPU/TPU, float32 on CPU; else the named dtype."""
  if name == 'auto':
    return jnp.bfloat16 if jax.default_backend() in ('gpu', 'cuda', 'rocm', 'tpu') else jnp.float32
  return jnp.dtype(name).type
