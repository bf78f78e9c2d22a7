"""CIFAR-10 input: the images on the host once (numpy), then uint8 arrays on the device.

Host side (numpy, once per run). :func:`locate` finds the data and says exactly what to do when
there is none, before anything else starts; :func:`read` loads it. Every route gives the same
arrays in the same order (the official order: ``data_batch_1`` ... ``data_batch_5``, then
``test_batch``), so the train/validation split is the same whichever reader loaded the images:

* **The official archives, numpy and pickle only** (no TensorFlow, no download):
  ``cifar-10-batches-py/`` (what torchvision and Keras download and unpack), the
  ``cifar-10-python.tar.gz`` it comes in (read without unpacking), the binary version
  ``cifar-10-binary.tar.gz`` or its ``cifar-10-batches-bin/`` folder. ``--data-dir`` names the
  folder that holds one of them (or the archive or batches folder itself).
* **A tfds data_dir** holding a prepared ``cifar10`` in the array_record format, read with
  ``tfds.data_source`` (numpy and PIL; no TensorFlow at read time). tfds stores the rows in a
  shuffled order; they are sorted by their ``id`` (``train_00042``: the index in the official
  order). *Preparing* it needs TensorFlow once: :func:`prepare_tfds` (``--prepare``), which
  writes array_record wherever the data_dir is (tfds itself writes TFRecord, which has no
  random access, for any data_dir but the default).

Then :func:`split_train_val` draws the fixed train/validation split from ``split_seed``, and
:func:`symmetric_label_noise` corrupts a fixed fraction of the *training* labels (never the
validation split that the reward uses, never the test split). :func:`with_label_noise` applies
(or checks) the configured noise on data prepared elsewhere.

Device side (inside the jitted epoch):

* :func:`augment`: pad-4 random crop and horizontal flip of a uint8 batch from one key, so all
  copies of the population that receive the same key see the same augmented batch.
* :func:`normalize`: uint8 -> per-channel standardised float.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import importlib.util
import logging
import os
import pickle
import re
import socket
import tarfile

import jax
import jax.numpy as jnp
import numpy as np

NUM_CLASSES = 10
IMAGE_SHAPE = (32, 32, 3)
# Per-channel mean and standard deviation of the 50k CIFAR-10 training images (in [0, 1]).
# (The often-copied std (0.2023, 0.1994, 0.2010) is not the pixel standard deviation.)
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)

PYTHON_FOLDER, PYTHON_TARBALL = 'cifar-10-batches-py', 'cifar-10-python.tar.gz'
BINARY_FOLDER, BINARY_TARBALL = 'cifar-10-batches-bin', 'cifar-10-binary.tar.gz'
TRAIN_BATCHES = tuple(f'data_batch_{i}' for i in range(1, 6))
TEST_BATCH = 'test_batch'
URL = 'https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz'
# Where torchvision (root='./data') and Keras (~/.keras/datasets) put their download: looked at
# when no --data-dir is given and tfds has no prepared copy.
COMMON_LOCATIONS = ('data', os.path.join('~', '.keras', 'datasets'))

log = logging.getLogger(__name__)


class DataNotFoundError(RuntimeError):
  """No usable CIFAR-10 where we looked; the message says what to run."""


class MissingDependencyError(DataNotFoundError):
  """The route asked for needs a package that is not installed; the message says which."""


def _get_started(data_dir: str | None, looked: str) -> str:
  where = data_dir or 'DIR'
  return f"""\
No CIFAR-10 found: {looked}.

Either (no TensorFlow, 170 MB, read with numpy):

  mkdir -p {where} && curl -L -o {where}/{PYTHON_TARBALL} {URL}
  python examples/amlfs_cifar10.py --data-dir {where}

(a folder holding {PYTHON_FOLDER}/ as torchvision and Keras download it, {PYTHON_TARBALL} or
{BINARY_TARBALL} all work), or prepare it once with tensorflow-datasets (needs TensorFlow):

  pip install -e ".[prepare]"
  python examples/amlfs_cifar10.py --prepare{f' --data-dir {data_dir}' if data_dir else ''}
