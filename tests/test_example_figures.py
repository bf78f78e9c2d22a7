"""Figures and tables that do not invite wrong conclusions (issue 24): the paper's reference
lines only beside runs of the paper's recipe, whole-epoch ticks, the data and their size in
the title, the strategy named, the compute (copies x epochs) in legends and tables, the study's
paired differences with 95% intervals against 0, and a transforms figure whose loss panel is
scaled to the learned curves (not to the guard's clamp near p = 0)."""

import json
import os
import sys

import numpy as np
import pytest

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'examples')
if EXAMPLES not in sys.path:
  sys.path.insert(0, EXAMPLES)

import amlfs_study  # noqa: E402
from cifar10 import configs, plots, report  # noqa: E402

import jaxloss  # noqa: E402

SUBSET = dict(depth=8, width=8, population=4, epochs=3, batch_size=64, num_train=3136,
              num_val=1000)


def _fake_run(workdir, config, errors):
  run_dir = os.path.join(workdir, config.run_name)
  os.makedirs(run_dir)
  with open(os.path.join(run_dir, 'config.json'), 'w') as f:
    json.dump(configs.to_dict(config), f)
  with open(os.path.join(run_dir, 'summary.json'), 'w') as f:
    json.dump({'finished': True, 'final_test_error': errors[-1], 'data': {'source': 'here'},
               'epochs_completed': len(errors)}, f)
  with open(os.path.join(run_dir, 'test.jsonl'), 'w') as f:
    for epoch, error in enumerate(errors):
      f.write(json.dumps({'epoch': epoch, 'test_error': error}) + '\n')


def _comparison(tmp_path, monkeypatch, **overrides):
  for mode, errors in (('amlfs', [70.0, 65.0, 60.0]), ('baseline', [72.0, 66.0, 62.0])):
    _fake_run(tmp_path, configs.default(mode=mode, **overrides), errors)
  seen = {}
  monkeypatch.setattr(plots, 'plot_test_error', lambda runs, path, **kw: seen.update(kw) or [])
  plots.plot_comparison(str(tmp_path), configs.default(**overrides))
  return seen


def test_a_subset_run_gets_no_paper_lines_and_says_what_it_is(tmp_path, monkeypatch):
  seen = _comparison(tmp_path, monkeypatch, **SUBSET)
  assert seen['paper'] is None
  assert seen['title'].startswith('CIFAR-10 subset, 3,136 train images, ResNet-8 (width 8)')
  assert seen['compute'] == {'amlfs': '4 copies x 3 epochs', 'baseline': '1 copy x 3 epochs'}
  table = report.table2(str(tmp_path))
  assert 'AM-LFS (default strategy), 4 copies x 3 epochs' in table
  assert 'cross-entropy, 1 copy x 3 epochs' in table
  # The paper's full-CIFAR numbers are not beside a subset run: only a note says why.
  assert 'paper' not in table.split('\n\n')[1] and 'not comparable with runs' in table
  assert '| 10% |' not in table  # no row of the paper's noise levels without a run


def test_a_run_of_the_paper_recipe_gets_the_paper_lines(tmp_path, monkeypatch):
  seen = _comparison(tmp_path, monkeypatch)
  assert seen['paper'] == {'baseline': 8.75, 'amlfs': 6.92}
  assert seen['title'].startswith('CIFAR-10, 45,000 train images, ResNet-20')


def test_test_error_figure_has_whole_epoch_ticks_and_no_lines_it_was_not_given():
  runs = {'amlfs': [([1, 2, 3], [70.0, 65.0, 60.0])], 'baseline': [([1, 2, 3], [72.0, 66, 62])]}
  fig = plots.test_error_figure(runs, lr_drops=[1.5, 2.25],
                                compute={'amlfs': '4 copies x 3 epochs'})
  ax = fig.axes[0]
  ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
  assert ticks and all(float(t).is_integer() for t in ticks)
  horizontal = [line for line in ax.get_lines() if len(set(line.get_ydata())) == 1
                and len(line.get_ydata()) == 2 and list(line.get_xdata()) == [0, 1]]
  assert horizontal == []  # no reference lines
  labels = ax.get_legend_handles_labels()[1]
  assert labels[0] == 'AM-LFS (default strategy) (4 copies x 3 epochs): 60.00%'
  assert ax.get_ylim()[0] > 50  # the curves fill the axis
  with_paper = plots.test_error_figure(runs, paper={'amlfs': 6.92})
  assert any('paper (ResNet-20)' in label
             for label in with_paper.axes[0].get_legend_handles_labels()[1])


def test_transforms_loss_panel_is_scaled_to_the_learned_curves():
  learned = np.asarray(jaxloss.identity_theta(6), np.float64)
  learned[18:] = 0.05  # b_tau: tau(p) = p + 0.05
  curves = {'mu_0': plots.curves_of(jaxloss.identity_theta(6)), 'mu': plots.curves_of(learned)}
  fig = plots.transforms_figure(curves)
  loss_ax = fig.axes[2]
  low, high = loss_ax.get_ylim()
  # -log p at p = 0.05 is 3.0; at p = 0.001 (the guard's spike) it would be 6.9.
  assert high < 3.3 and low < 0.0 + 0.2
  assert loss_ax.get_title().endswith(r'$p \geq 0.05$')
  # The difference from cross-entropy: the learned change is the whole panel.
  diff_ax = fig.axes[3]
  low, high = diff_ax.get_ylim()
  assert high - low < 1.5 and low < 0 < high


def _study_results():
  rng = np.random.default_rng(0)
  results = []
  for mode, copies, shift in (('ce', 1, 0.0), ('default', 8, 0.01), ('paper', 8, -0.05)):
    for seed in range(3):
      acc = 0.85 + shift + 0.01 * rng.normal()
      results.append({'mode': mode, 'seed': seed, 'copies': copies, 'test_accuracy': acc,
                      'records': [{'best_test': acc - 0.1 * (4 - e)} for e in range(5)]})
  return results


def test_study_figure_shows_paired_differences_with_intervals_against_zero(tmp_path):
  results = _study_results()
  fig = amlfs_study.figure(results, str(tmp_path / 'study.png'), 'mnist1d: 3800 train')
  assert os.path.getsize(tmp_path / 'study.png') > 0
  ax, curves = fig.axes
  assert [t.get_text() for t in ax.get_yticklabels()] == ['default (8 x 5)', 'paper (8 x 5)']
  low, high = ax.get_xlim()
  assert low < 0 < high  # the zero line is on the axis: no truncated scale
  zero = [line for line in ax.get_lines() if list(line.get_xdata()) == [0, 0]]
  assert zero
  d = amlfs_study.paired_differences(results, 'paper', 'ce')
  assert len(d) == 3 and d.mean() < 0
  half = amlfs_study.interval95(d)
  assert half == pytest.approx(4.303 * d.std(ddof=1) / np.sqrt(3))
  assert np.isnan(amlfs_study.interval95(d[:1]))
  ticks = [t for t in curves.get_xticks() if curves.get_xlim()[0] <= t <= curves.get_xlim()[1]]
  assert all(float(t).is_integer() for t in ticks)
  assert 'ce (1 x 5)' in curves.get_legend_handles_labels()[1]
