"""Bad CIFAR-10 data stop the example at once, with one line naming the file and the problem.

Each case builds a damaged copy of the shared subset of real images
(``../shared/data/cifar10-subset`` relative to the repository) in ``tmp_path``: a batch with
out-of-range labels, fewer labels than images, wrong keys, a wrong image size, a truncated or
missing batch file, a truncated, garbage or incomplete ``.tar.gz``, and asks for more images than
there are. The reader raises ``input_pipeline.DataError`` (a ``ValueError``); the CLI turns it
into ``amlfs_cifar10.py: error: ...`` on one line, exit status 2, no traceback, before anything
compiles (the tests replace the training module by one that fails if called).
"""

import os
import pickle
import shutil
import subprocess
import sys
import tarfile

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(REPO, 'examples')
if EXAMPLES not in sys.path:
  sys.path.insert(0, EXAMPLES)

import cifar10  # noqa: E402
from cifar10 import configs, input_pipeline  # noqa: E402

SUBSET = os.path.normpath(os.path.join(REPO, '..', 'shared', 'data', 'cifar10-subset'))
BATCHES = os.path.join(SUBSET, 'cifar-10-batches-py')
pytestmark = pytest.mark.skipif(not os.path.isdir(BATCHES),
                                reason=f'the shared CIFAR-10 subset is not at {SUBSET}')
if not os.path.isdir(BATCHES):  # the cases below read the subset at import
  pytest.skip(f'the shared CIFAR-10 subset is not at {SUBSET}', allow_module_level=True)
NAMES = [f'data_batch_{i}' for i in range(1, 6)] + ['test_batch']
SMOKE = ['--smoke', '--no-progress']


@pytest.fixture(scope='module')
def batches():
  """The subset's batches as Python 2 wrote them (read back with latin1 keys)."""
  out = {}
  for name in NAMES:
    with open(os.path.join(BATCHES, name), 'rb') as f:
      out[name] = pickle.load(f, encoding='latin1')
  return out


def _folder(root, batches, **edits):
  """``root/cifar-10-batches-py/`` with the subset's batches, except ``name=edit``: a function
  of the batch dict returning the object to pickle, raw bytes, or None (no such file)."""
  folder = root / 'cifar-10-batches-py'
  folder.mkdir(parents=True)
  for name in NAMES:
    edit = edits.get(name, '')
    if edit == '':
      shutil.copyfile(os.path.join(BATCHES, name), folder / name)
    elif isinstance(edit, bytes):
      (folder / name).write_bytes(edit)
    elif edit is not None:
      batch = dict(batches[name], labels=list(batches[name]['labels']))
      (folder / name).write_bytes(pickle.dumps(edit(batch), protocol=2))
  return root


def _tarball(path, folder, drop=()):
  with tarfile.open(path, 'w:gz', compresslevel=1) as tar:
    tar.add(folder, arcname='cifar-10-batches-py',
            filter=lambda m: None if os.path.basename(m.name) in drop else m)
  return path


def _raw(name):
  with open(os.path.join(BATCHES, name), 'rb') as f:
    return f.read()


def _set(key, value):
  def edit(batch):
    batch[key] = value(batch) if callable(value) else value
    return batch
  return edit


def _labels_every_fourth_10(batch):
  labels = list(batch['labels'])
  labels[::4] = [10] * len(labels[::4])
  return labels


def _cli_error(argv, capsys, monkeypatch) -> str:
  """The one line the example prints for ``argv``; fails if anything would train."""
  import amlfs_cifar10

  class NoTraining:
    @staticmethod
    def run(*args, **kwargs):
      raise AssertionError('the data checks did not stop the run before training')

  monkeypatch.setattr(cifar10, 'train', NoTraining, raising=False)
  capsys.readouterr()
  with pytest.raises(SystemExit) as exit_:
    amlfs_cifar10.main(argv)
  out, err = capsys.readouterr()
  assert exit_.value.code == 2
  assert 'Traceback' not in out + err
  lines = err.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith('amlfs_cifar10.py: error: '), err
  return lines[0]