"""


@dataclasses.dataclass
class Split:
  images: np.ndarray  # (N, 32, 32, 3) uint8
  labels: np.ndarray  # (N,) int32

  def __len__(self):
    return len(self.labels)

  def take(self, index) -> Split:
    return Split(self.images[index], self.labels[index])


@dataclasses.dataclass(frozen=True)
class Source:
  """Where the images are: ``kind`` is one of :data:`KINDS`, ``path`` a file or folder (the
  tfds data_dir for ``'tfds'``; None: tfds's default)."""
  kind: str
  path: str | None
  name: str = 'cifar10'

  def describe(self) -> str:
    what = {'python-folder': 'python batches folder', 'python-tarball': 'python-version tarball',
            'binary-folder': 'binary batches folder', 'binary-tarball': 'binary-version tarball',
            'tfds': f'tfds {self.name} (array_record)'}[self.kind]
    return f'{what} {self.path or "(tfds default data_dir)"}'


KINDS = ('python-folder', 'python-tarball', 'binary-folder', 'binary-tarball', 'tfds')


# ------------------------------------------------------------------------------------------------
# The official archives (numpy + pickle)
# ------------------------------------------------------------------------------------------------


def _from_rows(rows: np.ndarray) -> np.ndarray:
  """``(N, 3072)`` uint8 rows laid out R(1024) G(1024) B(1024) -> ``(N, 32, 32, 3)``."""
  return np.ascontiguousarray(rows.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))


def _unpickle(f) -> Split:
  batch = pickle.load(f, encoding='latin1')  # protocol-2 pickles written by Python 2
  data = np.asarray(batch['data'], np.uint8)
  return Split(_from_rows(data), np.asarray(batch['labels'], np.int32))


def _unbinary(raw: bytes) -> Split:
  """The binary version: records of 1 label byte and 3072 pixel bytes."""
  records = np.frombuffer(raw, np.uint8)
  if records.size % 3073:
    raise ValueError(f'a CIFAR-10 binary batch holds whole 3073-byte records, got {records.size} '
                     f'bytes.')
  records = records.reshape(-1, 3073)
  return Split(_from_rows(records[:, 1:]), records[:, 0].astype(np.int32))


def _concat(splits) -> Split:
  splits = list(splits)
  return Split(np.concatenate([s.images for s in splits]),
               np.concatenate([s.labels for s in splits]))


def _batch_files(binary: bool) -> tuple:
  return tuple(b + '.bin' for b in TRAIN_BATCHES + (TEST_BATCH,)) if binary else (
      TRAIN_BATCHES + (TEST_BATCH,))


def _read_folder(folder: str, binary: bool) -> tuple[Split, Split]:
  parsed = []
  for name in _batch_files(binary):
    with open(os.path.join(folder, name), 'rb') as f:
      parsed.append(_unbinary(f.read()) if binary else _unpickle(f))
  return _concat(parsed[:5]), parsed[5]


def _read_tarball(path: str, binary: bool) -> tuple[Split, Split]:
  wanted = _batch_files(binary)
  found = {}
  with tarfile.open(path, 'r:*') as tar:
    for member in tar:
      base = os.path.basename(member.name)
      if member.isfile() and base in wanted:
        f = tar.extractfile(member)
        found[base] = _unbinary(f.read()) if binary else _unpickle(f)
  missing = [n for n in wanted if n not in found]
  if missing:
    raise DataNotFoundError(f'{path} lacks {missing}: not a complete CIFAR-10 archive.')
  return _concat(found[n] for n in wanted[:5]), found[wanted[5]]


def _tar_kind(path: str) -> str | None:
  with tarfile.open(path, 'r:*') as tar:
    for member in tar:
      base = os.path.basename(member.name)
      if base == 'data_batch_1':
        return 'python-tarball'
      if base == 'data_batch_1.bin':
        return 'binary-tarball'
  return None


def _archive_in(path: str) -> Source | None:
  """The archive at ``path`` (a tarball, a batches folder, or a folder holding either)."""
  path = os.path.expanduser(path)
  if os.path.isfile(path):
    kind = _tar_kind(path) if tarfile.is_tarfile(path) else None
    return Source(kind, path) if kind else None
  if not os.path.isdir(path):
    return None
  candidates = [(path, 'data_batch_1', 'python-folder'),
                (path, 'data_batch_1.bin', 'binary-folder'),
                (os.path.join(path, PYTHON_FOLDER), 'data_batch_1', 'python-folder'),
                (os.path.join(path, BINARY_FOLDER), 'data_batch_1.bin', 'binary-folder')]
  for folder, probe, kind in candidates:
    if os.path.isfile(os.path.join(folder, probe)):
      return Source(kind, folder)
  for tarball, kind in ((PYTHON_TARBALL, 'python-tarball'), (BINARY_TARBALL, 'binary-tarball')):
    if os.path.isfile(os.path.join(path, tarball)):
      return Source(kind, os.path.join(path, tarball))
  return None


