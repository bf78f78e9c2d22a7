"""The runs of a working directory: reading them, and the paper's table 2 from them.

``python examples/amlfs_cifar10.py --table --workdir runs/cifar10`` prints (and writes to
``<workdir>/table2.md``) the test error of every finished run, mean +- std over seeds per mode
and label-noise level, beside the paper's numbers.
"""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np

from jaxloss import search

SUMMARY = 'summary.json'
TEST_LOG = 'test.jsonl'
CONFIG = 'config.json'
RECORDS = 'records.jsonl'

MODE_LABELS = {'amlfs': 'AM-LFS (default strategy)',
               'random': 'random search (default sigmas)', 'baseline': 'cross-entropy',
               'baseline_best': 'cross-entropy, best of B',
               'losses': 'fixed-loss grid, best broadcast',
               'losses_indep': 'fixed-loss grid, independent, best kept',
               'amlfs-paper': "AM-LFS (paper's algorithm)",
               'random-paper': 'random search (sigma 0.2)'}
MODE_ORDER = ('baseline', 'baseline_best', 'losses', 'losses_indep', 'amlfs', 'amlfs-paper',
              'random', 'random-paper')
# Li et al., ICCV 2019, table 2: CIFAR-10, ResNet-20, top-1 test error (%). The CE figure is He
# et al.'s published ResNet-20 result.
PAPER_TEST_ERROR = {0.0: {'baseline': 8.75, 'amlfs': 6.92},
                    0.1: {'baseline': 12.05, 'amlfs': 10.05},
                    0.2: {'baseline': 15.05, 'amlfs': 12.73}}


def read_jsonl(path: str) -> list:
  """A JSON-lines file; a line cut by a kill ends the list (as the engine reads its own)."""
  if not os.path.exists(path):
    return []
  out = []
  with open(path) as f:
    for line in f:
      if not line.strip():
        continue
      try:
        out.append(json.loads(line))
      except json.JSONDecodeError:
        break
  return out


def write_jsonl(path: str, rows) -> None:
  """Rewrites ``path`` atomically with one JSON line per row."""
  tmp = path + '.tmp'
  with open(tmp, 'w') as f:
    for row in rows:
      f.write(json.dumps(row) + '\n')
  os.replace(tmp, path)


def read_records(run_dir: str) -> list:
  """The engine's per-epoch records of a run (``search.read_records`` where the library has it)."""
  reader = getattr(search, 'read_records', None)
  if reader is not None and os.path.exists(os.path.join(run_dir, RECORDS)):
    return reader(run_dir)
  return read_jsonl(os.path.join(run_dir, RECORDS))


# The recipe the paper's table 2 numbers come from (their reference lines and columns are shown
# as comparable only for runs of this recipe).
PAPER_RECIPE = {'depth': 20, 'width': 16, 'epochs': 182, 'batch_size': 128, 'num_train': 45000,
                'num_val': 5000, 'num_test': None}


def is_paper_recipe(config) -> bool:
  """``config`` (a dict or a ``Config``) is the paper's recipe: :data:`PAPER_RECIPE`."""
  get = config.get if isinstance(config, dict) else lambda k, d=None: getattr(config, k, d)
  return all(get(k, None) == v for k, v in PAPER_RECIPE.items())


def data_title(config, *, num_train: int | None = None) -> str:
  """``'CIFAR-10, 45,000 train images'`` or ``'CIFAR-10 subset, 3,136 train images'``."""
  get = config.get if isinstance(config, dict) else lambda k, d=None: getattr(config, k, d)
  num_train = num_train if num_train is not None else int(get('num_train', 0))
  full = num_train + int(get('num_val', 0)) >= 50000 and get('num_test', None) is None
  return f'CIFAR-10{"" if full else " subset"}, {num_train:,} train images'


def paper_error(label_noise: float, mode: str) -> float | None:
  for noise, row in PAPER_TEST_ERROR.items():
    if abs(noise - label_noise) < 1e-9:
      return row.get(mode)
  return None


@dataclasses.dataclass
class Run:
  name: str
  directory: str
  config: dict
  summary: dict | None
  test_log: list

  @property
  def mode(self) -> str:
    """The mode, with '-paper' for a search with ``--strategy paper`` (or from a release before
    ``--strategy``, when the paper's algorithm was the only one): never mixed in one row."""
    mode = self.config['mode']
    if mode in ('amlfs', 'random') and self.config.get('strategy', 'paper') == 'paper':
      mode += '-paper'
    return mode

  @property
  def copies(self) -> int:
    """The copies trained (B; 1 for the baseline)."""
    return 1 if self.config['mode'] == 'baseline' else int(self.config.get('population', 1))

  @property
  def epochs(self) -> int:
    """The epochs done (the configured ones when the summary does not say)."""
    done = (self.summary or {}).get('epochs_completed')
    return int(done if done is not None else self.config.get('epochs', 0))

  @property
  def compute(self) -> str:
    """``'4 copies x 3 epochs'``: what the run trained (a search trains B models)."""
    return f'{self.copies} {"copy" if self.copies == 1 else "copies"} x {self.epochs} epochs'

  @property
  def paper_recipe(self) -> bool:
    """Whether the paper's numbers are comparable: full CIFAR-10 (45k/5k/10k), ResNet-20,
    182 epochs, batch 128."""
    return is_paper_recipe(self.config)

  @property
  def label_noise(self) -> float:
    return float(self.config.get('label_noise', 0.0))

  @property
  def finished(self) -> bool:
    """All its epochs done (a run of no epoch, refused since, never counts as a result)."""
    return bool(self.summary and self.summary.get('finished')
                and self.summary.get('epochs_completed', 1) >= 1)


