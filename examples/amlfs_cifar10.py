"""AM-LFS on CIFAR-10 with ResNet-20: the paper's table 2 (Li et al., ICCV 2019).

    python examples/amlfs_cifar10.py                         # AM-LFS, B=32, M=6, 182 epochs
    python examples/amlfs_cifar10.py --mode baseline         # cross-entropy, same recipe
    python examples/amlfs_cifar10.py --label-noise 0.2       # 20% symmetric label noise
    python examples/amlfs_cifar10.py --resume                # continue a killed run
    python examples/amlfs_cifar10.py --smoke                 # tiny run of the same code (CPU)

Everything is written to ``<workdir>/<mode>-noise<percent>/`` (records, test error per epoch,
checkpoints, summary.json, plots); the test-error comparison of the runs that share a noise
level goes to ``<workdir>/test_error_noise<percent>.png``. See docs/cifar10.md.

The model, data, training and plots live in ``examples/cifar10/``; this file is the CLI.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from cifar10 import configs, input_pipeline  # noqa: E402


def _scale(value: str):
  return value if value == 'norms' else float(value)


def parse_args(argv=None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])

  def flag(name, **kwargs):
    # --label-noise, also spelt --label_noise.
    names = [f'--{name}'] + ([f'--{name.replace("-", "_")}'] if '-' in name else [])
    parser.add_argument(*names, dest=name.replace('-', '_'), **kwargs)

  flag('mode', choices=configs.MODES, default='amlfs',
       help='amlfs: the search; random: sample around mu_0 without updating it; baseline: one '
            'model with softmax cross-entropy.')
  flag('smoke', action='store_true',
       help='tiny configuration (64 training images, width-4 ResNet-20, B=2, 2 epochs) of the '
            'same code path, for CI and CPUs.')
  flag('population', type=int, default=None, help='B (default 32; smoke 2).')
  flag('num-intervals', type=int, default=None, help='M (default 6): theta has 4M numbers.')
  flag('epochs', type=int, default=None, help='default 182 (= 64k steps of 128).')
  flag('label-noise', type=float, default=None,
       help='symmetric label noise ratio on the training split, e.g. 0.1 or 0.2.')
  flag('dtype', default=None,
       help="compute dtype: 'auto' (bfloat16 on GPU, float32 on CPU), 'bfloat16' or 'float32'; "
            'parameters are always float32.')
  flag('conv-impl', choices=('xla', 'patches'), default=None,
       help="3x3 convolutions as flax's nn.Conv ('xla', default) or as patches times one "
            "batched matmul per layer ('patches'); same parameters and results.")
  flag('logit-scale', type=_scale, default=None,
       help="'norms' (|W_j| |x|: the identity theta is softmax CE; default) or a fixed float s.")
  flag('seed', type=int, default=None, help='initialisation, samples, data order (default 0).')
  flag('workdir', default=None, help='default runs/cifar10 (smoke: runs/cifar10_smoke).')
  flag('data-dir', default=None, help='tfds data_dir (default ~/tensorflow_datasets).')
  flag('per-copy-augmentation', action='store_true',
       help='every copy gets its own data order and augmentation (default: common random '
            'numbers).')
  flag('resume', action='store_true', help='continue from the latest checkpoint of this run.')
  flag('stop-after', type=int, default=None,
       help='stop once this many epochs are done (a checkpoint is written); continue with '
            '--resume (time-limited jobs).')
  flag('no-progress', action='store_true', help='no progress bar.')
  return parser.parse_args(argv)


def config_from_args(args: argparse.Namespace) -> configs.Config:
  overrides = {
      'mode': args.mode, 'population': args.population, 'num_intervals': args.num_intervals,
      'epochs': args.epochs, 'label_noise': args.label_noise, 'dtype': args.dtype,
      'conv_impl': args.conv_impl,
      'logit_scale': args.logit_scale, 'seed': args.seed, 'workdir': args.workdir,
      'data_dir': args.data_dir}
  overrides = {k: v for k, v in overrides.items() if v is not None}
  if args.per_copy_augmentation:
    overrides['common_random_numbers'] = False
  return (configs.smoke if args.smoke else configs.default)(**overrides)


def main(argv=None) -> dict:
  args = parse_args(argv)
  logging.basicConfig(level=logging.INFO, format='%(message)s')
  config = config_from_args(args)
  from cifar10 import train  # jax and the library: after the arguments are checked
  print(f'CIFAR-10 / ResNet-{config.depth} ({config.mode}, B={config.effective_population}, '
        f'label noise {config.label_noise:.0%}, {config.epochs} epochs) -> '
        f'{os.path.join(config.workdir, config.run_name)}', flush=True)
  try:
    summary = train.run(config, resume=args.resume, stop_after=args.stop_after,
                        progress=not args.no_progress)
  except (input_pipeline.MissingDependencyError, FileExistsError,
          train.ConfigMismatchError) as error:
    print(f'\n{error}', file=sys.stderr)
    raise SystemExit(2) from None
  run_dir = os.path.join(config.workdir, config.run_name)
  if summary['finished']:
    print(f"{config.run_name}: test error {summary['final_test_error']:.2f}% (final model), "
          f"validation accuracy {summary['final_val_accuracy']:.4f} (best "
          f"{summary['best_val_accuracy']:.4f}), {summary['epochs_time_s'] / 60:.1f} min of "
          f'epochs. Summary, records and plots in {run_dir}/')
  else:
    print(f"{config.run_name}: stopped after {summary['epochs_completed']} epochs; continue with "
          f'--resume. Records and plots so far in {run_dir}/')
  return summary


if __name__ == '__main__':
  main()
