"""The CIFAR-10 example (examples/amlfs_cifar10.py, examples/cifar10/): units and a smoke run.

The end-to-end test runs the example's own CLI on the tfds route under
``tfds.testing.mock_data`` (random 32x32 images served through ``tfds.data_source``; no
TensorFlow, no download) with ``--smoke`` (width-4 ResNet-20, B=2, 2 epochs of 64 images),
checks the files and figures it writes and its console output, and checks that a run stopped
after one epoch and resumed gives the same result as an uninterrupted one. Another counts the
compilations of the outer step: the modes of one configuration share one program. The readers
of the official archives, on real images, are in ``test_example_cifar10_data.py``.
"""

import dataclasses
import functools
import importlib.util
import json
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'examples')
if EXAMPLES not in sys.path:
  sys.path.insert(0, EXAMPLES)

import flags  # noqa: E402
import loss_families  # noqa: E402
from cifar10 import configs, input_pipeline, models, plots, report  # noqa: E402

import jaxloss  # noqa: E402

tfds = pytest.importorskip('tensorflow_datasets')


# ------------------------------------------------------------------------------------------------
# Configuration
# ------------------------------------------------------------------------------------------------


def test_default_config_is_the_paper_and_he_recipe():
  c = configs.default()
  assert (c.mode, c.population, c.num_intervals, c.sigma, c.policy_learning_rate) == (
      'amlfs', 32, 6, 0.2, 0.05)
  assert (c.batch_size, c.learning_rate, c.momentum, c.weight_decay) == (128, 0.1, 0.9, 1e-4)
  assert (c.num_train, c.num_val, c.depth, c.width) == (45000, 5000, 20, 16)
  # 351 steps per epoch; 182 epochs ~ 64k iterations; drops near 32k and 48k.
  assert c.steps_per_epoch == 351
  assert c.epochs * c.steps_per_epoch == 63882
  assert c.lr_boundaries == (31941, 47912)
  assert c.run_name == 'amlfs-noise0'
  assert configs.default(mode='baseline', label_noise=0.2, seed=3).run_name == (
      'baseline-noise20-seed3')
  assert configs.default(mode='baseline').effective_population == 1
  assert configs.from_dict(configs.to_dict(c)) == c
  # The paper's algorithm gets its own directory and its own row of the table.
  assert configs.default(strategy='paper').run_name == 'amlfs-paper-noise0'
  assert configs.default(mode='baseline', strategy='paper').run_name == 'baseline-noise0'
  run = lambda config: report.Run('r', '.', config, None, [])
  assert run({'mode': 'amlfs', 'strategy': 'default'}).mode == 'amlfs'
  assert run({'mode': 'amlfs', 'strategy': 'paper'}).mode == 'amlfs-paper'
  assert run({'mode': 'amlfs'}).mode == 'amlfs-paper'  # written before --strategy existed
  assert run({'mode': 'baseline'}).mode == 'baseline'


def test_config_rejects_bad_values():
  with pytest.raises(ValueError, match='mode'):
    configs.default(mode='search')
  with pytest.raises(ValueError, match='depth'):
    configs.default(depth=21)
  with pytest.raises(ValueError, match='--label-noise'):
    configs.default(label_noise=1.0)
  with pytest.raises(ValueError, match='logit_scale'):
    configs.default(logit_scale='norm')
  with pytest.raises(ValueError, match='logit_scale'):
    configs.default(logit_scale=0.0)
  with pytest.raises(ValueError, match='dtype'):
    configs.default(dtype='float16x')


