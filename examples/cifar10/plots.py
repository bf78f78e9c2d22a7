"""The example's figures, as PDF and PNG (matplotlib, Agg backend: no display needed).

* :func:`plot_mu`: the mean ``mu`` of the search distribution over epochs, one panel per
  parameter group (:math:`a_t, b_t, a_\\tau, b_\\tau`), one line per interval with its own line
  style: the paper's figure 3. In ``random`` mode ``mu`` never moves, so the figure shows the
  ``theta`` of the copy kept after each epoch instead (``theta.pdf``).
* :func:`plot_transforms`: :math:`t` (on the target cosine), :math:`\\tau` (on the target
  probability) at the start and at the end, and the loss that is actually trained, the guarded
  :math:`-\\log\\max(\\tau(p), 0.01\\,p)` of ``jaxloss.amlfs_loss``, against cross-entropy
  :math:`-\\log p`, on a linear axis that shows the negative losses a sampled
  :math:`\\tau > 1` gives, from ``p = 0.05`` (below, the guard's clamp would dwarf the learned
  curves): the paper's figure 1.
* :func:`plot_test_error`: test error over epochs per mode (AM-LFS with the default strategy
  or the paper's, random search, cross-entropy), seeds aggregated (mean, and the range over
  seeds), the compute of each (copies x epochs) in the legend, the learning-rate drops marked,
  whole-epoch ticks; the paper's final numbers as reference lines only for runs of the paper's
  recipe (full CIFAR-10, ResNet-20, 182 epochs). The test error is measured after every epoch
  for this plot only; the search never sees it.

:func:`make_plots` draws all of them for a run directory; titles and labels come from the run's
``config.json``: the data and their size (``CIFAR-10 subset, 3,136 train images``), the model,
the strategy. ``*_figure`` functions return the matplotlib figure; ``plot_*`` save it.
"""

from __future__ import annotations

import json
import os
import textwrap
from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from cifar10 import configs, report  # noqa: E402

FORMATS = ('pdf', 'png')
GROUPS = ('a_t', 'b_t', 'a_tau', 'b_tau')
_GROUP_TITLES = {
    'a_t': r'slopes $a_t$ of $t$ (cosine)', 'b_t': r'intercepts $b_t$ of $t$ (cosine)',
    'a_tau': r'slopes $a_\tau$ of $\tau$ (probability)',
    'b_tau': r'intercepts $b_\tau$ of $\tau$ (probability)'}
LINE_STYLES = ('-', '--', '-.', ':', (0, (5, 1, 1, 1, 1, 1)), (0, (1, 1)), (0, (8, 2)),
               (0, (3, 1, 1, 1)), (0, (5, 3)), (0, (2, 2, 6, 2)))
MODE_STYLES = {'amlfs': dict(color='C0', linestyle='-', marker='o'),
               'random': dict(color='C2', linestyle='-.', marker='^'),
               'baseline': dict(color='C3', linestyle='--', marker='s')}
STYLE = {'font.size': 8, 'axes.titlesize': 8, 'axes.labelsize': 8, 'legend.fontsize': 7,
         'xtick.labelsize': 7, 'ytick.labelsize': 7, 'mathtext.fontset': 'cm',
         'font.family': 'serif', 'axes.grid': True, 'grid.alpha': 0.3, 'lines.linewidth': 1.2,
         'savefig.bbox': 'tight', 'savefig.dpi': 200, 'pdf.fonttype': 42}
GUARD = 0.01  # tau_min_ratio of jaxloss.amlfs_loss
# The loss panel starts here: below, -log p and the guard's -log(0.01 p) grow without bound and
# would squeeze the learned curves into a sliver of the axis.
P_MIN = 0.05


