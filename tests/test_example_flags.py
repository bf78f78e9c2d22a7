"""The example CLIs never answer a user's mistake with a traceback (issue 24): every bad flag of
``examples/amlfs_cifar10.py`` and ``examples/amlfs_mnist1d.py`` is one argparse-style line
(exit status 2) before anything is read or compiled; Ctrl-C is one line naming the epochs kept
and ``--resume`` (exit status 130); ``--epochs 0`` never becomes a "finished" result; the
summary records the resolved strategy."""

import csv
import json
import os
import sys

import pytest

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'examples')
if EXAMPLES not in sys.path:
  sys.path.insert(0, EXAMPLES)

import amlfs_cifar10  # noqa: E402
import flags  # noqa: E402
from cifar10 import report  # noqa: E402

# (flags, the part of the one line the user sees), for both examples.
BOTH = [
    (['--epochs', '0'], '--epochs must be at least 1, got 0.'),
    (['--epochs', '-1'], '--epochs must be at least 1, got -1.'),
    (['--batch-size', '0'], '--batch-size must be at least 1, got 0.'),
    (['--eval-batch-size', '0'], '--eval-batch-size must be at least 1, got 0.'),
    (['--strategy', 'paper', '--sigma', '-1'], '--sigma must be a positive number, got -1.0.'),
    (['--strategy', 'paper', '--sigma', 'nan'], '--sigma must be a positive number, got nan.'),
    (['--strategy', 'paper', '--policy-learning-rate', '0'],
     '--policy-learning-rate must be a positive number, got 0.0.'),
    (['--learning-rate', '-0.1'], '--learning-rate must be a positive number, got -0.1.'),
    (['--label-noise', '1'], '--label-noise must be in [0, 1), got 1.0.'),
    (['--label-noise', '-0.1'], '--label-noise must be in [0, 1), got -0.1.'),
    (['--num-intervals', '0'], '--num-intervals must be at least 1, got 0.'),
    (['--num-val', '0'], '--num-val must be at least 1, got 0.'),
    (['--epochs', 'x'], "argument --epochs: expected an int, got 'x' (--help lists the flags)"),
    (['--sigma', '0.3'], 'read only by --strategy paper'),
    (['--strategy', 'paper', '--sigma', 'wide'], "argument --sigma: expected a float, got 'wide'"),
    (['--nonsense'], 'unrecognized arguments: --nonsense'),
]
CIFAR_ONLY = [
    (['--population', '1'], '--mode amlfs needs --population of at least 2, got 1.'),
    (['--width', '0'], '--width must be at least 1, got 0.'),
    (['--depth', '2'], '--depth must be 6n + 2 with n >= 1'),
    (['--keep-checkpoints', '0'], '--keep-checkpoints must be at least 1, got 0.'),
    (['--num-train', '0'], '--num-train must be at least 1, got 0.'),
    (['--num-test', '-5'], '--num-test must be at least 1, got -5.'),
    (['--momentum', '-1'], '--momentum must be a number >= 0, got -1.0.'),
    (['--lr-drop-fractions', '0.5', '1.5'], '--lr-drop-fractions must lie in (0, 1), got 0.5 1.5.'),
    (['--num-train', '100', '--batch-size', '128'],
     '--num-train (100) must be at least --batch-size (128).'),
    (['--stop-after', '0'], 'argument --stop-after: must be at least 1, got 0'),
    (['--smoke', '--mode', 'random', '--population', '1'],
     '--mode random needs --population of at least 2, got 1.'),
]
MNIST_ONLY = [
    (['--population', '1'], '--population must be at least 2, got 1'),
    (['--num-samples', '100'], '--num-samples 100 leaves 0 training examples'),
    (['--logit-scale', '-2'], "--logit-scale must be 'norms', 0 or a positive number"),
]


def _mnist():
  import importlib.util
  spec = importlib.util.spec_from_file_location(
      'amlfs_mnist1d', os.path.join(EXAMPLES, 'amlfs_mnist1d.py'))
  if 'amlfs_mnist1d' not in sys.modules:
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # Flax modules (dataclasses) look their module up
    spec.loader.exec_module(module)
  return sys.modules['amlfs_mnist1d']


def _one_line_error(main, argv, capsys, tmp_path):
  with pytest.raises(SystemExit) as info:
    main(argv + ['--workdir', str(tmp_path)])
  assert info.value.code == 2
  out, err = capsys.readouterr()
  lines = [line for line in err.splitlines() if line.strip()]
  assert len(lines) == 1 and 'Traceback' not in err, err
  assert out == ''  # refused before anything ran
  assert not os.listdir(tmp_path)  # and before anything was written
  return lines[0]