def test_every_config_field_is_a_flag_with_one_vocabulary():
  import amlfs_cifar10
  fields = [f.name for f in dataclasses.fields(configs.Config)]
  assert len(fields) == 32
  for f in dataclasses.fields(configs.Config):
    assert f.metadata.get('help'), f.name
  argv = ['--strategy', 'paper', '--sigma', '0.3', '--policy-learning-rate', '0.01',
          '--learning-rate', '0.05',
          '--batch-size', '64', '--depth', '8', '--lr-drop-fractions', '0.3', '0.6', '0.9',
          '--no-common-random-numbers', '--logit-scale', '16', '--num-test', 'none',
          '--scan-unroll', 'true', '--modes', 'amlfs', 'random', '--seeds', '0', '2']
  runs = amlfs_cifar10.configs_from_args(amlfs_cifar10.parse_args(argv))
  assert [(c.mode, c.seed) for c in runs] == [('amlfs', 0), ('random', 0), ('amlfs', 2),
                                             ('random', 2)]
  c = runs[0]
  assert c.strategy == 'paper'
  from jaxloss.search import strategies
  options = flags.search_options(c.mode, c.strategy, c.sigma, c.policy_learning_rate)
  assert options == dict(strategy=strategies.Gaussian(sigma=0.3, learning_rate=0.01),
                         selection='best')
  assert flags.search_options('random', 'paper', 0.3, 0.01)['strategy'] == strategies.Gaussian(
      sigma=0.3, learning_rate=0.01, update_mean=False)
  assert flags.search_options('amlfs', 'default', 0.2, 0.05)['strategy'] is strategies.DEFAULT
  assert flags.search_options('baseline', 'paper', 0.3, 0.01) == dict(strategy='fixed',
                                                                       selection='none')
  assert amlfs_cifar10.config_from_args(amlfs_cifar10.parse_args([])).strategy == 'default'
  assert (c.sigma, c.policy_learning_rate, c.learning_rate, c.batch_size, c.depth) == (
      0.3, 0.01, 0.05, 64, 8)
  assert c.lr_drop_fractions == (0.3, 0.6, 0.9) and not c.common_random_numbers
  assert c.logit_scale == 16.0 and c.num_test is None and c.scan_unroll is True
  assert c.epochs == 182 and c.width == 16  # not given: the preset's
  smoke = amlfs_cifar10.config_from_args(amlfs_cifar10.parse_args(['--smoke', '--width', '8']))
  assert (smoke.width, smoke.population, smoke.num_train) == (8, 2, 64)
  # Every field has a flag; the MNIST-1D example uses the same names for the same things.
  import argparse

  import amlfs_mnist1d
  parser = argparse.ArgumentParser()
  flags.add_config_flags(parser, configs.Config)
  assert set(fields) <= {a.dest for a in parser._actions}
  assert 'mode' not in vars(amlfs_cifar10.parse_args([]))  # not given: the preset decides
  shared = {'mode', 'seed', 'population', 'num_intervals', 'sigma', 'policy_learning_rate',
            'learning_rate', 'batch_size', 'eval_batch_size', 'epochs', 'logit_scale',
            'label_noise', 'noise_seed', 'num_val', 'workdir'}
  assert shared <= set(fields)
  assert shared <= {f.name for f in dataclasses.fields(amlfs_mnist1d.Config)}
  config, modes, seeds = amlfs_mnist1d.config_from_args(amlfs_mnist1d.parse_args(
      ['--num-intervals', '3', '--strategy', 'paper', '--policy-learning-rate', '0.01',
       '--seeds', '1', '2', '--workdir', 'x', '--no-progress']))
  assert (config.num_intervals, config.policy_learning_rate, config.workdir) == (3, 0.01, 'x')
  assert modes == ['amlfs', 'random', 'baseline'] and seeds == [1, 2]


@pytest.mark.parametrize('argv', [['--sigma', '0.3'], ['--policy-learning-rate', '0.1'],
                                  ['--strategy', 'default', '--sigma', '0.3']])
def test_flags_the_strategy_does_not_read_are_refused(argv, capsys):
  import amlfs_cifar10
  import amlfs_mnist1d
  for example in (amlfs_cifar10, amlfs_mnist1d):
    parse = (example.configs_from_args if example is amlfs_cifar10
             else example.config_from_args)
    with pytest.raises(SystemExit) as info:
      parse(example.parse_args(argv))
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and 'read only by --strategy paper' in err


# ------------------------------------------------------------------------------------------------
# Model
# ------------------------------------------------------------------------------------------------


def _expected_resnet_params(n, width, num_classes=10):
  """Parameters of an option-A ResNet-(6n+2): 3x3 convolutions, BatchNorm, bias-free head."""
  channels = [width, 2 * width, 4 * width]
  convs = 3 * 3 * 3 * width  # stem
  bn = 2 * width
  c_in = width
  for c in channels:
    for _ in range(n):
      convs += 9 * c_in * c + 9 * c * c
      bn += 2 * (2 * c)
      c_in = c
  return convs + bn + channels[-1] * num_classes


def test_resnet20_parameter_count():
  model = models.CifarResNet(depth=20, width=16)
  shapes = jax.eval_shape(lambda k: model.init(k, jnp.zeros((1, 32, 32, 3)), train=False),
                          jax.random.key(0))
  count = models.count_params(shapes['params'])
  assert count == _expected_resnet_params(3, 16) == 269_712  # He et al.: 0.27M
  assert 0.26e6 < count < 0.28e6
  # Option A: no projection shortcuts (every kernel is 3x3 except the classifier).
  kernels = [p for path, p in jax.tree_util.tree_leaves_with_path(shapes['params'])
             if 'kernel' in jax.tree_util.keystr(path)]
  assert len(kernels) == 19 and all(k.shape[:2] == (3, 3) for k in kernels)
  assert shapes['params']['classifier'].shape == (64, 10)
  # BatchNorm statistics live in their own collection (the training state's model_state).
  assert models.count_params(shapes['batch_stats']) == 2 * 688


