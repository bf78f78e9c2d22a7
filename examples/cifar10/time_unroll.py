"""Times the CIFAR example's epoch as a loop and unrolled, per convolution implementation (CPU).

    python examples/cifar10/time_unroll.py --depth 8 --width 8 --population 4 --batch-size 32

For every ``conv_impl`` in ``(xla, patches)`` and every ``scan_unroll`` in ``(1, True)`` it
builds the example's program on random uint8 images, compiles the outer step (seconds, as the
engine's record reports them) and runs ``--epochs`` epochs; the ms per training step is the
median over the epochs after the first. Every combination runs in a fresh process (the engine
shares compiled programs within a process, and its cache key cannot tell ``unroll=True`` from
``unroll=1``, which compare equal in Python). It prints a markdown table. ``scan_unroll='auto'`` in
``configs.Config`` is chosen from these numbers (docs/cifar10.md).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  p.add_argument('--depth', type=int, default=8)
  p.add_argument('--width', type=int, default=8)
  p.add_argument('--population', type=int, default=4)
  p.add_argument('--batch-size', type=int, default=32)
  p.add_argument('--steps', type=int, default=8, help='training steps per epoch')
  p.add_argument('--epochs', type=int, default=3)
  p.add_argument('--impls', nargs='+', default=['xla', 'patches'])
  p.add_argument('--unrolls', nargs='+', default=['1', 'true'])
  p.add_argument('--json', default=None, help='also write the rows to this file')
  p.add_argument('--one', nargs=2, default=None, metavar=('IMPL', 'UNROLL'),
                 help='time one combination in this process and print its row as JSON')
  args = p.parse_args(argv)
  if args.one is None:
    return _all(args, argv)

  from cifar10 import configs, train
  from jaxloss import search

  rng = np.random.default_rng(0)
  n = args.steps * args.batch_size
  images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
  labels = rng.integers(0, 10, n).astype(np.int32)
  val = (images[:64], labels[:64])
  impl, unroll_text = args.one
  unroll = True if unroll_text.lower() == 'true' else int(unroll_text)
  config = configs.default(
      depth=args.depth, width=args.width, population=args.population,
      batch_size=args.batch_size, num_train=n, num_val=64, eval_batch_size=64,
      epochs=args.epochs, conv_impl=impl, scan_unroll=unroll, mode='amlfs')
  program = train.make_program(config)
  cfg = dataclasses.replace(train.search_config(config, ''), output_dir=None, progress=False)
  # CPU time of this process (all its threads) beside wall time: on a shared machine the wall
  # time depends on what else runs; the CPU time much less.
  cpu = [time.process_time()]
  t = time.perf_counter()
  result = search.run(program.task, cfg, (images, labels), val,
                      callback=lambda record, state: cpu.append(time.process_time()))
  wall = time.perf_counter() - t
  compile_s = result.records[0]['time']['compile_s']
  steps = [r['time']['step_s'] for r in result.records[1:]]
  cpu_epochs = np.diff(cpu)
  row = {'conv_impl': impl, 'scan_unroll': unroll, 'compile_s': compile_s,
         'ms_per_step': 1000 * float(np.median(steps)) / args.steps,
         'cpu_ms_per_step': 1000 * float(np.median(cpu_epochs[1:])) / args.steps,
         'compile_cpu_s': float(cpu_epochs[0] - np.median(cpu_epochs[1:])),
         'first_epoch_s': result.records[0]['time']['step_s'], 'wall_s': wall,
         'load_average': os.getloadavg()[0]}
  print(json.dumps(row), flush=True)
  return row


def _all(args, argv):
  import subprocess
  argv = list(sys.argv[1:] if argv is None else argv)
  rows = []
  for impl in args.impls:
    for unroll_text in args.unrolls:
      out = subprocess.run([sys.executable, os.path.abspath(__file__), *argv, '--one', impl,
                            unroll_text], check=True, capture_output=True, text=True).stdout
      rows.append(json.loads(out.strip().splitlines()[-1]))
      print(json.dumps(rows[-1]), flush=True)
  import jax
  print(f'\nResNet-{args.depth} width {args.width}, B={args.population}, batch '
        f'{args.batch_size}, {args.steps} steps/epoch, {jax.default_backend()}, '
        f'{os.cpu_count()} cores')
  print('| conv_impl | epoch as | ms/step (wall) | ms/step (CPU time) | compile (s, wall) | '
        'load average |')
  print('|---|---|---|---|---|---|')
  for r in rows:
    kind = 'unrolled' if r['scan_unroll'] is True else f"loop (unroll {r['scan_unroll']})"
    print(f"| {r['conv_impl']} | {kind} | {r['ms_per_step']:.0f} | {r['cpu_ms_per_step']:.0f} | "
          f"{r['compile_s']:.1f} | {r['load_average']:.1f} |")
  if args.json:
    with open(args.json, 'w') as f:
      json.dump(rows, f, indent=1)
  return rows


if __name__ == '__main__':
  main()
