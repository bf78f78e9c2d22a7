"""The example's figures (matplotlib, Agg backend: no display needed).

* :func:`plot_mu`: the mean ``mu`` of the search distribution over epochs, one panel per
  parameter group (``a_t``, ``b_t``, ``a_tau``, ``b_tau``), one line per interval: the paper's
  figure 3 ("convergency analysis").
* :func:`plot_transforms`: the transforms ``t`` (on the cosine) and ``tau`` (on the target
  probability) of ``mu`` at the start and at the end, and the loss ``-log tau(p)`` they give
  against plain cross-entropy ``-log p``: the paper's figure 1.
* :func:`plot_test_error`: test error over epochs of every run found for one noise level
  (AM-LFS, random search, cross-entropy baseline). The test error is measured after every
  epoch for this plot only; the search never sees it.
"""

from __future__ import annotations

import os
from typing import Mapping, Sequence

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

GROUPS = ('a_t', 'b_t', 'a_tau', 'b_tau')
_GROUP_TITLES = {
    'a_t': 'slopes of t (cosine)', 'b_t': 'intercepts of t (cosine)',
    'a_tau': 'slopes of tau (probability)', 'b_tau': 'intercepts of tau (probability)'}


def _save(fig, path: str) -> str:
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, dpi=120, bbox_inches='tight')
  plt.close(fig)
  return path


def plot_mu(epochs: Sequence[int], mus: np.ndarray, path: str, title: str = '') -> str:
  """``mus``: ``(T, 4M)`` means after each epoch (row 0 may be ``mu_0`` at epoch 0)."""
  mus = np.asarray(mus, np.float64)
  m = mus.shape[1] // 4
  fig, axes = plt.subplots(2, 2, figsize=(10, 7), sharex=True)
  colors = plt.cm.viridis(np.linspace(0, 0.9, m))
  for g, (name, ax) in enumerate(zip(GROUPS, axes.ravel())):
    for i in range(m):
      ax.plot(epochs, mus[:, g * m + i], color=colors[i], label=f'interval {i + 1}')
    ax.set_title(_GROUP_TITLES[name])
    ax.grid(alpha=0.3)
  for ax in axes[1]:
    ax.set_xlabel('epoch')
  axes[0, 0].legend(fontsize=7, ncol=2)
  fig.suptitle(title or 'AM-LFS: mean of the loss distribution over epochs (cf. paper fig. 3)')
  return _save(fig, path)


def plot_transforms(curves: Mapping[str, Mapping[str, np.ndarray]], path: str,
                    title: str = '') -> str:
  """``curves``: label -> ``{'x', 't', 'p', 'tau'}`` arrays (e.g. from ``jaxloss.amlfs_curves``).

  Three panels: ``t(x)`` on ``[-1, 1]``, ``tau(p)`` on ``[0, 1]``, and the loss
  ``-log tau(p)`` (log scale, non-positive ``tau`` left out) with cross-entropy for reference.
  """
  fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
  x = next(iter(curves.values()))['x']
  p = next(iter(curves.values()))['p']
  axes[0].plot(x, x, 'k:', label='identity')
  axes[1].plot(p, p, 'k:', label='identity')
  axes[2].plot(p[p > 0], -np.log(p[p > 0]), 'k:', label='cross-entropy  -log p')
  for label, c in curves.items():
    axes[0].plot(c['x'], c['t'], label=label)
    axes[1].plot(c['p'], c['tau'], label=label)
    tau = np.asarray(c['tau'], np.float64)
    ok = tau > 0
    axes[2].plot(np.asarray(c['p'])[ok], -np.log(tau[ok]), label=label)
  axes[0].set(xlabel='cosine to the target class x', ylabel='t(x)', title='t: target cosine')
  axes[1].set(xlabel='target probability p', ylabel='tau(p)', title='tau: target probability')
  axes[2].set(xlabel='target probability p', ylabel='-log tau(p)', yscale='log',
              title='loss of the target probability')
  for ax in axes:
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
  fig.suptitle(title or 'AM-LFS: learned transforms at the start and the end (cf. paper fig. 1)')
  return _save(fig, path)


def plot_test_error(runs: Mapping[str, tuple], path: str, title: str = '') -> str:
  """``runs``: label -> ``(epochs, test_error_percent)``; one line per run."""
  fig, ax = plt.subplots(figsize=(8, 5))
  for label, (epochs, errors) in sorted(runs.items()):
    errors = np.asarray(errors, np.float64)
    final = errors[-1] if len(errors) else float('nan')
    ax.plot(epochs, errors, marker='o' if len(errors) <= 30 else None, markersize=3,
            label=f'{label} (final {final:.2f}%)')
  ax.set(xlabel='epoch', ylabel='test error (%)', title=title or 'CIFAR-10 test error')
  finite = [np.asarray(e, np.float64) for _, e in runs.values() if len(e)]
  if finite:
    low = min(float(np.nanmin(e)) for e in finite)
    ax.set_ylim(max(0.0, low - 2), min(100.0, max(low + 25, 30)))
  ax.grid(alpha=0.3)
  ax.legend()
  return _save(fig, path)