def test_resnet_shapes_dtypes_and_option_a_shortcut():
  model = models.CifarResNet(depth=8, width=4, dtype=jnp.bfloat16)
  x = jnp.zeros((2, 32, 32, 3))
  variables = jax.jit(lambda k: model.init(k, x, train=False))(jax.random.key(0))
  assert all(p.dtype == jnp.float32 for p in jax.tree_util.tree_leaves(variables['params']))
  (features, kernel), new = jax.jit(
      lambda v: model.apply(v, x, train=True, mutable=['batch_stats']))(variables)
  assert features.shape == (2, 16) and features.dtype == jnp.float32
  assert kernel.shape == (16, 10) and 'batch_stats' in new
  y = jnp.arange(2 * 4 * 4 * 4, dtype=jnp.float32).reshape(2, 4, 4, 4)
  s = models.option_a_shortcut(y, 8, 2)
  assert s.shape == (2, 2, 2, 8)
  np.testing.assert_array_equal(s[..., 2:6], y[:, ::2, ::2, :])
  assert float(jnp.abs(s[..., :2]).sum() + jnp.abs(s[..., 6:]).sum()) == 0.0


def test_head_norms_make_identity_theta_plain_cross_entropy():
  rng = np.random.default_rng(0)
  features = jnp.asarray(rng.normal(size=(6, 8)), jnp.float32)
  kernel = jnp.asarray(rng.normal(size=(8, 10)), jnp.float32)
  labels = jnp.asarray(rng.integers(0, 10, 6))
  cosine, scale, logits = jax.jit(models.head_outputs, static_argnums=2)(features, kernel,
                                                                         'norms')
  np.testing.assert_allclose(logits, features @ kernel, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(scale, np.linalg.norm(features, axis=1)[:, None]
                             * np.linalg.norm(kernel, axis=0)[None], rtol=1e-6)
  assert float(jnp.max(jnp.abs(cosine))) <= 1.0
  theta = jaxloss.identity_theta(6)
  ce = jaxloss.cross_entropy(features @ kernel, labels)
  loss = jax.jit(lambda c, y, t, s: jaxloss.amlfs_loss(c, y, t, scale=s))(cosine, labels, theta,
                                                                          scale)
  np.testing.assert_allclose(loss, ce, rtol=1e-5)

  # ... and so are its gradients with respect to the features and the class weights.
  def amlfs(f, k):
    c, s_, _ = models.head_outputs(f, k, 'norms')
    return jaxloss.amlfs_loss(c, labels, theta, scale=s_)

  grads = jax.jit(jax.grad(amlfs, argnums=(0, 1)))(features, kernel)
  expected = jax.jit(jax.grad(lambda f, k: jaxloss.cross_entropy(f @ k, labels), argnums=(0, 1)))(
      features, kernel)
  for g, e in zip(grads, expected):
    np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-6)
  _, fixed, fixed_logits = models.head_outputs(features, kernel, 16.0)
  assert float(fixed) == 16.0
  np.testing.assert_allclose(fixed_logits, 16.0 * cosine, rtol=1e-6)
  with pytest.raises(ValueError, match='logit_scale'):
    models.head_outputs(features, kernel, 'norm')


# ------------------------------------------------------------------------------------------------
# Augmentation and normalisation (on device)
# ------------------------------------------------------------------------------------------------


def _candidates(image, padding=4):
  """Every crop of the zero-padded image and its mirror: (2 * (2p+1)^2, H, W, C)."""
  h, w = image.shape[:2]
  padded = np.pad(image, ((padding, padding), (padding, padding), (0, 0)))
  crops = [padded[dy:dy + h, dx:dx + w] for dy in range(2 * padding + 1)
           for dx in range(2 * padding + 1)]
  return np.stack(crops + [c[:, ::-1] for c in crops])


def test_augment_shapes_and_dtype():
  images = jnp.asarray(np.random.default_rng(0).integers(0, 256, (5, 32, 32, 3)), jnp.uint8)
  out = jax.jit(input_pipeline.augment)(jax.random.key(0), images)
  assert out.shape == (5, 32, 32, 3) and out.dtype == jnp.uint8


