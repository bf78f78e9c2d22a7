"""CIFAR-10 input: tensorflow-datasets on the host once, then uint8 arrays on the device.

Host side (numpy, once per run):

* :func:`load_cifar10` reads the ``train`` and ``test`` splits with ``tfds.data_source`` (the
  array_record format, read with numpy and PIL; no TensorFlow at read time). The first call
  downloads (~170 MB) and prepares the dataset, and **preparing needs TensorFlow**: tfds 4.9's
  ``cifar10`` builder reads the downloaded batches with ``tf.io.gfile`` and encodes every image
  to PNG with ``tf.image``. Without it we stop with :class:`MissingDependencyError`, whose
  message says what to install; afterwards TensorFlow can be removed.
* :func:`split_train_val` draws the fixed 45k/5k train/validation split from ``split_seed``.
* :func:`symmetric_label_noise` corrupts a fixed fraction of the *training* labels (never the
  validation split that the reward uses, never the test split).

Device side (inside the jitted epoch):

* :func:`augment`: pad-4 random crop and horizontal flip of a uint8 batch from one key, so all
  copies of the population that receive the same key see the same augmented batch.
* :func:`normalize`: uint8 -> per-channel standardised float.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

NUM_CLASSES = 10
IMAGE_SHAPE = (32, 32, 3)
# Per-channel mean and standard deviation of the 50k CIFAR-10 training images (in [0, 1]).
# (The often-copied std (0.2023, 0.1994, 0.2010) is not the pixel standard deviation.)
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)

MISSING_TENSORFLOW_MESSAGE = """\
CIFAR-10 is not prepared yet in {data_dir}, and preparing it needs TensorFlow.

tensorflow-datasets builds its cifar10 dataset once: it downloads the binary batches (~170 MB)
and re-encodes the images with TensorFlow (tf.io.gfile, tf.image). Reading the prepared dataset
afterwards (tfds.data_source, the array_record format) needs no TensorFlow. Either

  (a) prepare it with a throw-away environment (no version conflicts with JAX):

    python -m venv /tmp/tfds-prepare
    /tmp/tfds-prepare/bin/pip install tensorflow-cpu tensorflow-datasets importlib_resources
    /tmp/tfds-prepare/bin/python -c "import tensorflow_datasets as t; t.data_source('cifar10')"

  (b) or install TensorFlow here for this one step (uninstall it afterwards if you like):

    pip install tensorflow-cpu importlib_resources

then run this command again. With a custom location, pass the same directory as
--data-dir (and data_dir='...' to tfds.data_source in (a)). importlib_resources: tfds 4.9.10
imports it when building a dataset but declares it only for Python < 3.9.