def collect_runs(workdir: str) -> list[Run]:
  """Every run directory (one holding ``config.json``) directly under ``workdir``."""
  runs = []
  if not os.path.isdir(workdir):
    return runs
  for name in sorted(os.listdir(workdir)):
    directory = os.path.join(workdir, name)
    if not os.path.isfile(os.path.join(directory, CONFIG)):
      continue
    with open(os.path.join(directory, CONFIG)) as f:
      config = json.load(f)
    summary = None
    if os.path.isfile(os.path.join(directory, SUMMARY)):
      with open(os.path.join(directory, SUMMARY)) as f:
        summary = json.load(f)
    runs.append(Run(name, directory, config, summary,
                    read_jsonl(os.path.join(directory, TEST_LOG))))
  return runs


def by_mode(runs: list[Run], label_noise: float) -> dict:
  """mode -> the runs of that mode at this noise level (modes in :data:`MODE_ORDER`)."""
  out = {}
  for mode in MODE_ORDER:
    chosen = [r for r in runs if r.mode == mode and abs(r.label_noise - label_noise) < 1e-9]
    if chosen:
      out[mode] = chosen
  return out


def _mean_std(values) -> str:
  values = np.asarray(values, np.float64)
  if len(values) == 1:
    return f'{values[0]:.2f} (1 run)'
  return f'{values.mean():.2f} ± {values.std(ddof=1):.2f} ({len(values)} runs)'


RECIPE_FIELDS = ('depth', 'width', 'epochs', 'population', 'num_intervals', 'batch_size',
                 'num_train', 'num_val', 'logit_scale', 'conv_impl', 'dtype')


def table2(workdir: str) -> str:
  """Markdown: test error (%) per label noise and mode, mean ± std over seeds, and the paper."""
  runs = [r for r in collect_runs(workdir) if r.finished]
  if not runs:
    return f'No finished run in {workdir}.'
  comparable = all(r.paper_recipe for r in runs)
  # The paper's numbers (and its noise levels) only beside runs of its recipe.
  noises = sorted({r.label_noise for r in runs} | (set(PAPER_TEST_ERROR) if comparable else set()))
  modes = [m for m in MODE_ORDER if any(r.mode == m for r in runs)]
  compute = {m: ' / '.join(sorted({r.compute for r in runs if r.mode == m})) for m in modes}
  header = ['label noise'] + [f'{MODE_LABELS[m]}, {compute[m]}' for m in modes] + (
      ['paper: cross-entropy', 'paper: AM-LFS'] if comparable else [])
  lines = ['Top-1 test error (%) of the final model, mean ± sample std over seeds. Each '
           'column says what a run trains: a search trains B copies per epoch, the '
           'cross-entropy baseline one model (1/B of the compute).', '',
           '| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
  for noise in noises:
    groups = by_mode(runs, noise)
    cells = [f'{noise:.0%}']
    for mode in modes:
      chosen = groups.get(mode, [])
      cells.append(_mean_std([r.summary['final_test_error'] for r in chosen]) if chosen else '-')
    if comparable:
      cells += [f'{paper_error(noise, m):.2f}' if paper_error(noise, m) is not None else '-'
                for m in ('baseline', 'amlfs')]
    lines.append('| ' + ' | '.join(cells) + ' |')
  recipe = {f: sorted({json.dumps(r.config.get(f)) for r in runs}) for f in RECIPE_FIELDS}
  lines += ['', 'Recipe of these runs: ' + ', '.join(
      f'{f} {"/".join(v)}' for f, v in recipe.items()) + '.']
  mixed = [f for f, v in recipe.items() if len(v) > 1 and f not in ('population', 'conv_impl')]
  if mixed:
    lines.append(f'Warning: the runs differ in {", ".join(mixed)}; compare like with like.')
  sources = sorted({r.summary.get('data', {}).get('source', '?') for r in runs})
  lines.append(f'Data: {"; ".join(sources)}. The paper\'s cross-entropy number is He et al.\'s '
               'published ResNet-20 result, not a run of the paper\'s own.')
  if not comparable:
    lines.append("The paper's table 2 (full CIFAR-10, 45k/5k/10k, ResNet-20, 182 epochs, batch "
                 '128) is left out: not comparable with runs of another recipe.')
  return '\n'.join(lines)