# ------------------------------------------------------------------------------------------------
# tensorflow-datasets (array_record, read with tfds.data_source)
# ------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _quiet_absl():
  """tfds warns through absl about every folder it looks at; we report ourselves."""
  logger = logging.getLogger('absl')
  level = logger.level
  logger.setLevel(max(level, logging.ERROR))
  try:
    yield
  finally:
    logger.setLevel(level)


def _has_module(name: str) -> bool:
  try:
    return importlib.util.find_spec(name) is not None
  except (ImportError, ValueError):
    return False


def _tfds_sources(data_dir: str | None, name: str):
  """``(train, test)`` tfds data sources; never downloads or prepares."""
  import tensorflow_datasets as tfds  # an optional dependency: imported on use

  # tfds.data_source asks for array_record only at the default location; elsewhere it would
  # accept TFRecord, which it cannot read by index.
  with _quiet_absl():
    return tfds.data_source(name, split=['train', 'test'], data_dir=data_dir, download=False,
                            builder_kwargs={'file_format': 'array_record'})


def _tfds_diagnosis(data_dir: str | None, name: str, error: Exception) -> str:
  """Why a tfds data_dir cannot be read, with what to run."""
  root = os.path.expanduser(data_dir or os.environ.get('TFDS_DATA_DIR')
                            or os.path.join('~', 'tensorflow_datasets'))
  files = []
  for folder, _, names in os.walk(os.path.join(root, name)):
    files += [os.path.join(folder, n) for n in names]
  shown = data_dir or root
  if any('.tfrecord' in f for f in files) and not any('.array_record' in f for f in files):
    return (f'{shown} holds {name} prepared as TFRecord (what tfds writes for a data_dir given '
            f'to it), which tfds.data_source cannot read by index. Prepare it again in the '
            f'array_record format (needs TensorFlow):\n\n'
            f'  pip install -e ".[prepare]"\n'
            f'  python examples/amlfs_cifar10.py --prepare --data-dir {shown}\n\n'
            f'(delete {os.path.join(root, name)} first), or use the official archive:\n\n'
            + _get_started(data_dir, 'no array_record files').split('\n\n', 1)[1])
  if not any('dataset_info.json' in f for f in files):
    archives = f'{PYTHON_FOLDER}/, {PYTHON_TARBALL} or {BINARY_TARBALL}'
    return _get_started(data_dir, f'{shown} holds neither {archives} nor a prepared tfds {name}')
  return _get_started(data_dir, f'{shown} holds no readable tfds {name} '
                      f'({type(error).__name__}: {str(error)[:200]})')


def _tfds_source(data_dir: str | None, name: str) -> tuple[Source | None, str | None]:
  """``(Source, None)`` when tfds has a prepared copy, else ``(None, why)``."""
  if not _has_module('tensorflow_datasets'):
    return None, 'tensorflow-datasets is not installed'
  try:
    _tfds_sources(data_dir, name)
  except Exception as error:  # noqa: BLE001 (tfds raises KeyError, AssertionError, ...)
    return None, _tfds_diagnosis(data_dir, name, error)
  return Source('tfds', data_dir, name), None


def locate(data_dir: str | None = None, name: str = 'cifar10') -> Source:
  """Where the images are. Cheap (reads no image); raises :class:`DataNotFoundError` with the
  commands to run when there is nothing usable.

  ``data_dir``: a folder holding an official archive (or the archive or its batches folder),
  or a tfds data_dir. None: tfds's default data_dir, then ``./data`` and ``~/.keras/datasets``.
  """
  if data_dir is not None:
    if not os.path.exists(os.path.expanduser(data_dir)):
      raise DataNotFoundError(_get_started(data_dir, f'{data_dir} does not exist'))
    found = _archive_in(data_dir)
    if found is not None:
      return found
    source, why = _tfds_source(data_dir, name)
    if source is not None:
      return source
    if why == 'tensorflow-datasets is not installed':
      raise DataNotFoundError(_get_started(
          data_dir, f'{data_dir} holds no {PYTHON_FOLDER}/, {PYTHON_TARBALL} or '
          f'{BINARY_TARBALL}; if it is a prepared tfds data_dir, install tensorflow-datasets to '
          f'read it: pip install -e ".[tfds]"'))
    raise DataNotFoundError(why)
  source, why = _tfds_source(None, name)
  if source is not None:
    return source
  for place in COMMON_LOCATIONS:
    found = _archive_in(place)
    if found is not None:
      return found
  places = ', '.join(COMMON_LOCATIONS)
  raise DataNotFoundError(_get_started(
      None, f'no --data-dir given, tfds has no prepared copy in its default data_dir, and '
      f'{places} hold no archive'))


