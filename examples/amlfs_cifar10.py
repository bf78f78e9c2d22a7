"""AM-LFS on CIFAR-10 with ResNet-20: the paper's table 2 (Li et al., ICCV 2019).

    python examples/amlfs_cifar10.py --data-dir DIR                 # AM-LFS, B=32, M=6, 182 epochs
    python examples/amlfs_cifar10.py --data-dir DIR --mode baseline # cross-entropy, same recipe
    python examples/amlfs_cifar10.py --data-dir DIR --modes amlfs baseline --seeds 0 1 2 \\
        --label-noise 0.2                                           # several runs, one process
    python examples/amlfs_cifar10.py --data-dir DIR --modes baseline_best losses losses_indep
                                                                    # baselines at B copies' compute
    python examples/amlfs_cifar10.py --data-dir DIR --resume        # continue a killed run
    python examples/amlfs_cifar10.py --data-dir DIR --smoke         # tiny run of the same code
    python examples/amlfs_cifar10.py --table                        # table 2 from the runs
    python examples/amlfs_cifar10.py --prepare                      # tfds preparation (needs TF)

DIR holds ``cifar-10-batches-py/`` (what torchvision and Keras download), ``cifar-10-python.tar.gz``
or ``cifar-10-binary.tar.gz``, read with numpy; or it is a tfds data_dir with cifar10 prepared in
array_record. Every field of ``cifar10.configs.Config`` is a flag (``--help``).

Everything is written to ``<workdir>/<mode>-noise<percent>[-seed<k>]/`` (records, test error
per epoch, checkpoints, summary.json, figures as PDF and PNG); the test-error comparison of the
runs that share a noise level goes to ``<workdir>/test_error_noise<percent>.{pdf,png}``. See
docs/cifar10.md.

The model, data, training and plots live in ``examples/cifar10/``; this file is the CLI.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import flags  # noqa: E402
from cifar10 import configs, input_pipeline, report  # noqa: E402

log = logging.getLogger('amlfs_cifar10')
PROG = os.path.basename(__file__)  # argparse's name for the program, also under pytest
OWN_LOGGERS = ('amlfs_cifar10', 'cifar10')


def _at_least_one(text: str) -> int:
  try:
    value = int(text)
  except ValueError:
    raise argparse.ArgumentTypeError(f'expected an int, got {text!r}') from None
  if value < 1:
    raise argparse.ArgumentTypeError(f'must be at least 1, got {value}')
  return value


def parse_args(argv=None) -> argparse.Namespace:
  parser = flags.Parser(
      prog=PROG, description=__doc__.split('\n\n')[0],
      formatter_class=argparse.RawDescriptionHelpFormatter,
      epilog='\n\n'.join(__doc__.split('\n\n')[1:3]))
  what = parser.add_argument_group('what to do (default: train)')
  what.add_argument('--smoke', action='store_true',
                    help='start from the tiny configuration (64 training images, width-4 '
                         'ResNet-20, B=2, 2 epochs) instead of the paper\'s; other flags still '
                         'apply. For CI and CPUs.')
  what.add_argument('--table', action='store_true',
                    help="print the paper's table 2 (test error mean +- std per mode and noise "
                         'level, beside the paper) from the finished runs in --workdir, as '
                         'markdown; also written to <workdir>/table2.md.')
  what.add_argument('--prepare', action='store_true',
                    help='download and prepare tfds cifar10 in array_record in --data-dir '
                         '(default: tfds\'s data_dir); needs TensorFlow: pip install -e '
                         '".[prepare]". Not needed with the official archive.')
  what.add_argument('--stop-after', type=_at_least_one, default=None,
                    help='stop after this many epochs of this invocation (a checkpoint is '
                         'written); continue with --resume (time-limited jobs: repeat '
                         '"--resume --stop-after N").')
  what.add_argument('--per-copy-augmentation', action='store_true',
                    help='the same as --no-common-random-numbers.')
  flags.add_config_flags(parser, configs.Config)
  flags.add_run_flags(parser)
  return parser.parse_args(argv)


def configs_from_args(args: argparse.Namespace) -> list[configs.Config]:
  """One configuration per (seed, mode) given, from the preset plus the flags."""
  values = flags.overrides(args, configs.Config)
  flags.check_strategy_flags(values, prog=PROG)
  if args.per_copy_augmentation:
    values['common_random_numbers'] = False
  preset = configs.smoke if args.smoke else configs.default
  return [preset(**one) for one in flags.expand(values)]


def config_from_args(args: argparse.Namespace) -> configs.Config:
  """The first configuration (one run)."""
  return configs_from_args(args)[0]


def _data_key(config: configs.Config) -> tuple:
  return (config.data_dir, config.dataset, config.num_train, config.num_val, config.num_test,
          config.split_seed)


def _fail(error: Exception) -> None:
  print(f'\n{error}', file=sys.stderr)
  raise SystemExit(2) from None


def main(argv=None):
  """Runs every configuration asked for; returns the summary (a list for several runs)."""
  args = parse_args(argv)
  flags.setup_logging(OWN_LOGGERS, args.verbose)
  if args.table:
    workdir = getattr(args, 'workdir', None) or (
        configs.smoke() if args.smoke else configs.default()).workdir
    table = report.table2(workdir)
    print(table)
    if os.path.isdir(workdir):
      with open(os.path.join(workdir, 'table2.md'), 'w') as f:
        f.write(table + '\n')
    return table
  try:
    runs = configs_from_args(args)
  except ValueError as error:
    flags.error(' '.join(str(error).split()), prog=PROG)
  first = runs[0]
  try:
    if args.prepare:
      source = input_pipeline.prepare_tfds(first.data_dir, first.dataset)
      log.info('Prepared: %s. Train with --data-dir %s.', source.describe(),
               first.data_dir or '(none needed: the default)')
      return source
    # Before anything starts: where the images are, or exactly what to run.
    source = input_pipeline.locate(first.data_dir, first.dataset)
  except input_pipeline.DataNotFoundError as error:
    _fail(error)
  # Every run's data, read and checked before anything compiles: clean data read once per
  # split (each run adds its own label noise); bad data or too few images: one line.
  cache = {}
  try:
    for config in runs:
      if _data_key(config) not in cache:
        cache[_data_key(config)] = input_pipeline.prepare_data(
            dataclasses.replace(config, label_noise=0.0), source=source)
  except input_pipeline.DataError as error:
    print(f'{PROG}: error: {" ".join(str(error).split())}', file=sys.stderr)
    raise SystemExit(2) from None
  from cifar10 import train  # jax and the library: after the arguments and the data are checked

  summaries = []
  for config in runs:
    log.info('CIFAR-10 / ResNet-%d (%s, B=%d, label noise %.0f%%, %d epochs, seed %d) -> %s',
             config.depth, config.mode, config.effective_population, 100 * config.label_noise,
             config.epochs, config.seed, os.path.join(config.workdir, config.run_name))
    try:
      summary = train.run(config, resume=args.resume, stop_after=args.stop_after,
                          data=cache[_data_key(config)],
                          progress='lines' if args.no_progress else True)
    except (FileExistsError, train.ConfigMismatchError) as error:
      _fail(error)
    except train.search.SearchInterrupted as stop:  # Ctrl-C: one line, status 130
      flags.interrupted(stop, f'{config.run_name}: ')
    run_dir = os.path.join(config.workdir, config.run_name)
    if summary['finished']:
      log.info('%s: test error %.2f%% (final model), validation accuracy %.4f (best %.4f), '
               '%.1f min of epochs. Summary, records and figures in %s/', config.run_name,
               summary['final_test_error'], summary['final_val_accuracy'],
               summary['best_val_accuracy'], summary['epochs_time_s'] / 60, run_dir)
    else:
      log.info('%s: stopped after %d epochs; continue with --resume. Records and figures so far '
               'in %s/', config.run_name, summary['epochs_completed'], run_dir)
    summaries.append(summary)
  return summaries[0] if len(summaries) == 1 else summaries


if __name__ == '__main__':
  main()