# (what is wrong, {batch: edit}, what the message must say besides the file)
FOLDER_CASES = {
    'test labels 10': ({'test_batch': _set('labels', _labels_every_fourth_10)}, 'test_batch',
                       '259 of 1,034 labels are outside 0..9 (the first: 10 at index 0)'),
    'train label -1': ({'data_batch_2': _set('labels', lambda b: [-1] + b['labels'][1:])},
                       'data_batch_2', '1 of 827 labels are outside 0..9 (the first: -1 at '),
    'fewer labels': ({'data_batch_1': _set('labels', lambda b: b['labels'][:-5])},
                     'data_batch_1', '823 labels for 828 images'),
    'more labels': ({'data_batch_3': _set('labels', lambda b: b['labels'] + [0])},
                    'data_batch_3', '828 labels for 827 images'),
    'float labels': ({'data_batch_4': _set('labels', lambda b: np.asarray(b['labels'], float))},
                     'data_batch_4', 'labels must be a list of integers, got float64'),
    'wrong keys': ({'data_batch_3': lambda b: {'images': b['data'], 'labels': b['labels']}},
                   'data_batch_3', "a CIFAR-10 batch is a dict with 'data' and 'labels', got "
                   "['images', 'labels']"),
    'not a dict': ({'test_batch': lambda b: [b['data'], b['labels']]}, 'test_batch',
                   "a CIFAR-10 batch is a dict with 'data' and 'labels', got list"),
    'image size 3000': ({'data_batch_4': _set('data', lambda b: b['data'][:, :3000])},
                        'data_batch_4', "'data' must be uint8 rows of 3072 bytes (32x32x3 "
                        'pixels), got uint8 (827, 3000)'),
    'images 4-d': ({'data_batch_5': _set('data', lambda b: b['data'].reshape(-1, 32, 32, 3))},
                   'data_batch_5', 'got uint8 (827, 32, 32, 3)'),
    'pixels int64': ({'data_batch_5': _set('data', lambda b: b['data'].astype(np.int64))},
                     'data_batch_5', 'got int64 (827, 3072)'),
    'ragged labels': ({'data_batch_1': _set('labels', lambda b: [[0, 1], [2]] * 414)},
                      'data_batch_1', "'data' and 'labels' are not arrays ("),
    'no images': ({'test_batch': lambda b: dict(b, data=b['data'][:0], labels=[])},
                  'test_batch', 'no images'),
    'truncated batch': ({'data_batch_2': _raw('data_batch_2')[:100_000]}, 'data_batch_2',
                        'not a readable pickle (UnpicklingError: pickle data was truncated): a '
                        'truncated or damaged file'),
    'garbage batch': ({'test_batch': np.random.default_rng(0).bytes(5000)}, 'test_batch',
                      'not a readable pickle ('),
    'missing batch': ({'data_batch_5': None}, 'cifar-10-batches-py',
                      'no data_batch_5 (CIFAR-10 has data_batch_1 ... data_batch_5 and '
                      'test_batch): an incomplete copy'),
}


@pytest.mark.parametrize('case', list(FOLDER_CASES))
def test_bad_batch_in_a_folder_is_one_line_naming_file_and_problem(case, batches, tmp_path,
                                                                    capsys, monkeypatch):
  edits, name, problem = FOLDER_CASES[case]
  root = _folder(tmp_path / 'data', batches, **edits)
  where = os.path.join(root, 'cifar-10-batches-py', name) if name in NAMES else os.path.join(
      root, name)
  with pytest.raises(input_pipeline.DataError) as raised:  # from the reader ...
    input_pipeline.read(input_pipeline.locate(str(root)))
  assert isinstance(raised.value, ValueError)
  assert str(raised.value).startswith(f'{where}: ') and problem in str(raised.value)
  line = _cli_error(SMOKE + ['--data-dir', str(root), '--workdir', str(tmp_path / 'runs')],
                    capsys, monkeypatch)  # ... and from the CLI, before training
  assert line == f'amlfs_cifar10.py: error: {raised.value}'
  assert not os.path.exists(tmp_path / 'runs')


@pytest.fixture(scope='module')
def good_tarball(tmp_path_factory):
  return _tarball(tmp_path_factory.mktemp('good') / input_pipeline.PYTHON_TARBALL, BATCHES)


