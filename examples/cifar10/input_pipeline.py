"""CIFAR-10 input: checked uint8 arrays on the host, augmentation and normalisation on the device.

Host side (numpy, once per run): :func:`locate` finds the data or says what to run,
:func:`read` loads and checks it, :func:`prepare_data` draws the run's train/validation split
and label noise. Every route gives the same arrays in the official order (``data_batch_1`` ...
``data_batch_5``, then ``test_batch``), so the split is the same whichever route read them:

* the official archives, with numpy and pickle (no TensorFlow): ``cifar-10-batches-py/`` (what
  torchvision and Keras download), the ``cifar-10-python.tar.gz`` it comes in (read without
  unpacking), the binary version ``cifar-10-binary.tar.gz`` or its ``cifar-10-batches-bin/``;
* a tfds data_dir with ``cifar10`` prepared in array_record, read with ``tfds.data_source`` (no
  TensorFlow at read time; tfds stores the rows shuffled, they are sorted back by their ``id``).
  Preparing it needs TensorFlow once: :func:`prepare_tfds`.

Bad data stop a run before anything compiles: every batch must be readable and complete, hold
``(N, 3072)`` pixel rows (32x32x3) and as many labels as images, all in 0..9, else a
:class:`DataError` names the file and the problem in one line.

Device side (inside the jitted epoch): :func:`augment` (pad-4 random crop and flip of a uint8
batch from one key) and :func:`normalize` (per-channel standardisation).
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import logging
import os
import pickle
import re
import socket
import tarfile
import zlib

import jax
import jax.numpy as jnp
import numpy as np

NUM_CLASSES = 10
IMAGE_SHAPE = (32, 32, 3)
ROW_BYTES = 32 * 32 * 3
# Per-channel mean and standard deviation of the 50k CIFAR-10 training images (in [0, 1]).
# (The often-copied std (0.2023, 0.1994, 0.2010) is not the pixel standard deviation.)
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)

PYTHON_FOLDER, PYTHON_TARBALL = 'cifar-10-batches-py', 'cifar-10-python.tar.gz'
BINARY_FOLDER, BINARY_TARBALL = 'cifar-10-batches-bin', 'cifar-10-binary.tar.gz'
TRAIN_BATCHES = tuple(f'data_batch_{i}' for i in range(1, 6))
TEST_BATCH = 'test_batch'
BATCH_FILES = TRAIN_BATCHES + (TEST_BATCH,)  # the python version; the binary one adds '.bin'
WANTED = frozenset(BATCH_FILES + tuple(n + '.bin' for n in BATCH_FILES))
URL = 'https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz'
# Where torchvision (root='./data') and Keras (~/.keras/datasets) put their download: looked at
# when no --data-dir is given and tfds has no prepared copy.
COMMON_LOCATIONS = ('data', os.path.join('~', '.keras', 'datasets'))
ARCHIVES = f'{PYTHON_FOLDER}/, {PYTHON_TARBALL} or {BINARY_TARBALL}'

log = logging.getLogger(__name__)


class DataNotFoundError(RuntimeError):
  """No usable CIFAR-10 where we looked; the message says what to run."""


class MissingDependencyError(DataNotFoundError):
  """The route asked for needs a package that is not installed; the message says which."""


class DataError(ValueError):
  """The data are there but unusable (or fewer than asked for): one line naming the file and
  the problem."""


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


def check_split(images, labels, where: str) -> Split:
  """``Split(images, labels)`` if they are CIFAR-10's, else :class:`DataError` naming ``where``:
  uint8 ``(N, 32, 32, 3)`` images, ``N > 0`` integer labels in 0..9."""
  images, labels = np.asarray(images), np.asarray(labels)
  problem = None
  if images.dtype != np.uint8 or images.shape[1:] != IMAGE_SHAPE:
    problem = f'images must be uint8 (N, 32, 32, 3), got {images.dtype} {images.shape}'
  elif not len(images):
    problem = 'no images'
  elif labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
    problem = f'labels must be a list of integers, got {labels.dtype} of shape {labels.shape}'
  elif len(labels) != len(images):
    problem = f'{len(labels):,} labels for {len(images):,} images'
  else:
    bad = np.flatnonzero((labels < 0) | (labels >= NUM_CLASSES))
    if bad.size:
      problem = (f'{bad.size:,} of {len(labels):,} labels are outside 0..{NUM_CLASSES - 1} '
                 f'(the first: {labels[bad[0]]} at index {bad[0]})')
  if problem:
    raise DataError(f'{where}: {problem}.')
  return Split(images, labels.astype(np.int32))


@dataclasses.dataclass(frozen=True)
class Source:
  """Where the images are: ``kind`` 'folder' (of batch files), 'tarball' or 'tfds' (``path``:
  its data_dir, None for tfds's default)."""
  kind: str
  path: str | None
  name: str = 'cifar10'

  def describe(self) -> str:
    if self.kind == 'tfds':
      return f'tfds {self.name} (array_record) in {self.path or "the default data_dir"}'
    return f'{self.kind} {self.path}'


# ------------------------------------------------------------------------------------------------
# The official archives (numpy + pickle)
# ------------------------------------------------------------------------------------------------


def _parse(name: str, raw: bytes, where: str) -> Split:
  """One batch file, checked: a protocol-2 pickle ``{'data': (N, 3072) uint8, 'labels': [N]}``
  or, for ``*.bin``, records of 1 label byte and 3072 pixel bytes; pixels R(1024) G B."""
  if name.endswith('.bin'):
    if not raw or len(raw) % (ROW_BYTES + 1):
      raise DataError(f'{where}: {len(raw):,} bytes are not whole {ROW_BYTES + 1}-byte records '
                      f'(1 label + {ROW_BYTES} pixels): a truncated or damaged file.')
    records = np.frombuffer(raw, np.uint8).reshape(-1, ROW_BYTES + 1)
    rows, labels = records[:, 1:], records[:, 0]
  else:
    try:
      batch = pickle.loads(raw, encoding='latin1')  # written by Python 2
    except Exception as error:  # noqa: BLE001 (damaged pickles raise anything)
      raise DataError(f'{where}: not a readable pickle ({type(error).__name__}: {error}): a '
                      f'truncated or damaged file.') from None
    keys = {k.decode('latin1') if isinstance(k, bytes) else k: k for k in (
        batch if isinstance(batch, dict) else ())}
    if not {'data', 'labels'} <= set(keys):
      raise DataError(f"{where}: a CIFAR-10 batch is a dict with 'data' and 'labels', got "
                      f'{sorted(map(str, keys)) if keys else type(batch).__name__}.')
    try:
      rows, labels = np.asarray(batch[keys['data']]), np.asarray(batch[keys['labels']])
    except ValueError as error:  # ragged lists
      raise DataError(f"{where}: 'data' and 'labels' are not arrays ({error}).") from None
    if rows.dtype != np.uint8 or rows.ndim != 2 or rows.shape[1] != ROW_BYTES:
      raise DataError(f"{where}: 'data' must be uint8 rows of {ROW_BYTES} bytes (32x32x3 "
                      f'pixels), got {rows.dtype} {rows.shape}.')
  images = np.ascontiguousarray(rows.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
  return check_split(images, labels, where)


def _batch_files(source: Source):
  """``(name, where, bytes)`` of every batch file of a folder or tarball."""
  if source.kind == 'folder':
    for name in sorted(WANTED & set(os.listdir(source.path))):
      with open(os.path.join(source.path, name), 'rb') as f:
        yield name, f.name, f.read()
    return
  with tarfile.open(source.path, 'r:*') as tar:
    for member in tar:
      name = os.path.basename(member.name)
      if member.isfile() and name in WANTED:
        yield name, f'{source.path} ({member.name})', tar.extractfile(member).read()


def _read_archive(source: Source) -> tuple[Split, Split]:
  try:
    if source.kind == 'tarball' and not tarfile.is_tarfile(source.path):
      raise DataError(f'{source.path}: not a tar archive (plain, gzip, bz2 or xz): a damaged '
                      f'download?')
    found = {name: _parse(name, raw, where) for name, where, raw in _batch_files(source)}
  except (tarfile.TarError, OSError, EOFError, zlib.error) as error:
    what = 'a truncated or damaged tar archive' if source.kind == 'tarball' else 'unreadable'
    raise DataError(f'{getattr(error, "filename", None) or source.path}: {what} '
                    f'({type(error).__name__}: {error}).') from None
  suffix = '.bin' if found and not set(found) & set(BATCH_FILES) else ''
  missing = [n + suffix for n in BATCH_FILES if n + suffix not in found]
  if missing:
    raise DataError(f'{source.path}: no {", ".join(missing)} (CIFAR-10 has data_batch_1 ... '
                    f'data_batch_5 and test_batch): an incomplete copy.')
  train = [found[n + suffix] for n in TRAIN_BATCHES]
  images, labels = (np.concatenate([getattr(s, a) for s in train]) for a in ('images', 'labels'))
  return Split(images, labels), found[TEST_BATCH + suffix]


def _archive_in(path: str) -> Source | None:
  """The archive at ``path``: a tarball, a folder of batch files, or a folder holding either."""
  if os.path.isfile(path):
    return Source('tarball', path)
  for folder in (path, os.path.join(path, PYTHON_FOLDER), os.path.join(path, BINARY_FOLDER)):
    if os.path.isdir(folder) and WANTED & set(os.listdir(folder)):
      return Source('folder', folder)
  for tarball in (os.path.join(path, PYTHON_TARBALL), os.path.join(path, BINARY_TARBALL)):
    if os.path.isfile(tarball):
      return Source('tarball', tarball)
  return None


# ------------------------------------------------------------------------------------------------
# tensorflow-datasets (array_record, read with tfds.data_source)
# ------------------------------------------------------------------------------------------------


def _has_module(name: str) -> bool:
  try:
    return importlib.util.find_spec(name) is not None
  except (ImportError, ValueError):
    return False


def _tfds_sources(data_dir: str | None, name: str):
  """``(train, test)`` tfds data sources; never downloads or prepares."""
  import tensorflow_datasets as tfds  # an optional dependency: imported on use

  absl = logging.getLogger('absl')  # tfds warns about every folder it looks at; we report
  level = absl.level
  absl.setLevel(max(level, logging.ERROR))
  try:  # array_record: elsewhere than the default data_dir tfds would accept TFRecord files,
    # which it cannot read by index.
    return tfds.data_source(name, split=['train', 'test'], data_dir=data_dir, download=False,
                            builder_kwargs={'file_format': 'array_record'})
  finally:
    absl.setLevel(level)


def _tfds_source(data_dir: str | None, name: str) -> tuple[Source | None, str]:
  """``(Source, '')`` when tfds has a prepared copy, else ``(None, why and what to run)``."""
  if not _has_module('tensorflow_datasets'):
    return None, _get_started(data_dir, f'{data_dir} holds no {ARCHIVES}; to read a prepared '
                              f'tfds data_dir: pip install -e ".[tfds]"')
  try:
    _tfds_sources(data_dir, name)
    return Source('tfds', data_dir, name), ''
  except Exception as error:  # noqa: BLE001 (tfds raises KeyError, AssertionError, ...)
    why = f'no readable tfds {name} ({type(error).__name__}: {str(error)[:200]})'
  root = os.path.expanduser(data_dir or os.environ.get('TFDS_DATA_DIR') or '~/tensorflow_datasets')
  files = ' '.join(n for _, _, names in os.walk(os.path.join(root, name)) for n in names)
  if '.tfrecord' in files and '.array_record' not in files:  # what tfds writes by itself
    why = (f'{name} prepared as TFRecord, which tfds.data_source cannot read by index: delete '
           f'{os.path.join(root, name)} and prepare it again in array_record (--prepare)')
  elif 'dataset_info.json' not in files:
    why = f'neither {ARCHIVES} nor a prepared tfds {name}'
  return None, _get_started(data_dir, f'{data_dir or root} holds {why}')


def _read_tfds(rows, where: str) -> Split:
  """All rows of a tfds data source (one by one: any data source, tfds's mock too), sorted by
  their ``id`` (``train_00042``: the index in the official order)."""
  n = len(rows)
  images = np.empty((n,) + IMAGE_SHAPE, np.uint8)
  labels = np.empty((n,), np.int64)
  ids = []
  for i in range(n):
    row = rows[i]
    images[i], labels[i] = row['image'], row['label']
    text = row.get('id', str(i))
    text = text.decode() if isinstance(text, bytes) else str(text)
    number = re.search(r'\d+$', text)
    ids.append((int(number.group()) if number else -1, text))
  order = sorted(range(n), key=ids.__getitem__)
  return check_split(images[order], labels[order], where)


# ------------------------------------------------------------------------------------------------
# Locate, read, prepare
# ------------------------------------------------------------------------------------------------


def locate(data_dir: str | None = None, name: str = 'cifar10') -> Source:
  """Where the images are. Cheap (reads no image); raises :class:`DataNotFoundError` with the
  commands to run when there is nothing usable.

  ``data_dir``: a folder holding an official archive (or the archive or its batches folder),
  or a tfds data_dir. None: tfds's default data_dir, then ``./data`` and ``~/.keras/datasets``.
  """
  if data_dir is not None:
    path = os.path.expanduser(data_dir)
    if not os.path.exists(path):
      raise DataNotFoundError(_get_started(data_dir, f'{data_dir} does not exist'))
    source, why = _archive_in(path), ''
    if source is None:
      source, why = _tfds_source(data_dir, name)
    if source is None:
      raise DataNotFoundError(why)
    return source
  source = _tfds_source(None, name)[0]
  for place in COMMON_LOCATIONS:
    source = source or _archive_in(os.path.expanduser(place))
  if source is None:
    raise DataNotFoundError(_get_started(
        None, f'no --data-dir given, tfds has no prepared copy in its default data_dir, and '
        f'{", ".join(COMMON_LOCATIONS)} hold no archive'))
  return source


def read(source: Source, *, num_train: int | None = None,
         num_test: int | None = None) -> tuple[Split, Split]:
  """The ``train`` (50k) and ``test`` (10k) splits of ``source``, checked, as uint8 numpy arrays
  in the official order; ``num_train``/``num_test`` keep the first examples. Raises
  :class:`DataError` naming the file and the problem."""
  if source.kind == 'tfds':
    rows = _tfds_sources(source.path, source.name)
    log.debug('Reading %s from tfds (%d train, %d test rows).', source.name, *map(len, rows))
    train, test = (_read_tfds(r, f'{source.describe()}, {s} split')
                   for r, s in zip(rows, ('train', 'test')))
  else:
    train, test = _read_archive(source)
  return train.take(slice(0, num_train)), test.take(slice(0, num_test))


def load_cifar10(data_dir: str | None = None, *, num_train: int | None = None,
                 num_test: int | None = None, name: str = 'cifar10') -> tuple[Split, Split]:
  """:func:`locate` then :func:`read`: ``(train, test)`` as uint8 numpy arrays."""
  return read(locate(data_dir, name), num_train=num_train, num_test=num_test)


def prepare_tfds(data_dir: str | None = None, name: str = 'cifar10') -> Source:
  """Downloads and prepares tfds's ``cifar10`` in the array_record format (needs TensorFlow:
  tfds's builder reads the download with ``tf.io.gfile`` and encodes every image to PNG with
  ``tf.image``; reading afterwards needs no TensorFlow)."""
  missing = [m for m in ('tensorflow', 'tensorflow_datasets', 'importlib_resources')
             if not _has_module(m)]
  if missing:
    raise MissingDependencyError(
        f'Preparing CIFAR-10 with tensorflow-datasets needs {", ".join(missing)}: pip install -e '
        f'".[prepare]" (TensorFlow can be removed afterwards). Or skip TensorFlow altogether:\n\n'
        + _get_started(data_dir, '').split('\n\n', 1)[1])
  source, _ = _tfds_source(data_dir, name)
  if source is not None:
    return source
  host = URL.split('/')[2]
  try:  # offline, tfds would retry for minutes
    socket.create_connection((host, 443), timeout=10).close()
  except OSError as error:
    raise DataNotFoundError(
        f'Cannot reach {host} ({error}). Download {URL} on a machine with internet access, copy '
        f'it into a folder DIR here, and run\n\n'
        f'  python examples/amlfs_cifar10.py --data-dir DIR\n') from None
  import tensorflow_datasets as tfds

  builder = tfds.builder(name, data_dir=data_dir, file_format='array_record')
  builder.download_and_prepare(file_format='array_record')
  return Source('tfds', data_dir, name)


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
  """What a run trains, validates and tests on (host arrays; checked as :func:`check_split`).

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
    for name in ('train', 'val', 'test'):
      split = getattr(self, name)
      setattr(self, name, check_split(split.images, split.labels, f'{self.source}, {name} split'))
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


def _check_sizes(config, num_train: int, num_test: int, where: str) -> None:
  """:class:`DataError` (naming the flags to set) when ``where``, holding ``num_train``
  training and ``num_test`` test images, has fewer than ``config`` asks for."""
  if config.num_val < 1 or (config.num_test is not None and config.num_test < 1):
    raise DataError(f'--num-val and --num-test must be at least 1 (--num-test none: all test '
                    f'images), got {config.num_val} and {config.num_test}.')
  wanted = config.num_train + config.num_val
  if wanted > num_train:
    val = max(1, num_train // 10)
    raise DataError(
        f'{where} holds {num_train:,} training images, fewer than --num-train '
        f'{config.num_train} + --num-val {config.num_val} = {wanted}: set --num-train and '
        f'--num-val to at most {num_train} together (e.g. --num-train {num_train - val} '
        f'--num-val {val}).')
  if config.num_test is not None and config.num_test > num_test:
    raise DataError(f'{where} holds {num_test:,} test images, fewer than --num-test '
                    f'{config.num_test}: set --num-test {num_test} or less (none: all of them).')


def prepare_data(config, *, loader=None, source: Source | None = None) -> Data:
  """Loads CIFAR-10 and applies the run's split and label noise (training split only).

  ``source``: from :func:`locate` (default: ``locate(config.data_dir)``). ``loader``: a
  function ``(data_dir, *, num_train, num_test, name) -> (train, test)`` instead (tests).
  Raises :class:`DataError` for bad data, or fewer images than the configuration asks for.
  """
  limit = dict(num_train=config.num_train + config.num_val, num_test=config.num_test)
  if loader is not None:
    full_train, test = loader(config.data_dir, name=config.dataset, **limit)
    described = getattr(loader, '__name__', 'a loader')
  else:
    source = source or locate(config.data_dir, config.dataset)
    full_train, test = read(source, **limit)
    described = source.describe()
  _check_sizes(config, len(full_train), len(test), described)
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