def _numeric_id(example_id) -> tuple:
  """tfds's ``'train_00042'`` -> ``(42, '')``: the row's index in the official order."""
  text = example_id.decode() if isinstance(example_id, bytes) else str(example_id)
  match = re.search(r'(\d+)$', text)
  return (int(match.group(1)), '') if match else (-1, text)


def _read_tfds(source, limit: int | None) -> Split:
  """All rows of a tfds data source, in the official order (sorted by ``id``)."""
  n = len(source)
  images = np.empty((n,) + IMAGE_SHAPE, np.uint8)
  labels = np.empty((n,), np.int32)
  ids = []
  for i in range(n):  # one by one: works with any data source (and tfds's mock)
    example = source[i]
    images[i] = example['image']
    labels[i] = example['label']
    ids.append(_numeric_id(example['id']) if 'id' in example else (i, ''))
  order = sorted(range(n), key=ids.__getitem__)
  split = Split(images[order], labels[order])
  return split if limit is None else split.take(slice(0, limit))


def read(source: Source, *, num_train: int | None = None,
         num_test: int | None = None) -> tuple[Split, Split]:
  """The ``train`` (50k) and ``test`` (10k) splits of ``source`` as uint8 numpy arrays, in the
  official order; ``num_train``/``num_test`` keep the first examples."""
  if source.kind == 'tfds':
    train_source, test_source = _tfds_sources(source.path, source.name)
    log.info('Reading %s from tfds (%d train, %d test rows).', source.name, len(train_source),
             len(test_source))
    return _read_tfds(train_source, num_train), _read_tfds(test_source, num_test)
  binary = source.kind.startswith('binary')
  if source.kind.endswith('folder'):
    train, test = _read_folder(source.path, binary)
  else:
    train, test = _read_tarball(source.path, binary)
  return train.take(slice(0, num_train)), test.take(slice(0, num_test))


def load_cifar10(data_dir: str | None = None, *, num_train: int | None = None,
                 num_test: int | None = None, name: str = 'cifar10') -> tuple[Split, Split]:
  """:func:`locate` then :func:`read`: ``(train, test)`` as uint8 numpy arrays."""
  return read(locate(data_dir, name), num_train=num_train, num_test=num_test)


def prepare_tfds(data_dir: str | None = None, name: str = 'cifar10') -> Source:
  """Downloads and prepares tfds's ``cifar10`` in the array_record format (needs TensorFlow).

  tfds's cifar10 builder reads the download with ``tf.io.gfile`` and encodes every image to PNG
  with ``tf.image``; reading afterwards needs no TensorFlow (which can then be removed).
  """
  missing = [m for m in ('tensorflow', 'tensorflow_datasets', 'importlib_resources')
             if not _has_module(m)]
  if missing:
    raise MissingDependencyError(
        f'Preparing CIFAR-10 with tensorflow-datasets needs {", ".join(missing)} (tfds 4.9 '
        f'encodes the images with TensorFlow, and imports importlib_resources when building). '
        f'Install them with\n\n  pip install -e ".[prepare]"\n\n(or pip install tensorflow-cpu '
        f'tensorflow-datasets importlib_resources), then run this command again; TensorFlow can '
        f'be removed afterwards. Or skip TensorFlow altogether:\n\n'
        + _get_started(data_dir, 'preparation not possible here').split('\n\n', 1)[1])
  source, _ = _tfds_source(data_dir, name)
  if source is not None:
    return source
  host = URL.split('/')[2]
  try:
    socket.create_connection((host, 443), timeout=10).close()
  except OSError as error:
    raise DataNotFoundError(
        f'Cannot reach {host} ({error}); tfds would retry for minutes. Download {URL} on a '
        f'machine with internet access, copy it into a folder DIR here, and run\n\n'
        f'  python examples/amlfs_cifar10.py --data-dir DIR\n') from None
  import tensorflow_datasets as tfds

  builder = tfds.builder(name, data_dir=data_dir, file_format='array_record')
  builder.download_and_prepare(file_format='array_record')
  return Source('tfds', data_dir, name)


