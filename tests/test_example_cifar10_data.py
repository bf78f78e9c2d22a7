"""The CIFAR-10 example's readers on real images: a shared subset in the official layout.

``../shared/data/cifar10-subset`` (relative to the repository) holds real CIFAR-10 images as
``cifar-10-batches-py/`` (4,136 training images over ``data_batch_1..5``, and 1,034 further
*training* images of official batch 5 as ``test_batch``). The expectations here come from
reading the pickles independently (``encoding='bytes'``), not from the example's reader.

Covered: the python-batches folder, a ``cifar-10-python.tar.gz`` built from it, the binary
version (a tiny synthetic ``cifar-10-binary.tar.gz`` and its folder), the tfds route (rows
served shuffled under ``tfds.testing.mock_data``, sorted back by id), the same split whichever
reader, the messages when there is no data, and label noise on data given to ``train.run``.
Damaged data (each case, and the CLI's one-line error) are in ``test_example_cifar10_bad_data.py``.
"""

import os
import pickle
import sys
import tarfile

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(REPO, 'examples')
if EXAMPLES not in sys.path:
  sys.path.insert(0, EXAMPLES)

from cifar10 import configs, input_pipeline  # noqa: E402

SUBSET = os.path.normpath(os.path.join(REPO, '..', 'shared', 'data', 'cifar10-subset'))
BATCHES = os.path.join(SUBSET, 'cifar-10-batches-py')
needs_subset = pytest.mark.skipif(not os.path.isdir(BATCHES),
                                  reason=f'the shared CIFAR-10 subset is not at {SUBSET}')


def _pickled(name):
  """One batch read independently of the example: bytes keys, (N, 3072) rows, R G B planes."""
  with open(os.path.join(BATCHES, name), 'rb') as f:
    batch = pickle.load(f, encoding='bytes')
  rows = np.asarray(batch[b'data'], np.uint8)
  images = np.stack([rows[:, :1024], rows[:, 1024:2048], rows[:, 2048:]], -1).reshape(-1, 32, 32,
                                                                                      3)
  return images, np.asarray(batch[b'labels'], np.int64)


@pytest.fixture(scope='module')
def expected():
  parts = [_pickled(f'data_batch_{i}') for i in range(1, 6)]
  train = (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))
  return train, _pickled('test_batch')


def _assert_same(split, images, labels):
  assert split.images.dtype == np.uint8 and split.images.shape == images.shape
  assert split.labels.dtype == np.int32
  np.testing.assert_array_equal(split.images, images)
  np.testing.assert_array_equal(split.labels, labels)


@needs_subset
def test_python_folder_reader_gives_the_pickled_images(expected):
  (train_x, train_y), (test_x, test_y) = expected
  assert (len(train_y), len(test_y)) == (4136, 1034)
  for where in (SUBSET, BATCHES):  # the folder holding cifar-10-batches-py/, or that folder
    source = input_pipeline.locate(where)
    assert source.kind == 'folder'
    train, test = input_pipeline.read(source)
    _assert_same(train, train_x, train_y)
    _assert_same(test, test_x, test_y)
  # The first image of the official training set is a frog (class 6) and has these pixels.
  assert train.labels[0] == 6 and tuple(train.images[0, 0, 0]) == (59, 62, 63)
  head, _ = input_pipeline.read(input_pipeline.locate(SUBSET), num_train=10, num_test=3)
  _assert_same(head, train_x[:10], train_y[:10])


@needs_subset
def test_python_tarball_reader_equals_the_folder(tmp_path, expected):
  (train_x, train_y), (test_x, test_y) = expected
  tarball = tmp_path / input_pipeline.PYTHON_TARBALL
  with tarfile.open(tarball, 'w:gz') as tar:  # as the official archive: one top folder
    tar.add(BATCHES, arcname='cifar-10-batches-py')
  for where in (str(tmp_path), str(tarball)):
    source = input_pipeline.locate(where)
    assert source.kind == 'tarball' and source.path == str(tarball)
    train, test = input_pipeline.read(source)
    _assert_same(train, train_x, train_y)
    _assert_same(test, test_x, test_y)


def _binary_batches(rng, sizes):
  """Synthetic binary-version batches: records of 1 label byte + R(1024) G(1024) B(1024)."""
  out = {}
  for name, n in zip([f'data_batch_{i}.bin' for i in range(1, 6)] + ['test_batch.bin'], sizes):
    labels = rng.integers(0, 10, n).astype(np.uint8)
    images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    planes = images.transpose(0, 3, 1, 2).reshape(n, 3072)
    out[name] = (np.concatenate([labels[:, None], planes], 1).tobytes(), images, labels)
  return out