def test_augment_is_a_padded_crop_or_its_mirror_and_covers_all_offsets():
  # One image whose pixels are all distinct and non-zero: each output identifies its window.
  base = (np.arange(64, dtype=np.uint8) + 1).reshape(8, 8, 1)
  n = 1500
  out = np.asarray(jax.jit(input_pipeline.augment)(jax.random.key(1),
                                                   jnp.asarray(np.stack([base] * n))))
  candidates = _candidates(base).reshape(2 * 81, -1)
  matches = (out.reshape(n, 1, -1) == candidates[None]).all(-1)  # (n, 162)
  assert (matches.sum(1) == 1).all(), 'every output is exactly one crop (or mirrored crop)'
  which = matches.argmax(1)
  assert set(which % 81) == set(range(81)), 'all 9 x 9 offsets occur'
  flipped = np.mean(which >= 81)
  assert 0.45 < flipped < 0.55


def test_augment_deterministic_per_key_and_shared_across_copies():
  images = jnp.asarray(np.random.default_rng(0).integers(0, 256, (16, 32, 32, 3)), jnp.uint8)
  augment = jax.jit(input_pipeline.augment)
  key = jax.random.key(3)
  a = augment(key, images)
  np.testing.assert_array_equal(a, augment(key, images))
  assert not np.array_equal(a, augment(jax.random.key(4), images))
  # The engine vmaps train_step over the population with ONE key for every copy (common random
  # numbers): the augmented batch is then identical in every copy ...
  copies = jax.jit(jax.vmap(lambda _, k: input_pipeline.augment(k, images), in_axes=(0, None)))(
      jnp.arange(3), key)
  for c in copies:
    np.testing.assert_array_equal(c, a)
  # ... and differs between copies with per-copy keys.
  keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(3))
  per_copy = jax.jit(jax.vmap(lambda k: input_pipeline.augment(k, images)))(keys)
  assert not np.array_equal(per_copy[0], per_copy[1])