@pytest.mark.parametrize('argv, message', BOTH + CIFAR_ONLY)
def test_every_bad_flag_of_the_cifar_example_is_one_line(argv, message, capsys, tmp_path):
  line = _one_line_error(amlfs_cifar10.main, argv, capsys, tmp_path)
  assert line.startswith('amlfs_cifar10.py: error: ') and message in line, line


@pytest.mark.parametrize('argv, message', BOTH + MNIST_ONLY)
def test_every_bad_flag_of_the_mnist1d_example_is_one_line(argv, message, capsys, tmp_path):
  line = _one_line_error(_mnist().main, argv, capsys, tmp_path)
  assert line.startswith('amlfs_mnist1d.py: error: ') and message in line, line


def test_a_run_of_no_epoch_is_never_a_result_in_the_table(tmp_path):
  """A run directory written by an older version with --epochs 0 ("finished", untrained)."""
  run = tmp_path / 'amlfs-noise0'
  run.mkdir()
  (run / 'config.json').write_text(json.dumps({'mode': 'amlfs', 'strategy': 'default'}))
  (run / 'summary.json').write_text(json.dumps({'finished': True, 'epochs_completed': 0,
                                                'final_test_error': 90.0}))
  assert not report.collect_runs(str(tmp_path))[0].finished
  assert report.table2(str(tmp_path)) == f'No finished run in {tmp_path}.'


def test_config_record_names_the_strategy_that_runs():
  from cifar10 import configs, train

  from jaxloss.search import strategies
  default = train.config_record(configs.smoke())
  assert 'sigma' not in default and 'policy_learning_rate' not in default
  assert default['search']['class'] == 'Gaussian' and default['search']['strategy'] == 'default'
  assert default['search']['parameters']['sigma'] == list(strategies.DEFAULT.sigma)
  assert default['search']['parameters']['learning_rate'] == strategies.DEFAULT.learning_rate
  paper = train.config_record(configs.smoke(strategy='paper', sigma=0.3))
  assert paper['sigma'] == 0.3
  assert paper['search']['parameters'] == {
      'sigma': 0.3, 'optimizer': 'adam', 'learning_rate': 0.05, 'antithetic': False,
      'fitness': 'zscore', 'mean_copy': False, 'drift_guard': 0.0, 'update_mean': True,
      'whiten': False}
  random = train.config_record(configs.smoke(mode='random'))['search']
  assert random['parameters']['update_mean'] is False and random['selection'] == 'best'
  baseline = train.config_record(configs.smoke(mode='baseline'))['search']
  assert (baseline['strategy'], baseline['class'], baseline['selection']) == (
      'fixed', 'Fixed', 'none')


def test_ctrl_c_is_one_line_with_the_epochs_kept_and_resume_finishes(tmp_path, capsys,
                                                                     monkeypatch):
  """Ctrl-C in the second epoch of the MNIST-1D example: exit 130, one line, the epochs the
  progress lines showed are kept, and --resume finishes the run."""
  example = _mnist()
  from jaxloss.search import callbacks
  original = callbacks.CSVLogger.__call__

  def interrupted(self, record, state=None):
    original(self, record, state)
    if record['epoch'] == 1:
      raise KeyboardInterrupt

  argv = ['--modes', 'amlfs', '--epochs', '3', '--population', '2', '--num-samples', '1000',
          '--num-val', '200', '--no-progress', '--workdir', str(tmp_path)]
  monkeypatch.setattr(callbacks.CSVLogger, '__call__', interrupted)
  with pytest.raises(SystemExit) as info:
    example.main(argv)
  assert info.value.code == 130
  err = capsys.readouterr().err
  assert 'Traceback' not in err and 'KeyboardInterrupt' not in err
  assert err.strip().splitlines()[-1] == (
      'amlfs seed 0: stopped after epoch 2 of 3; continue with --resume')
  assert 'Gaussian: epoch 2/3' in err and 'epoch 3/3' not in err
  monkeypatch.setattr(callbacks.CSVLogger, '__call__', original)
  results = example.main(argv + ['--resume'])
  assert len(results) == 1
  with open(tmp_path / 'amlfs_seed0' / 'metrics.csv', newline='') as f:
    assert [int(r['epoch']) for r in csv.DictReader(f)] == [1, 2, 3]
  with open(tmp_path / 'summary.json') as f:
    summary = json.load(f)
  assert 'sigma' not in summary['config']
  assert summary['results'][0]['search']['strategy'] == 'default'


def test_interrupted_without_a_checkpoint_says_so(capsys):
  from jaxloss import search
  for stop, hint in ((search.SearchInterrupted(2, 5, False), 'nothing was kept (no --workdir)'),
                     (search.SearchInterrupted(0, 5, False), 'no epoch was kept')):
    with pytest.raises(SystemExit) as info:
      flags.interrupted(stop)
    assert info.value.code == 130
    assert capsys.readouterr().err.strip() == (
        f'stopped after epoch {stop.epochs_completed} of 5; {hint}')