def test_binary_version_reader_tarball_and_folder(tmp_path):
  batches = _binary_batches(np.random.default_rng(0), (3, 2, 4, 1, 2, 3))
  folder = tmp_path / 'unpacked' / input_pipeline.BINARY_FOLDER
  folder.mkdir(parents=True)
  for name, (raw, _, _) in batches.items():
    (folder / name).write_bytes(raw)
  tarball = tmp_path / 'archive' / input_pipeline.BINARY_TARBALL
  tarball.parent.mkdir()
  with tarfile.open(tarball, 'w:gz') as tar:
    tar.add(folder, arcname=input_pipeline.BINARY_FOLDER)
  train_names = [f'data_batch_{i}.bin' for i in range(1, 6)]
  train_x = np.concatenate([batches[n][1] for n in train_names])
  train_y = np.concatenate([batches[n][2] for n in train_names])
  test_x, test_y = batches['test_batch.bin'][1:]
  for where, kind in ((tarball.parent, 'tarball'), (tarball, 'tarball'), (folder.parent, 'folder'),
                      (folder, 'folder')):
    source = input_pipeline.locate(str(where))
    assert source.kind == kind, where
    train, test = input_pipeline.read(source)
    _assert_same(train, train_x, train_y)
    _assert_same(test, test_x, test_y)
  (folder / 'test_batch.bin').write_bytes(b'\0' * 3000)  # not whole records
  with pytest.raises(input_pipeline.DataError, match='test_batch.bin: 3,000 bytes .* 3073-byte'):
    input_pipeline.read(input_pipeline.locate(str(folder)))


def _shuffled_tfds_rows(split, prefix, seed):
  """What tfds.data_source serves: rows in a shuffled order, each with its ``id``."""
  order = np.random.default_rng(seed).permutation(len(split))
  return [{'image': split.images[i], 'label': np.int64(split.labels[i]),
           'id': f'{prefix}_{i:05d}'.encode()} for i in order]


@needs_subset
def test_tfds_route_gives_the_same_arrays_and_the_same_split():
  tfds = pytest.importorskip('tensorflow_datasets')
  folder = input_pipeline.locate(SUBSET)
  train, test = input_pipeline.read(folder)
  rows = {'train': _shuffled_tfds_rows(train, 'train', 1),
          'test': _shuffled_tfds_rows(test, 'test', 2)}

  def as_data_source(self, split, **kwargs):
    del self, kwargs
    return [rows[s] for s in split]

  config = configs.smoke(num_train=3000, num_val=1000, num_test=None, data_dir=SUBSET,
                         label_noise=0.2)
  from_folder = input_pipeline.prepare_data(config, source=folder)
  with tfds.testing.mock_data(as_data_source_fn=as_data_source):
    source = input_pipeline.locate()  # no archive here: tfds's (mocked) default data_dir
    assert source.kind == 'tfds'
    tfds_train, tfds_test = input_pipeline.read(source)
    from_tfds = input_pipeline.prepare_data(dataclass_replace(config, data_dir=None),
                                            source=source)
  _assert_same(tfds_train, train.images, train.labels)
  _assert_same(tfds_test, test.images, test.labels)
  for name in ('train', 'val', 'test'):
    _assert_same(getattr(from_tfds, name), getattr(from_folder, name).images,
                 getattr(from_folder, name).labels)
  np.testing.assert_array_equal(from_tfds.flipped, from_folder.flipped)
  assert from_tfds.fingerprint() == from_folder.fingerprint()
  assert from_folder.flipped.sum() == 600  # 20% of the 3000 training labels


def dataclass_replace(config, **changes):
  import dataclasses
  return dataclasses.replace(config, **changes)


def test_no_data_says_what_to_run(tmp_path, monkeypatch):
  with pytest.raises(input_pipeline.DataNotFoundError) as missing:
    input_pipeline.locate(str(tmp_path / 'nowhere'))
  message = str(missing.value)
  assert 'does not exist' in message and input_pipeline.URL in message
  assert f'--data-dir {tmp_path / "nowhere"}' in message and '.[prepare]' in message

  empty = tmp_path / 'empty'
  empty.mkdir()
  with pytest.raises(input_pipeline.DataNotFoundError, match='curl -L -o'):
    input_pipeline.locate(str(empty))

  # A data_dir that tfds prepared as TFRecord (what tfds.data_source(data_dir=...) used to do).
  version = tmp_path / 'tfrecord' / 'cifar10' / '3.0.2'
  version.mkdir(parents=True)
  (version / 'cifar10-train.tfrecord-00000-of-00001').write_bytes(b'')
  with pytest.raises(input_pipeline.DataNotFoundError, match='array_record') as tfrecord:
    input_pipeline.locate(str(tmp_path / 'tfrecord'))
  assert '--prepare --data-dir' in str(tfrecord.value)

  # No --data-dir: tfds's default holds nothing, nor do ./data and ~/.keras/datasets.
  monkeypatch.setattr(input_pipeline, '_tfds_source', lambda data_dir, name: (None, 'none'))
  monkeypatch.setattr(input_pipeline, 'COMMON_LOCATIONS', (str(empty),))
  with pytest.raises(input_pipeline.DataNotFoundError, match='no --data-dir given'):
    input_pipeline.locate()