def test_bad_tarballs(good_tarball, batches, tmp_path, capsys, monkeypatch):
  raw = good_tarball.read_bytes()
  cases = {}
  for case, content in (('truncated', raw[:len(raw) // 2]), ('cut header', raw[:200]),
                        ('garbage', np.random.default_rng(1).bytes(20_000)), ('empty', b'')):
    folder = tmp_path / case.replace(' ', '_')
    folder.mkdir()
    (folder / input_pipeline.PYTHON_TARBALL).write_bytes(content)
    cases[case] = folder
  cases['incomplete'] = _tarball(tmp_path / 'incomplete.tar.gz', BATCHES, drop=('data_batch_3',))
  damaged = _folder(tmp_path / 'damaged', batches,
                    test_batch=_set('labels', _labels_every_fourth_10))
  cases['bad member'] = _tarball(tmp_path / 'damaged.tar.gz', damaged / 'cifar-10-batches-py')
  expected = {
      'truncated': f'{cases["truncated"]}/{input_pipeline.PYTHON_TARBALL}: a truncated or '
                   f'damaged tar archive (EOFError: Compressed file ended before the '
                   f'end-of-stream marker was reached).',
      'cut header': f'{cases["cut header"]}/{input_pipeline.PYTHON_TARBALL}: a truncated or '
                    f'damaged tar archive (',
      'garbage': f'{cases["garbage"]}/{input_pipeline.PYTHON_TARBALL}: not a tar archive '
                 f'(plain, gzip, bz2 or xz): a damaged download?',
      'empty': f'{cases["empty"]}/{input_pipeline.PYTHON_TARBALL}: not a tar archive',
      'incomplete': f'{cases["incomplete"]}: no data_batch_3 (CIFAR-10 has data_batch_1 ... '
                    f'data_batch_5 and test_batch): an incomplete copy.',
      'bad member': f'{cases["bad member"]} (cifar-10-batches-py/test_batch): 259 of 1,034 '
                    f'labels are outside 0..9',
  }
  for case, where in cases.items():
    with pytest.raises(input_pipeline.DataError) as raised:
      input_pipeline.read(input_pipeline.locate(str(where)))
    assert str(raised.value).startswith(expected[case]), (case, str(raised.value))
    assert '\n' not in str(raised.value), case
    line = _cli_error(SMOKE + ['--data-dir', str(where), '--workdir', str(tmp_path / 'runs')],
                      capsys, monkeypatch)
    assert line == f'amlfs_cifar10.py: error: {raised.value}', case


def test_bad_binary_batches(tmp_path, capsys, monkeypatch):
  rng = np.random.default_rng(0)
  folder = tmp_path / input_pipeline.BINARY_FOLDER
  folder.mkdir()
  for name in NAMES:
    records = rng.integers(0, 256, (100, 3073), dtype=np.uint8)
    records[:, 0] %= 10
    (folder / f'{name}.bin').write_bytes(records.tobytes())
  assert len(input_pipeline.read(input_pipeline.locate(str(tmp_path)))[0]) == 500
  good = (folder / 'data_batch_2.bin').read_bytes()
  (folder / 'data_batch_2.bin').write_bytes(good[:-1000])
  with pytest.raises(input_pipeline.DataError) as raised:
    input_pipeline.read(input_pipeline.locate(str(tmp_path)))
  assert str(raised.value) == (
      f'{folder / "data_batch_2.bin"}: 306,300 bytes are not whole 3073-byte records (1 label + '
      f'3072 pixels): a truncated or damaged file.')
  (folder / 'data_batch_2.bin').write_bytes(bytes([12]) + good[1:])
  with pytest.raises(input_pipeline.DataError, match=r'data_batch_2.bin: 1 of 100 labels are '
                     r'outside 0..9 \(the first: 12 at index 0\)'):
    input_pipeline.read(input_pipeline.locate(str(tmp_path)))
  (folder / 'data_batch_2.bin').write_bytes(good)
  (folder / 'test_batch.bin').unlink()
  line = _cli_error(SMOKE + ['--data-dir', str(tmp_path), '--workdir', str(tmp_path / 'runs')],
                    capsys, monkeypatch)
  assert line == f'amlfs_cifar10.py: error: {folder}: no test_batch.bin (CIFAR-10 has ' \
      f'data_batch_1 ... data_batch_5 and test_batch): an incomplete copy.'


def test_more_images_asked_for_than_there_are_names_the_flags(tmp_path, capsys, monkeypatch):
  where = f'folder {BATCHES}'
  run = ['--data-dir', SUBSET, '--workdir', str(tmp_path / 'runs'), '--no-progress']
  # A first real run, without --num-train: the paper's 45k/5k split of 50k images.
  assert _cli_error(run, capsys, monkeypatch) == (
      f'amlfs_cifar10.py: error: {where} holds 4,136 training images, fewer than --num-train '
      f'45000 + --num-val 5000 = 50000: set --num-train and --num-val to at most 4136 together '
      f'(e.g. --num-train 3723 --num-val 413).')
  assert 'fewer than --num-train 3000 + --num-val 5000 = 8000: set --num-train and --num-val' in (
      _cli_error(run + ['--num-train', '3000', '--num-val', '5000'], capsys, monkeypatch))
  assert _cli_error(SMOKE + run + ['--num-test', '2000'], capsys, monkeypatch) == (
      f'amlfs_cifar10.py: error: {where} holds 1,034 test images, fewer than --num-test 2000: '
      f'set --num-test 1034 or less (none: all of them).')
  assert _cli_error(SMOKE + run + ['--num-val', '0'], capsys, monkeypatch) == (
      'amlfs_cifar10.py: error: --num-val must be at least 1, got 0.')
  # Exactly what there is is fine.
  config = configs.smoke(num_train=4000, num_val=136, num_test=1034, data_dir=SUBSET)
  data = input_pipeline.prepare_data(config)
  assert (len(data.train), len(data.val), len(data.test)) == (4000, 136, 1034)


def test_data_given_to_a_run_are_checked_too():
  split = lambda n, top: input_pipeline.Split(np.zeros((n, 32, 32, 3), np.uint8),
                                              np.arange(n) % top)
  input_pipeline.Data(split(20, 10), split(5, 10), split(5, 10))
  with pytest.raises(input_pipeline.DataError, match=r'^given by the caller, val split: 1 of 12 '
                     r'labels are outside 0..9 \(the first: 10 at index 10\)\.$'):
    input_pipeline.Data(split(20, 10), split(12, 11), split(5, 10))
  bad = input_pipeline.Split(np.zeros((4, 32, 32), np.uint8), np.zeros(4, np.int32))
  with pytest.raises(input_pipeline.DataError, match=r'test split: images must be uint8 '
                     r'\(N, 32, 32, 3\), got uint8 \(4, 32, 32\)'):
    input_pipeline.Data(split(20, 10), split(5, 10), bad)


def test_batches_pickled_by_python3_with_bytes_keys_are_read(batches, tmp_path):
  keyed = lambda b: {k.encode(): v for k, v in b.items()}
  root = _folder(tmp_path, batches, **{name: keyed for name in NAMES})
  train, test = input_pipeline.read(input_pipeline.locate(str(root)))
  reference, _ = input_pipeline.read(input_pipeline.locate(SUBSET))
  np.testing.assert_array_equal(train.images, reference.images)
  np.testing.assert_array_equal(train.labels, reference.labels)
  assert len(test) == 1034


def test_cli_subprocess_one_line_exit_2_no_traceback(batches, tmp_path):
  root = _folder(tmp_path / 'data', batches, test_batch=_set('labels', _labels_every_fourth_10))
  env = dict(os.environ, PYTHONPATH=os.pathsep.join(
      [REPO] + [p for p in os.environ.get('PYTHONPATH', '').split(os.pathsep) if p]))
  done = subprocess.run([sys.executable, os.path.join(EXAMPLES, 'amlfs_cifar10.py'), '--smoke',
                         '--data-dir', str(root), '--workdir', str(tmp_path / 'runs')],
                        capture_output=True, text=True, env=env, timeout=120)
  assert done.returncode == 2, done.stderr
  assert done.stdout == ''
  assert done.stderr == (f'amlfs_cifar10.py: error: {root}/cifar-10-batches-py/test_batch: 259 '
                         f'of 1,034 labels are outside 0..9 (the first: 10 at index 0).\n')