def _save(fig, path: str) -> list:
  """``path`` without extension -> ``path.pdf`` and ``path.png``."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  written = []
  for ext in FORMATS:
    fig.savefig(f'{path}.{ext}')
    written.append(f'{path}.{ext}')
  plt.close(fig)
  return written


def model_name(config: configs.Config) -> str:
  """'ResNet-20', or 'ResNet-8 (width 8)' for a narrower one."""
  name = f'ResNet-{config.depth}'
  return name if config.width == 16 else f'{name} (width {config.width})'


def lr_drop_epochs(config: configs.Config) -> list:
  """The epochs (fractional) at which the learning rate drops."""
  return [b / config.steps_per_epoch for b in config.lr_boundaries
          if 0 < b < config.epochs * config.steps_per_epoch]


def integer_epochs(ax) -> None:
  """Epoch ticks at whole epochs only (a 3-epoch run has no epoch 1.5)."""
  from matplotlib.ticker import MaxNLocator  # pylint: disable=import-outside-toplevel
  ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _mark_drops(ax, drops, label=True):
  for i, epoch in enumerate(drops):
    ax.axvline(epoch, color='0.5', linewidth=0.8, linestyle=(0, (1, 2)),
               label=r'lr $\div 10$' if label and i == 0 else None)


def plot_mu(epochs: Sequence[int], mus: np.ndarray, path: str, *, title: str = '',
            lr_drops: Sequence[float] = (), what: str = r'\mu') -> list:
  """``mus``: ``(T, 4M)`` values after each epoch (row 0 may be ``mu_0`` at epoch 0)."""
  mus = np.asarray(mus, np.float64)
  m = mus.shape[1] // 4
  with plt.rc_context(STYLE):
    fig, axes = plt.subplots(2, 2, figsize=(6.8, 4.6), sharex=True)
    colors = plt.cm.viridis(np.linspace(0, 0.85, m))
    for g, (name, ax) in enumerate(zip(GROUPS, axes.ravel())):
      for i in range(m):
        ax.plot(epochs, mus[:, g * m + i], color=colors[i],
                linestyle=LINE_STYLES[i % len(LINE_STYLES)], label=f'interval {i + 1}')
      _mark_drops(ax, lr_drops, label=g == 0)
      ax.set_title(_GROUP_TITLES[name])
      integer_epochs(ax)
    for ax in axes[1]:
      ax.set_xlabel('epoch')
    for ax in axes[:, 0]:
      ax.set_ylabel(f'${what}$')
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.suptitle('\n'.join(textwrap.wrap(title, 110)))
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.legend(handles, labels, loc='lower center', ncol=len(labels), frameon=False,
               handlelength=3)
    return _save(fig, path)


def guarded_loss(p: np.ndarray, tau: np.ndarray, guard: float = GUARD) -> np.ndarray:
  """The loss ``jaxloss.amlfs_loss`` trains, ``-log max(tau(p), guard p)`` (p > 0)."""
  p, tau = np.asarray(p, np.float64), np.asarray(tau, np.float64)
  return -np.log(np.maximum(tau, guard * p))


def transforms_figure(curves: Mapping[str, Mapping[str, np.ndarray]], *, title: str = ''):
  """The figure of :func:`plot_transforms` (a matplotlib ``Figure``)."""
  with plt.rc_context(STYLE):
    fig, axes = plt.subplots(1, 4, figsize=(9.4, 2.6))
    first = next(iter(curves.values()))
    x, p = np.asarray(first['x']), np.asarray(first['p'])
    shown = p >= P_MIN
    reference = dict(color='k', linestyle=':', linewidth=1.0)
    axes[0].plot(x, x, **reference)
    axes[1].plot(p, p, **reference)
    axes[2].plot(p[shown], -np.log(p[shown]), label=r'identity: cross-entropy, $-\log p$',
                 **reference)
    low, high = [float(np.min(-np.log(p[shown])))], [float(np.max(-np.log(p[shown])))]
    for i, (label, c) in enumerate(curves.items()):
      style = dict(color=f'C{i}', linestyle=LINE_STYLES[i % len(LINE_STYLES)], label=label,
                   linewidth=1.4 if i == 0 else 1.2, alpha=0.6 if i == 0 else 1.0)
      axes[0].plot(c['x'], c['t'], **style)
      axes[1].plot(c['p'], c['tau'], **style)
      cp, tau = np.asarray(c['p']), np.asarray(c['tau'])
      loss = guarded_loss(cp[cp >= P_MIN], tau[cp >= P_MIN])
      axes[2].plot(cp[cp >= P_MIN], loss, **style)
      axes[3].plot(cp[cp >= P_MIN], loss + np.log(cp[cp >= P_MIN]), **style)
      low.append(float(np.min(loss)))
      high.append(float(np.max(loss)))
    axes[0].set(xlabel=r'target cosine $x$', ylabel=r'$t(x)$', title=r'$t$: target cosine')
    axes[1].set(xlabel=r'target probability $p$', ylabel=r'$\tau(p)$',
                title=r'$\tau$: target probability')
    axes[2].set(xlabel=r'target probability $p$',
                ylabel=r'$-\log\max(\tau(p),\,0.01\,p)$',
                title=rf'the loss trained (guarded), $p \geq {P_MIN:g}$')
    pad = 0.05 * (max(high) - min(low) or 1.0)
    axes[2].set_xlim(0.0, 1.0)
    axes[2].set_ylim(min(low) - pad, max(high) + pad)
    axes[2].axhline(0.0, color='0.6', linewidth=0.6)
    axes[3].axhline(0.0, **reference)
    axes[3].set_xlim(0.0, 1.0)
    axes[3].set(xlabel=r'target probability $p$', ylabel=r'loss $+ \log p$',
                title='the loss trained minus cross-entropy')
    handles, labels = axes[2].get_legend_handles_labels()
    fig.suptitle('\n'.join(textwrap.wrap(title, 120)))
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    fig.legend(handles, labels, loc='lower center', ncol=len(labels), frameon=False)
  return fig


def plot_transforms(curves: Mapping[str, Mapping[str, np.ndarray]], path: str, *,
                    title: str = '') -> list:
  """``curves``: label -> ``{'x', 't', 'p', 'tau'}`` arrays (``jaxloss.amlfs_curves``).

  Four panels: :math:`t(x)` on ``[-1, 1]``, :math:`\\tau(p)` on ``[0, 1]``, the guarded
  loss that is trained, with cross-entropy :math:`-\\log p` for reference, on a linear axis
  (negative where :math:`\\tau > 1`) from ``p = P_MIN`` (below it every loss grows without
  bound, the guard's clamp, which would hide the learned curves), and that loss minus
  cross-entropy, where what the search learned is what the eye sees. One legend, below.
  """
  with plt.rc_context(STYLE):
    return _save(transforms_figure(curves, title=title), path)


def test_error_figure(runs: Mapping[str, Sequence[tuple]], *, title: str = '',
                      lr_drops: Sequence[float] = (),
                      paper: Mapping[str, float] | None = None,
                      compute: Mapping[str, str] | None = None):
  """The figure of :func:`plot_test_error` (a matplotlib ``Figure``)."""
  with plt.rc_context(STYLE):
    fig, ax = plt.subplots(figsize=(4.6, 3.2))
    lows, highs = [], []
    for mode, curves in runs.items():
      length = min(len(e) for e, _ in curves)
      epochs = np.asarray(curves[0][0][:length], np.float64)
      errors = np.stack([np.asarray(err[:length], np.float64) for _, err in curves])
      mean = errors.mean(0)
      style = dict(MODE_STYLES.get(mode.replace('-paper', ''), {}))
      if mode.endswith('-paper'):
        style['linestyle'] = ':'
      if length > 30:
        style.pop('marker', None)
      n = len(curves)
      cost = f' ({compute[mode]})' if compute and mode in compute else ''
      label = (f'{report.MODE_LABELS.get(mode, mode)}{cost}: {mean[-1]:.2f}%'
               + (f', mean of {n} seeds' if n > 1 else ''))
      ax.plot(epochs, mean, markersize=3, label=label, **style)
      if n > 1:
        ax.fill_between(epochs, errors.min(0), errors.max(0), color=style.get('color'),
                        alpha=0.15, linewidth=0)
      lows.append(float(np.nanmin(errors)))
      highs.append(float(np.nanmax(errors)))
    for mode, value in (paper or {}).items():
      ax.axhline(value, color=MODE_STYLES.get(mode, {}).get('color', 'k'), linewidth=0.8,
                 linestyle=(0, (6, 3)), alpha=0.7,
                 label=f'paper (ResNet-20), {report.MODE_LABELS.get(mode, mode)}: {value:.2f}%')
      lows.append(value)
      highs.append(value)
    _mark_drops(ax, lr_drops)
    ax.set(xlabel='epoch', ylabel='test error (%)', title=title)
    integer_epochs(ax)
    if lows:
      ax.set_ylim(max(0.0, min(lows) - 2), min(100.0, max(highs) + 2))
    ax.legend()
    fig.tight_layout()
  return fig


def plot_test_error(runs: Mapping[str, Sequence[tuple]], path: str, *, title: str = '',
                    lr_drops: Sequence[float] = (),
                    paper: Mapping[str, float] | None = None,
                    compute: Mapping[str, str] | None = None) -> list:
  """``runs``: mode -> list of ``(epochs, test_error_percent)``, one per seed.

  One line per mode (the mean over its seeds at the epochs they all reached), a band for the
  range over seeds, the final mean and the compute (``compute[mode]``, e.g. ``'4 copies x 3
  epochs'``) in the legend, whole-epoch ticks, and ``paper``'s numbers as reference lines
  (pass them only for runs of the paper's recipe: :func:`plot_comparison` does).
  """
  with plt.rc_context(STYLE):
    return _save(test_error_figure(runs, title=title, lr_drops=lr_drops, paper=paper,
                                   compute=compute), path)


# ------------------------------------------------------------------------------------------------
# From a run directory
# ------------------------------------------------------------------------------------------------


def curves_of(theta, num_points: int = 601) -> dict:
  """``{'x', 't', 'p', 'tau'}`` numpy arrays of theta's transforms (``jaxloss.amlfs_curves``)."""
  import jax.numpy as jnp

  import jaxloss
  curves = jaxloss.amlfs_curves(jnp.asarray(theta, jnp.float32), num_points=num_points)
  return {k: np.asarray(v) for k, v in curves.items()}


def _load_config(run_dir: str) -> configs.Config:
  with open(os.path.join(run_dir, report.CONFIG)) as f:
    return configs.from_dict(json.load(f))


def _noise_text(config) -> str:
  return f'{config.label_noise:.0%} label noise'


def make_plots(workdir: str, run_dir: str) -> list:
  """The figures of one run (``mu``/``theta``, transforms) and the test-error comparison of its
  noise level in ``workdir``. Returns the paths written."""
  written = []
  records = report.read_records(run_dir)
  config = _load_config(run_dir)
  where = f'{report.data_title(config)}, {model_name(config)}, {_noise_text(config)}'
  search = report.MODE_LABELS['amlfs-paper' if config.strategy == 'paper' else 'amlfs']
  seed = f', seed {config.seed}'
  drops = lr_drop_epochs(config)
  if records and config.mode == 'amlfs':
    mus = np.asarray([records[0]['mu']] + [r['mu_next'] for r in records], np.float64)
    written += plot_mu(np.arange(len(mus)), mus, os.path.join(run_dir, 'mu'),
                       title=rf'{search}: mean $\mu$ of the loss distribution ({where}{seed})',
                       lr_drops=drops)
    curves = {r'$\mu_0$ (cross-entropy)': curves_of(mus[0]),
              rf'$\mu$ after epoch {len(records)}': curves_of(mus[-1])}
    written += plot_transforms(curves, os.path.join(run_dir, 'transforms'),
                               title=f'{search}: the loss at the start and the end ({where}{seed})')
  elif records and config.mode == 'random':
    kept = np.asarray([r['thetas'][r['best_index']] for r in records], np.float64)
    written += plot_mu(np.arange(1, len(kept) + 1), kept, os.path.join(run_dir, 'theta'),
                       title=(r'random search: $\theta$ of the copy kept after each epoch '
                              rf'($\mu = \mu_0$ throughout; {where}{seed})'),
                       lr_drops=drops, what=r'\theta')
    curves = {r'$\mu_0$ (cross-entropy)': curves_of(records[0]['mu']),
              rf'$\theta$ kept after epoch {len(records)}': curves_of(kept[-1])}
    written += plot_transforms(curves, os.path.join(run_dir, 'transforms'),
                               title=f'random search: the loss kept last ({where}{seed})')
  written += plot_comparison(workdir, config)
  return written


def plot_comparison(workdir: str, config: configs.Config) -> list:
  """Test error over epochs of every run in ``workdir`` with this run's label noise."""
  groups = report.by_mode(report.collect_runs(workdir), config.label_noise)
  runs = {mode: [([t['epoch'] + 1 for t in r.test_log], [t['test_error'] for t in r.test_log])
                 for r in chosen if r.test_log]
          for mode, chosen in groups.items()}
  runs = {mode: curves for mode, curves in runs.items() if curves}
  if not runs:
    return []
  shown = [r for mode in runs for r in groups[mode]]
  compute = {mode: ' / '.join(sorted({r.compute for r in groups[mode]})) for mode in runs}
  percent = int(round(100 * config.label_noise))
  # The paper's full-CIFAR ResNet-20 numbers only beside runs of that recipe.
  paper = {m: v for m in ('baseline', 'amlfs')
           if (v := report.paper_error(config.label_noise, m)) is not None
           } if all(r.paper_recipe for r in shown) else None
  return plot_test_error(
      runs, os.path.join(workdir, f'test_error_noise{percent}'),
      title=f'{report.data_title(config)}, {model_name(config)}, {_noise_text(config)}',
      lr_drops=lr_drop_epochs(config), paper=paper, compute=compute)