def test_normalize():
  images = jnp.asarray(np.random.default_rng(0).integers(0, 256, (2, 4, 4, 3)), jnp.uint8)
  out = input_pipeline.normalize(images, jnp.bfloat16)
  assert out.dtype == jnp.bfloat16
  expected = (np.asarray(images) / 255.0 - np.asarray(input_pipeline.MEAN)) / np.asarray(
      input_pipeline.STD)
  np.testing.assert_allclose(np.asarray(input_pipeline.normalize(images), np.float64), expected,
                             rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------------------------------------
# Split and label noise (host)
# ------------------------------------------------------------------------------------------------


def _fake_cifar(n_train=200, n_test=30, seed=0):
  rng = np.random.default_rng(seed)

  def split(n, start):
    images = rng.integers(0, 256, (n, 32, 32, 3)).astype(np.uint8)
    images[:, 0, 0, 0] = 0
    images[:, 0, 0, :2] = np.stack([(start + np.arange(n)) // 256, (start + np.arange(n)) % 256],
                                   1)  # an id in the first pixel
    return input_pipeline.Split(images, rng.integers(0, 10, n).astype(np.int32))

  train, test = split(n_train, 0), split(n_test, n_train)

  def loader(data_dir, *, num_train=None, num_test=None, name='cifar10'):
    return train.take(slice(0, num_train)), test.take(slice(0, num_test))

  return train, test, loader


def _ids(split):
  return split.images[:, 0, 0, 0].astype(int) * 256 + split.images[:, 0, 0, 1]


def test_symmetric_label_noise_ratio_other_class_and_seed():
  labels = np.random.default_rng(0).integers(0, 10, 5000).astype(np.int32)
  noisy, flipped = input_pipeline.symmetric_label_noise(labels, 0.2, 10, seed=7)
  assert flipped.sum() == 1000  # exactly round(ratio * N)
  assert (noisy[flipped] != labels[flipped]).all()  # 'to any OTHER label'
  np.testing.assert_array_equal(noisy[~flipped], labels[~flipped])
  assert np.mean(noisy != labels) == pytest.approx(0.2)
  # The new label is uniform over the 9 other classes.
  shift = (noisy[flipped] - labels[flipped]) % 10
  counts = np.bincount(shift, minlength=10)
  assert counts[0] == 0 and counts[1:].min() > 1000 / 9 * 0.6
  again, flipped_again = input_pipeline.symmetric_label_noise(labels, 0.2, 10, seed=7)
  np.testing.assert_array_equal(again, noisy)
  np.testing.assert_array_equal(flipped_again, flipped)
  other, _ = input_pipeline.symmetric_label_noise(labels, 0.2, 10, seed=8)
  assert not np.array_equal(other, noisy)
  clean, none = input_pipeline.symmetric_label_noise(labels, 0.0, 10, seed=7)
  np.testing.assert_array_equal(clean, labels)
  assert not none.any()
  with pytest.raises(ValueError, match='ratio'):
    input_pipeline.symmetric_label_noise(labels, 1.0, 10, seed=0)


def test_prepare_data_split_is_fixed_and_noise_touches_the_training_split_only():
  train, test, loader = _fake_cifar()
  config = configs.smoke(num_train=150, num_val=40, num_test=30, label_noise=0.2)
  data = input_pipeline.prepare_data(config, loader=loader)
  assert (len(data.train), len(data.val), len(data.test)) == (150, 40, 30)
  train_ids, val_ids = _ids(data.train), _ids(data.val)
  assert not set(train_ids) & set(val_ids)  # disjoint
  assert set(train_ids) | set(val_ids) <= set(range(200))
  # Validation (the reward) and test labels are the clean ones.
  np.testing.assert_array_equal(data.val.labels, train.labels[val_ids])
  np.testing.assert_array_equal(data.test.labels, test.labels)
  # Exactly 20% of the training labels changed, and only those.
  changed = data.train.labels != train.labels[train_ids]
  assert changed.sum() == 30 and (changed == data.flipped).all()
  # The split depends on split_seed only: the same images with or without noise, any mode.
  clean = input_pipeline.prepare_data(
      configs.smoke(num_train=150, num_val=40, num_test=30, mode='baseline'), loader=loader)
  np.testing.assert_array_equal(_ids(clean.train), train_ids)
  np.testing.assert_array_equal(clean.train.labels, train.labels[train_ids])
  moved = input_pipeline.prepare_data(
      configs.smoke(num_train=150, num_val=40, num_test=30, split_seed=1), loader=loader)
  assert not np.array_equal(_ids(moved.val), val_ids)
  with pytest.raises(ValueError, match='exceeds'):
    input_pipeline.split_train_val(train, 190, 20, seed=0)


def test_load_cifar10_reads_tfds_data_source():
  with tfds.testing.mock_data(num_examples=12, policy=tfds.testing.MockPolicy.USE_CODE):
    train, test = input_pipeline.load_cifar10(num_train=10)
  assert train.images.shape == (10, 32, 32, 3) and train.images.dtype == np.uint8
  assert train.labels.dtype == np.int32 and ((0 <= train.labels) & (train.labels < 10)).all()
  assert len(test) == 12


# ------------------------------------------------------------------------------------------------
# End to end: the CLI on mocked tfds data, resume, plots
# ------------------------------------------------------------------------------------------------


def _main(argv, progress=False):
  import amlfs_cifar10
  with tfds.testing.mock_data(num_examples=160, policy=tfds.testing.MockPolicy.USE_CODE):
    return amlfs_cifar10.main(argv + ['--smoke'] + ([] if progress else ['--no-progress']))


def _read_jsonl(path):
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def _strip_times(records):
  return [{k: v for k, v in r.items() if k != 'time'} for r in records]


def test_smoke_cli_end_to_end(tmp_path, capsys):
  # One test (not a module fixture shared by several): under pytest-xdist every worker would
  # build its own copy of a shared fixture, and the runs are the expensive part.
  full, split = str(tmp_path / 'full'), str(tmp_path / 'split')
  summary = _main(['--workdir', full])
  _check_outputs(full, summary)
  # A quiet console: the example's own lines only (no orbax/absl INFO messages).
  out, err = capsys.readouterr()
  lines = [line for line in (out + err).splitlines() if line.strip()]
  assert len(lines) <= 10, lines
  assert lines[0].startswith('CIFAR-10 / ResNet-20 (amlfs, B=2, label noise 0%, 2 epochs')
  # --no-progress: one plain line per epoch, after a line before the compilation.
  assert any(line.startswith('Gaussian: compiling the epoch program') for line in lines), lines
  assert [line.split('  ')[0] for line in lines if ': epoch ' in line] == [
      'Gaussian: epoch 1/2', 'Gaussian: epoch 2/2']
  assert out.strip().splitlines()[-1].startswith('amlfs-noise0: test error ')
  assert not any('INFO' in line or 'orbax' in line.lower() for line in lines), lines

  # A run stopped after one epoch and resumed gives the uninterrupted run's result.
  stopped = _main(['--workdir', split, '--stop-after', '1'])
  assert not stopped['finished'] and stopped['epochs_completed'] == 1
  assert 'final_test_error' not in stopped
  resumed = _main(['--workdir', split, '--resume'])
  assert resumed['finished'] and resumed['epochs_completed'] == 2
  for key in ('best_val_accuracy', 'final_val_accuracy', 'final_test_error', 'final_mu',
              'final_best_index'):
    assert resumed[key] == summary[key], key
  a, b = os.path.join(full, 'amlfs-noise0'), os.path.join(split, 'amlfs-noise0')
  assert _strip_times(_read_jsonl(os.path.join(b, 'records.jsonl'))) == _strip_times(
      _read_jsonl(os.path.join(a, 'records.jsonl')))
  assert _read_jsonl(os.path.join(b, 'test.jsonl')) == _read_jsonl(os.path.join(a, 'test.jsonl'))

  # Without --resume an existing run is not overwritten; --resume needs the same options.
  with pytest.raises(SystemExit):
    _main(['--workdir', full])
  with pytest.raises(SystemExit):
    _main(['--workdir', full, '--resume', '--population', '4'])

  # The cross-entropy baseline (one model, the identity theta) joins the comparison plot.
  baseline = _main(['--workdir', full, '--mode', 'baseline', '--epochs', '1'])
  assert baseline['population'] == 1 and baseline['finished']
  records = _read_jsonl(os.path.join(full, 'baseline-noise0', 'records.jsonl'))
  np.testing.assert_array_equal(records[0]['thetas'], [jaxloss.identity_theta(6)])
  assert not os.path.exists(os.path.join(full, 'baseline-noise0', 'mu.png'))
  groups = report.by_mode(report.collect_runs(full), 0.0)
  assert sorted(groups) == ['amlfs', 'baseline']
  assert len(groups['amlfs'][0].test_log) == 2 and len(groups['baseline'][0].test_log) == 1
  assert report.by_mode(report.collect_runs(full), 0.1) == {}
  # The equal-compute baselines: B independent cross-entropy models, and the grid of fixed
  # losses (theta [family, parameter], loss_families.family_loss), independent.
  best_of = _main(['--workdir', full, '--mode', 'baseline_best', '--epochs', '1'])
  assert best_of['population'] == 2 and best_of['finished']
  records = _read_jsonl(os.path.join(full, 'baseline_best-noise0', 'records.jsonl'))
  np.testing.assert_array_equal(records[0]['thetas'], [jaxloss.identity_theta(6)] * 2)
  assert records[0]['selection'] == 'none'
  grid = _main(['--workdir', full, '--mode', 'losses_indep', '--epochs', '1'])
  assert grid['population'] == 2 and grid['finished']
  records = _read_jsonl(os.path.join(full, 'losses_indep-noise0', 'records.jsonl'))
  np.testing.assert_allclose(records[0]['thetas'], loss_families.family_grid(2)[1])
  with open(os.path.join(full, 'losses_indep-noise0', 'config.json')) as f:
    assert json.load(f)['search']['class'] == 'Grid'
  table = _main(['--workdir', full, '--table'])
  assert '| 0% |' in table and 'AM-LFS' in table
  assert 'cross-entropy, best of B, 2 copies x 1 epochs' in table
  assert 'fixed-loss grid, independent, best kept, 2 copies x 1 epochs' in table
  # The smoke recipe is not the paper's: its table 2 numbers are not beside these runs.
  assert '8.75' not in table and 'not comparable with runs of another recipe' in table
  assert os.path.exists(os.path.join(full, 'table2.md'))


def _check_outputs(workdir, summary):
  run_dir = os.path.join(workdir, 'amlfs-noise0')
  for name in ('config.json', 'records.jsonl', 'test.jsonl', 'summary.json', 'mu.png', 'mu.pdf',
               'transforms.png', 'transforms.pdf'):
    assert os.path.getsize(os.path.join(run_dir, name)) > 0, name
  for ext in ('png', 'pdf'):
    assert os.path.getsize(os.path.join(workdir, f'test_error_noise0.{ext}')) > 0
  assert sorted(os.listdir(os.path.join(run_dir, 'checkpoints'))) == ['1', '2']

  records = _read_jsonl(os.path.join(run_dir, 'records.jsonl'))
  assert [r['epoch'] for r in records] == [0, 1]
  for r in records:
    assert np.asarray(r['thetas']).shape == (2, 24)
    assert len(r['rewards']) == 2 and all(0.0 <= x <= 1.0 for x in r['rewards'])
    assert r['val']['count'] == [64, 64]
    if r['rewards'][0] != r['rewards'][1]:  # REINFORCE on normalised rewards moves mu
      assert r['mu_next'] != r['mu']
  np.testing.assert_array_equal(records[0]['mu'], jaxloss.identity_theta(6))
  assert records[1]['mu'] == records[0]['mu_next']

  tests = _read_jsonl(os.path.join(run_dir, 'test.jsonl'))
  assert [t['epoch'] for t in tests] == [0, 1]
  for t, r in zip(tests, records):
    assert t['test_count'] == 64 and t['best_index'] == r['best_index']
    assert t['test_error'] == pytest.approx(100 * (1 - t['test_correct'] / 64))

  with open(os.path.join(run_dir, 'summary.json')) as f:
    assert json.load(f) == summary
  # config.json: what ran (the default strategy's parameters), not the flags it ignores.
  with open(os.path.join(run_dir, 'config.json')) as f:
    written = json.load(f)
  assert 'sigma' not in written and 'policy_learning_rate' not in written
  from jaxloss.search import strategies
  assert written['search'] == {
      'mode': 'amlfs', 'strategy': 'default', 'class': 'Gaussian', 'selection': 'best',
      'parameters': {f.name: (list(getattr(strategies.DEFAULT, f.name))
                              if isinstance(getattr(strategies.DEFAULT, f.name), tuple)
                              else getattr(strategies.DEFAULT, f.name))
                     for f in dataclasses.fields(strategies.DEFAULT)}}
  # The metrics CSV and the TensorBoard events of the run.
  import csv
  with open(os.path.join(run_dir, 'metrics.csv'), newline='') as f:
    rows = list(csv.DictReader(f))
  assert [int(r['epoch']) for r in rows] == [1, 2]
  for row, r in zip(rows, records):
    assert int(row['best_index']) == r['best_index']
    np.testing.assert_allclose([float(row[f'reward_{i}']) for i in range(2)], r['rewards'])
    np.testing.assert_allclose([float(row[f'train_loss_{i}']) for i in range(2)],
                               r['train_loss'])
    np.testing.assert_allclose([float(row[f'mu_{j}']) for j in range(24)], r['mu_next'])
  if importlib.util.find_spec('tensorboardX'):
    assert any(n.startswith('events.out.tfevents')
               for n in os.listdir(os.path.join(run_dir, 'tensorboard')))
  assert summary['finished'] and summary['epochs_completed'] == 2
  assert summary['best_val_accuracy'] == max(r['best_reward'] for r in records)
  assert summary['final_val_accuracy'] == records[-1]['best_reward']
  # The final model is the last epoch's best copy: its test error is the last per-epoch one.
  assert summary['final_test_error'] == pytest.approx(tests[-1]['test_error'])
  assert summary['final_mu'] == records[-1]['mu_next']
  assert summary['wall_time_s'] > 0 and summary['data']['num_train'] == 64
  assert summary['data']['source'].startswith('tfds cifar10')
  assert set(summary['data_sha256']) == {'train', 'val', 'test'}
  env = summary['environment']
  assert env['backend'] == 'cpu' and {'jax', 'flax', 'optax', 'numpy'} <= set(env['packages'])


def test_seeds_of_one_configuration_share_one_compiled_program(tmp_path):
  """Two seeds of one configuration compile the outer step once (the seed is a traced input;
  the strategy, which differs between modes, is part of the program)."""
  compiles = []

  def listener(event, duration, **kwargs):
    if event == '/jax/core/compile/backend_compile_duration' and 'outer_step' in kwargs.get(
        'fun_name', ''):
      compiles.append(kwargs['fun_name'])

  jax.monitoring.register_event_duration_secs_listener(listener)
  try:
    # A learning rate no other test uses: a program this process has not compiled yet.
    summaries = _main(['--workdir', str(tmp_path), '--seeds', '0', '1', '--epochs',
                       '1', '--depth', '8', '--learning-rate', '0.07'])
  finally:
    from jax._src import monitoring
    monitoring.unregister_event_duration_listener(listener)
  assert [s['mode'] for s in summaries] == ['amlfs', 'amlfs']
  assert len(compiles) == 1, compiles


def test_random_mode_samples_as_the_search_and_never_moves_mu(tmp_path):
  _main(['--workdir', str(tmp_path), '--modes', 'amlfs', 'random', '--epochs', '1',
         '--depth', '8', '--strategy', 'paper'])
  amlfs, random = (_read_jsonl(os.path.join(tmp_path, name, 'records.jsonl'))
                   for name in ('amlfs-paper-noise0', 'random-paper-noise0'))
  assert random[0]['mu_next'] == random[0]['mu']  # random search never moves mu
  assert amlfs[0]['thetas'] == random[0]['thetas']  # same seed, same samples around mu_0
  assert os.path.exists(os.path.join(tmp_path, 'random-paper-noise0', 'theta.pdf'))


def test_train_step_is_a_module_function_and_identity_theta_is_cross_entropy():
  from cifar10 import train
  config = configs.smoke(depth=8, width=4, batch_size=4)
  model, optimizer = train.make_model(config), train.make_optimizer(config)
  state = jax.jit(functools.partial(train.init, model=model, optimizer=optimizer))(
      jax.random.key(0))
  rng = np.random.default_rng(0)
  images = jnp.asarray(rng.integers(0, 256, (4, 32, 32, 3)), jnp.uint8)
  labels = jnp.asarray(rng.integers(0, 10, 4), jnp.int32)
  theta = jaxloss.identity_theta(config.num_intervals)
  step = jax.jit(functools.partial(train.train_step, model=model, optimizer=optimizer,
                                   logit_scale='norms'))
  new_state, metrics = step(state, (images, labels), theta, jax.random.key(1))
  assert int(new_state.step) == 1 and np.isfinite(float(metrics['loss']))
  # The baseline trains amlfs_loss at the identity theta: softmax cross-entropy of the logits.
  x = input_pipeline.normalize(images)
  loss, (_, logits) = train.loss_fn(state.params, state.model_state, x, labels, theta,
                                    model=model, logit_scale='norms')
  np.testing.assert_allclose(loss, jaxloss.cross_entropy(logits, labels), rtol=1e-5)
  counts = train.evaluate(new_state, (images, labels), model=model, logit_scale='norms')
  assert int(counts['count']) == 4
  # scan_unroll='auto' on a CPU, per convolution (measured, docs/cifar10.md).
  assert train.scan_unroll(configs.smoke(conv_impl='xla'), 'cpu') is True
  assert train.scan_unroll(configs.smoke(conv_impl='patches'), 'cpu') == 1
  assert train.scan_unroll(configs.smoke(conv_impl='xla'), 'gpu') == 1
  assert train.scan_unroll(configs.smoke(scan_unroll=4), 'cpu') == 4


def test_figures_label_the_configuration_and_show_negative_losses(tmp_path):
  config = configs.smoke(depth=8, width=8)
  assert plots.model_name(config) == 'ResNet-8 (width 8)'
  assert plots.model_name(configs.default()) == 'ResNet-20'
  assert plots.lr_drop_epochs(configs.default()) == pytest.approx([91.0, 136.5], abs=0.01)
  # A tau above 1 (a sampled theta) gives negative losses; the guard is the trained one.
  theta = np.asarray(jaxloss.identity_theta(3), np.float64)
  theta[9:] = 0.5  # b_tau: tau(p) = p + 0.5
  curves = plots.curves_of(theta)
  loss = plots.guarded_loss(curves['p'][1:], curves['tau'][1:])
  assert loss.min() < 0
  negative = -np.asarray(jaxloss.identity_theta(3))  # tau(p) = -p: the guard 0.01 p acts
  guarded = plots.guarded_loss(np.array([0.5]), plots.curves_of(negative)['tau'][[300]])
  np.testing.assert_allclose(guarded, -np.log(0.005), rtol=1e-6)
  written = plots.plot_transforms({'a': curves}, str(tmp_path / 'transforms'), title='t')
  assert [os.path.basename(w) for w in written] == ['transforms.pdf', 'transforms.png']
  runs = {'amlfs': [([1, 2, 3], [50.0, 40.0, 30.0]), ([1, 2, 3], [52.0, 41.0, 33.0])],
          'baseline': [([1, 2, 3], [55.0, 45.0, 35.0])]}
  written = plots.plot_test_error(runs, str(tmp_path / 'err'), lr_drops=[1.5],
                                  paper={'baseline': 8.75, 'amlfs': 6.92})
  assert all(os.path.getsize(w) > 0 for w in written)


def _fake_run(workdir, mode, noise, seed, error):
  config = configs.default(mode=mode, label_noise=noise, seed=seed)
  run_dir = os.path.join(workdir, config.run_name)
  os.makedirs(run_dir)
  with open(os.path.join(run_dir, 'config.json'), 'w') as f:
    json.dump(configs.to_dict(config), f)
  with open(os.path.join(run_dir, 'summary.json'), 'w') as f:
    json.dump({'finished': True, 'final_test_error': error, 'data': {'source': 'here'}}, f)


def test_table2_aggregates_seeds_beside_the_paper(tmp_path):
  for seed, error in enumerate((7.0, 8.0, 9.0)):
    _fake_run(tmp_path, 'amlfs', 0.2, seed, error)
  _fake_run(tmp_path, 'baseline', 0.2, 0, 15.5)
  table = report.table2(str(tmp_path))
  rows = {line.split('|')[1].strip(): [c.strip() for c in line.split('|')[2:-1]]
          for line in table.splitlines() if line.startswith('| ') and '%' in line}
  assert rows['20%'] == ['15.50 (1 run)', '8.00 ± 1.00 (3 runs)', '15.05', '12.73']
  assert rows['0%'] == ['-', '-', '8.75', '6.92']
  assert 'cross-entropy, 1 copy x 182 epochs | AM-LFS (default strategy), 32 copies x 182 ' \
      'epochs' in table
  assert 'paper: cross-entropy' in table and 'not comparable' not in table