def test_prepare_without_tensorflow_says_what_to_install(monkeypatch):
  monkeypatch.setattr(input_pipeline, '_has_module', lambda name: name != 'tensorflow')
  with pytest.raises(input_pipeline.MissingDependencyError, match=r'pip install -e "\.\[prepare'):
    input_pipeline.prepare_tfds('/tmp/nowhere')


def _clean_data(n=50, seed=0):
  rng = np.random.default_rng(seed)
  split = lambda k: input_pipeline.Split(rng.integers(0, 256, (k, 32, 32, 3), dtype=np.uint8),
                                         rng.integers(0, 10, k).astype(np.int32))
  return input_pipeline.Data(split(n), split(10), split(10))


def test_label_noise_is_applied_to_clean_data_and_other_noise_refused():
  clean = _clean_data()
  config = configs.smoke(num_train=50, label_noise=0.2, noise_seed=3)
  noisy = input_pipeline.with_label_noise(clean, config)
  assert noisy.flipped.sum() == 10 and (noisy.train.labels != clean.train.labels).sum() == 10
  np.testing.assert_array_equal(noisy.val.labels, clean.val.labels)  # never the reward split
  assert noisy.label_noise == 0.2 and noisy.noise_seed == 3
  assert input_pipeline.with_label_noise(noisy, config) is noisy  # already there: unchanged
  assert input_pipeline.with_label_noise(clean, configs.smoke()) is clean
  with pytest.raises(ValueError, match='20% label noise'):
    input_pipeline.with_label_noise(noisy, configs.smoke(label_noise=0.1))
  with pytest.raises(ValueError, match='noise_seed'):
    input_pipeline.with_label_noise(noisy, configs.smoke(label_noise=0.2, noise_seed=4))


def _records(workdir, run='amlfs-noise0'):
  import json
  with open(os.path.join(workdir, run, 'records.jsonl')) as f:
    return [{k: v for k, v in json.loads(line).items() if k != 'time'} for line in f]


@needs_subset
def test_cli_end_to_end_on_real_images_folder_tarball_and_given_data(tmp_path):
  """The example's CLI on the real subset, from the folder and from a tar.gz made from it: the
  same data (sha256), the same run. Then train.run with clean data and label noise."""
  import dataclasses

  import amlfs_cifar10
  from cifar10 import train
  archive = tmp_path / 'archive'
  archive.mkdir()
  with tarfile.open(archive / input_pipeline.PYTHON_TARBALL, 'w:gz') as tar:
    tar.add(BATCHES, arcname='cifar-10-batches-py')
  common = ['--smoke', '--no-progress', '--depth', '8', '--conv-impl', 'patches',
            '--num-train', '128', '--num-val', '64', '--num-test', '128']
  folder_run = amlfs_cifar10.main(common + ['--data-dir', SUBSET, '--workdir',
                                            str(tmp_path / 'a')])
  tar_run = amlfs_cifar10.main(common + ['--data-dir', str(archive), '--workdir',
                                         str(tmp_path / 'b')])
  assert folder_run['data']['source'].startswith('folder ')
  assert tar_run['data']['source'].startswith('tarball ')
  assert folder_run['data_sha256'] == tar_run['data_sha256']
  assert folder_run['final_test_error'] == tar_run['final_test_error']
  assert _records(tmp_path / 'a') == _records(tmp_path / 'b')
  assert folder_run['data']['num_test'] == 128 and folder_run['scan_unroll'] == 1
  for name in ('mu.pdf', 'mu.png', 'transforms.pdf', 'transforms.png'):
    assert os.path.getsize(tmp_path / 'a' / 'amlfs-noise0' / name) > 0

  # Clean data handed to train.run get the configuration's label noise (issue 15).
  config = amlfs_cifar10.config_from_args(amlfs_cifar10.parse_args(
      common + ['--data-dir', SUBSET, '--workdir', str(tmp_path / 'c'), '--label-noise', '0.25']))
  clean = input_pipeline.prepare_data(dataclasses.replace(config, label_noise=0.0))
  assert clean.flipped.sum() == 0
  noisy = train.run(config, data=clean, progress=False)
  assert noisy['run'] == 'amlfs-noise25' and noisy['data']['noisy_train_labels'] == 32
  assert noisy['data_sha256']['train'] != folder_run['data_sha256']['train']  # other labels
  assert noisy['data_sha256']['val'] == folder_run['data_sha256']['val']  # clean reward split
  with pytest.raises(ValueError, match='25% label noise'):
    train.run(dataclasses.replace(config, label_noise=0.1), progress=False,
              data=input_pipeline.with_label_noise(clean, config))