# ------------------------------------------------------------------------------------------------
# Split, label noise, the run's data
# ------------------------------------------------------------------------------------------------


def split_train_val(train: Split, num_train: int, num_val: int, seed: int) -> tuple[Split, Split]:
  """A fixed random split of the training images into ``num_train`` and ``num_val`` examples.

  The permutation depends only on ``seed`` and the number of images, so every run (AM-LFS,
  random, baseline, any noise level, any reader) trains and validates on the same images.
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


def _sha256(*arrays) -> str:
  digest = hashlib.sha256()
  for a in arrays:
    a = np.ascontiguousarray(a)
    digest.update(f'{a.dtype}{a.shape}'.encode())
    digest.update(a.tobytes())
  return digest.hexdigest()


@dataclasses.dataclass
class Data:
  """What a run trains, validates and tests on (host arrays).

  ``label_noise``/``noise_seed``: the noise already in ``train.labels`` (``flipped`` marks the
  changed labels; None: none changed). :func:`with_label_noise` applies a configuration's noise
  to clean data and refuses data that carry another noise.
  """
  train: Split
  val: Split
  test: Split
  flipped: np.ndarray | None = None  # (num_train,) bool
  label_noise: float = 0.0
  noise_seed: int | None = None
  source: str = 'given by the caller'

  def __post_init__(self):
    if self.flipped is None:
      self.flipped = np.zeros(len(self.train), bool)

  def summary(self) -> dict:
    return {'num_train': len(self.train), 'num_val': len(self.val), 'num_test': len(self.test),
            'noisy_train_labels': int(self.flipped.sum()), 'label_noise': self.label_noise,
            'source': self.source}

  def fingerprint(self) -> dict:
    """sha256 of every split's images and labels (training labels as trained on)."""
    return {name: _sha256(split.images, split.labels)
            for name, split in (('train', self.train), ('val', self.val), ('test', self.test))}


def with_label_noise(data: Data, config) -> Data:
  """``data`` with ``config.label_noise`` on its training labels (``config.noise_seed``).

  Clean data get the noise; data that already carry the same noise pass; data that carry
  another noise raise ``ValueError`` (a run named ``*-noise20`` must train on 20% wrong labels).
  """
  same = abs(data.label_noise - config.label_noise) < 1e-12
  if same and (config.label_noise == 0 or data.noise_seed in (None, config.noise_seed)):
    return data
  if data.label_noise == 0:
    noisy, flipped = symmetric_label_noise(data.train.labels, config.label_noise, NUM_CLASSES,
                                           config.noise_seed)
    return dataclasses.replace(data, train=Split(data.train.images, noisy), flipped=flipped,
                               label_noise=config.label_noise, noise_seed=config.noise_seed)
  raise ValueError(
      f'the data carry {data.label_noise:.0%} label noise (noise_seed {data.noise_seed}) but the '
      f'configuration asks for {config.label_noise:.0%} (noise_seed {config.noise_seed}): pass '
      f'clean data (label_noise=0) and let the run add its noise.')


def prepare_data(config, *, loader=None, source: Source | None = None) -> Data:
  """Loads CIFAR-10 and applies the run's split and label noise (training split only).

  ``source``: from :func:`locate` (default: ``locate(config.data_dir)``). ``loader``: a
  function ``(data_dir, *, num_train, num_test, name) -> (train, test)`` instead (tests).
  """
  limit = dict(num_train=config.num_train + config.num_val, num_test=config.num_test)
  if loader is not None:
    full_train, test = loader(config.data_dir, name=config.dataset, **limit)
    described = getattr(loader, '__name__', 'a loader')
  else:
    source = source or locate(config.data_dir, config.dataset)
    full_train, test = read(source, **limit)
    described = source.describe()
  train, val = split_train_val(full_train, config.num_train, config.num_val, config.split_seed)
  return with_label_noise(Data(train, val, test, source=described), config)


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