The error was: {error}
"""


class MissingDependencyError(RuntimeError):
  """Preparing the tfds dataset needs a package that is not installed."""


@dataclasses.dataclass
class Split:
  images: np.ndarray  # (N, 32, 32, 3) uint8
  labels: np.ndarray  # (N,) int32

  def __len__(self):
    return len(self.labels)

  def take(self, index) -> 'Split':
    return Split(self.images[index], self.labels[index])


def _read(source, limit: Optional[int]) -> Split:
  """All examples of a tfds data source as numpy arrays (one by one: works with the mock too)."""
  n = len(source) if limit is None else min(limit, len(source))
  images = np.empty((n,) + IMAGE_SHAPE, np.uint8)
  labels = np.empty((n,), np.int32)
  for i in range(n):
    example = source[i]
    images[i] = example['image']
    labels[i] = example['label']
  return Split(images, labels)


def load_cifar10(data_dir: Optional[str] = None, *, num_train: Optional[int] = None,
                 num_test: Optional[int] = None, name: str = 'cifar10') -> tuple[Split, Split]:
  """The CIFAR-10 ``train`` (50k) and ``test`` (10k) splits as uint8 numpy arrays.

  ``num_train``/``num_test`` read only the first examples (small configurations).
  Raises :class:`MissingDependencyError` with installation advice when the dataset is not
  prepared and TensorFlow is missing.
  """
  import tensorflow_datasets as tfds  # an optional dependency: imported on use

  try:
    sources = tfds.data_source(name, split=['train', 'test'], data_dir=data_dir)
  except ModuleNotFoundError as error:
    if error.name in ('tensorflow', 'importlib_resources'):
      shown_dir = data_dir or '$TFDS_DATA_DIR or ~/tensorflow_datasets'
      raise MissingDependencyError(
          MISSING_TENSORFLOW_MESSAGE.format(data_dir=shown_dir, error=error)) from error
    raise
  train_source, test_source = sources
  logging.info('Reading %s from tfds (%d train, %d test examples).', name, len(train_source),
               len(test_source))
  return _read(train_source, num_train), _read(test_source, num_test)


def split_train_val(train: Split, num_train: int, num_val: int, seed: int) -> tuple[Split, Split]:
  """A fixed random split of the training images into ``num_train`` and ``num_val`` examples.

  The permutation depends only on ``seed`` and the number of images, so every run (AM-LFS,
  random, baseline, any noise level) trains and validates on the same images.
  """
  if num_train + num_val > len(train):
    raise ValueError(
        f'split_train_val: num_train + num_val = {num_train + num_val} exceeds the '
        f'{len(train)} available training images.')
  order = np.random.default_rng(np.random.SeedSequence([seed, 0x5EED])).permutation(len(train))
  return train.take(np.sort(order[:num_train])), train.take(np.sort(order[num_train:][:num_val]))


def symmetric_label_noise(labels: np.ndarray, ratio: float, num_classes: int,
                          seed: int) -> tuple[np.ndarray, np.ndarray]:
  """Symmetric label noise: ``round(ratio * N)`` labels moved to a *different* class.

  The definition of the AM-LFS paper ("labeled classes can randomly flip to any other label"):
  exactly ``round(ratio * N)`` examples, chosen uniformly without replacement, get a label drawn
  uniformly from the ``num_classes - 1`` *other* classes. So the fraction of wrong labels is
  exactly ``ratio`` (the other common definition, re-drawing from all classes, keeps the true
  label with probability 1/C and corrupts only ``ratio * (C - 1) / C``).

  Deterministic in ``seed``. Returns ``(noisy_labels, flipped)`` with ``flipped`` a bool mask.
  """
  labels = np.asarray(labels)
  if not 0.0 <= ratio < 1.0:
    raise ValueError(f'symmetric_label_noise: ratio must be in [0, 1), got {ratio}.')
  rng = np.random.default_rng(np.random.SeedSequence([seed, 0x4015E]))
  n = len(labels)
  flipped = np.zeros(n, bool)
  flipped[rng.choice(n, size=int(round(ratio * n)), replace=False)] = True
  shift = rng.integers(1, num_classes, size=n)  # 1..C-1: never the true class
  noisy = np.where(flipped, (labels + shift) % num_classes, labels).astype(labels.dtype)
  return noisy, flipped


@dataclasses.dataclass
class Data:
  """What a run trains, validates and tests on (host arrays)."""
  train: Split
  val: Split
  test: Split
  flipped: np.ndarray  # (num_train,) bool: which training labels the noise changed

  def summary(self) -> dict:
    return {'num_train': len(self.train), 'num_val': len(self.val), 'num_test': len(self.test),
            'noisy_train_labels': int(self.flipped.sum())}


def prepare_data(config, *, loader=load_cifar10) -> Data:
  """Loads CIFAR-10 and applies the run's split and label noise (training split only)."""
  full_train, test = loader(
      config.data_dir, num_train=config.num_train + config.num_val, num_test=config.num_test,
      name=config.dataset)
  train, val = split_train_val(full_train, config.num_train, config.num_val, config.split_seed)
  noisy, flipped = symmetric_label_noise(
      train.labels, config.label_noise, NUM_CLASSES, config.noise_seed)
  return Data(Split(train.images, noisy), val, test, flipped)


# ------------------------------------------------------------------------------------------------
# On device
# ------------------------------------------------------------------------------------------------


def normalize(images, dtype=jnp.float32):
  """uint8 ``(..., 32, 32, 3)`` -> ``(x / 255 - mean) / std`` in ``dtype`` (float32 arithmetic)."""
  x = images.astype(jnp.float32) / 255.0
  x = (x - jnp.asarray(MEAN, jnp.float32)) / jnp.asarray(STD, jnp.float32)
  return x.astype(dtype)


def augment(key, images, padding: int = 4):
  """He et al.'s augmentation of a uint8 batch ``(N, H, W, C)``: random crop and flip.

  Each image is zero-padded by ``padding`` pixels on every side (black, as torchvision's
  ``RandomCrop(32, padding=4)``), a ``H x W`` window is cut at a uniformly random offset in
  ``[0, 2 * padding]`` per axis, and the result is mirrored left-right with probability 1/2.
  Everything is drawn from ``key``: the same key gives the same batch.
  """
  n, h, w, c = images.shape
  crop_key, flip_key = jax.random.split(key)
  # Flat draws, reshaped: XLA on the CPU compiles multi-dimensional threefry draws slowly.
  offsets = jax.random.randint(crop_key, (2 * n,), 0, 2 * padding + 1).reshape(n, 2)
  flips = jax.random.bernoulli(flip_key, 0.5, (n,))
  padded = jnp.pad(images, ((0, 0), (padding, padding), (padding, padding), (0, 0)))

  def one(image, offset, flip):
    crop = jax.lax.dynamic_slice(image, (offset[0], offset[1], 0), (h, w, c))
    return jnp.where(flip, crop[:, ::-1], crop)

  return jax.vmap(one)(padded, offsets, flips)
