"""One run of the CIFAR-10 experiment on the AM-LFS search engine (``jaxloss.search``).

The user side of the engine's contract (``docs/search_api.md``), as module-level functions
bound to a model and an optimiser with ``functools.partial`` (:func:`make_program`), so that a
test can call them as the engine does:

* :func:`init` ``(key)``: ResNet parameters, BatchNorm statistics and SGD-momentum state of ONE
  copy;
* :func:`train_step` ``(state, batch, theta, key)``: pad-4 crop + flip of the uint8 batch from
  ``key`` (the engine passes the same key to every copy: common random numbers),
  normalisation, the forward pass, the loss ``jaxloss.amlfs_loss(cosine, labels, theta,
  scale=...)``, one SGD step. In ``baseline`` mode ``theta`` is the identity, for which this
  loss is softmax cross-entropy of the same logits (to float32 rounding; tested), so the three
  modes train through one function and share one compiled program;
* :func:`evaluate` ``(state, batch)``: correct / count on a clean batch (the reward on the
  validation split, and the test error).

Around the engine this module adds what the experiment needs: the data (any reader of
``input_pipeline``, fixed split, label noise), the test error of the best copy after every
epoch (``test.jsonl``; a monitored split, never seen by the search), the final summary
(``summary.json``, with package versions, the device and a fingerprint of the data) and the
plots (``plots.py``).

Files in ``<workdir>/<run_name>/`` (run_name = ``<mode>-noise<percent>[-seed<k>]``):
``config.json``, ``records.jsonl`` (the engine's per-epoch records: mu, thetas, rewards, ...),
``test.jsonl`` (per-epoch test error), ``checkpoints/`` (orbax, for ``--resume``),
``summary.json``, ``mu.{pdf,png}`` (``theta.{pdf,png}`` in random mode),
``transforms.{pdf,png}``. In ``<workdir>/``: ``test_error_noise<p>.{pdf,png}`` (every run of
that noise level in the working directory, seeds aggregated).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
import platform
import time
from importlib import metadata
from typing import Any

import flags
import jax
import jax.numpy as jnp
import loss_families
import numpy as np
import optax

import jaxloss
from cifar10 import configs, input_pipeline, models, plots, report
from jaxloss import search

SUMMARY = report.SUMMARY
TEST_LOG = report.TEST_LOG
CONFIG = report.CONFIG

log = logging.getLogger(__name__)


class ConfigMismatchError(ValueError):
  """``--resume`` with options other than those of the run it continues."""


# ------------------------------------------------------------------------------------------------
# The task: model, optimiser, loss, evaluation
# ------------------------------------------------------------------------------------------------


def make_model(config: configs.Config) -> models.CifarResNet:
  return models.CifarResNet(depth=config.depth, width=config.width,
                            num_classes=input_pipeline.NUM_CLASSES,
                            dtype=models.compute_dtype(config.dtype), param_dtype=jnp.float32,
                            conv_impl=config.conv_impl)


def make_optimizer(config: configs.Config) -> optax.GradientTransformation:
  """He et al.: L2 weight decay added to the gradient, SGD momentum 0.9, step-wise lr drops.

  The schedule counts optimisation steps inside the optimiser state, which is part of the
  training state the engine broadcasts from the best copy.
  """
  schedule = optax.piecewise_constant_schedule(
      config.learning_rate, {b: config.lr_drop_factor for b in config.lr_boundaries})
  return optax.chain(optax.add_decayed_weights(config.weight_decay),
                     optax.sgd(schedule, momentum=config.momentum))


def init(key, *, model: models.CifarResNet, optimizer: optax.GradientTransformation):
  """The training state of one copy: parameters, BatchNorm statistics, optimiser state."""
  variables = model.init(key, jnp.zeros((1,) + input_pipeline.IMAGE_SHAPE, model.dtype),
                         train=False)
  params = variables['params']
  return search.OptaxTaskState(step=jnp.zeros((), jnp.int32), params=params,
                           model_state={'batch_stats': variables['batch_stats']},
                           opt_state=optimizer.init(params))


def loss_fn(params, model_state, images, labels, theta, *, model, logit_scale,
            loss=jaxloss.amlfs_loss):
  """The loss of one batch: ``(loss, (new model_state, logits))``.

  ``loss(cosine, labels, theta, *, scale)``: ``jaxloss.amlfs_loss``, or
  ``loss_families.family_loss`` for the grid of fixed losses.
  """
  (features, kernel), new_model_state = model.apply(
      {'params': params, **model_state}, images, train=True, mutable=['batch_stats'])
  cosine, scale, logits = models.head_outputs(features, kernel, logit_scale)
  loss = loss(cosine, labels, theta, scale=scale)
  return loss, (new_model_state, logits)


def train_step(state, batch, theta, key, *, model, optimizer, logit_scale,
               loss=jaxloss.amlfs_loss):
  """One SGD step of one copy on an augmented uint8 batch, with the loss ``theta``."""
  images, labels = batch
  images = input_pipeline.normalize(input_pipeline.augment(key, images), model.dtype)
  grad_fn = jax.value_and_grad(
      functools.partial(loss_fn, model=model, logit_scale=logit_scale, loss=loss), has_aux=True)
  (loss, (model_state, logits)), grads = grad_fn(
      state.params, state.model_state, images, labels, theta)
  updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  new_state = search.OptaxTaskState(step=state.step + 1, params=params, model_state=model_state,
                                opt_state=opt_state)
  accuracy = jnp.mean((jnp.argmax(logits, -1) == labels).astype(jnp.float32))
  return new_state, {'loss': loss, 'accuracy': accuracy}


def evaluate(state, batch, *, model, logit_scale):
  """``{'correct', 'count', 'examples'}`` of one copy on a clean batch (``'examples'``: the
  per-image hits, which the guarded selection rule pairs between copies)."""
  images, labels = batch
  features, kernel = model.apply({'params': state.params, **state.model_state},
                                 input_pipeline.normalize(images, model.dtype), train=False)
  _, _, logits = models.head_outputs(features, kernel, logit_scale)
  return search.classification_metrics(logits, labels, per_example=True)


# The parts of the configuration that change the compiled program. Runs that share them share
# one Task object, so the engine reuses its compiled outer step (the engine's program key is
# the Task, the strategy, B, the batch sizes, the mesh and the unrolling): seeds of one
# configuration compile once per process.
_PROGRAM_FIELDS = ('depth', 'width', 'dtype', 'conv_impl', 'logit_scale', 'learning_rate',
                   'momentum', 'weight_decay', 'epochs', 'batch_size', 'num_train',
                   'lr_drop_fractions', 'lr_drop_factor', 'num_intervals',
                   'eval_batch_size')


@dataclasses.dataclass(frozen=True, eq=False)
class Program:
  """What one configuration compiles: the engine's Task and the model."""
  task: search.Task
  model: models.CifarResNet


_PROGRAMS: dict = {}


def make_program(config: configs.Config, loss=jaxloss.amlfs_loss) -> Program:
  """The Task and model of ``config``, training with ``loss`` (see :func:`loss_fn`)."""
  key = tuple(getattr(config, f) for f in _PROGRAM_FIELDS) + (jax.default_backend(), loss)
  if key not in _PROGRAMS:
    _PROGRAMS[key] = _build_program(config, loss)
  return _PROGRAMS[key]


def _build_program(config: configs.Config, loss) -> Program:
  model = make_model(config)
  optimizer = make_optimizer(config)
  bound = dict(model=model, logit_scale=config.logit_scale)
  task = search.Task(init=functools.partial(init, model=model, optimizer=optimizer),
                     train_step=functools.partial(train_step, optimizer=optimizer, loss=loss,
                                                  **bound),
                     evaluate=functools.partial(evaluate, **bound))
  return Program(task=task, model=model)


def uses_loss_grid(config: configs.Config) -> bool:
  """The modes whose theta is ``[family, parameter]`` of ``loss_families.family_loss``."""
  return config.mode in flags.LOSS_GRID_MODES


def program_for(config: configs.Config) -> Program:
  """The program of ``config``'s mode: the AM-LFS loss, or the grid's family loss."""
  return make_program(config, loss_families.family_loss if uses_loss_grid(config)
                      else jaxloss.amlfs_loss)


def search_config(config: configs.Config, run_dir: str) -> search.SearchConfig:
  return search.SearchConfig(
      # A grid of losses carries its own thetas (no mean to start from).
      initial_mu=None if uses_loss_grid(config) else jaxloss.identity_theta(config.num_intervals),
      population_size=config.effective_population,
      epochs=config.epochs,
      batch_size=config.batch_size,
      eval_batch_size=config.eval_batch_size,
      seed=config.seed,
      common_random_numbers=config.common_random_numbers,
      output_dir=run_dir,
      max_to_keep=config.keep_checkpoints,
      scan_unroll=scan_unroll(config),
      **flags.search_options(config.mode, config.strategy, config.sigma,
                             config.policy_learning_rate, config.population))


# scan_unroll='auto' on a CPU, from examples/cifar10/time_unroll.py (docs/cifar10.md): XLA:CPU
# runs nn.Conv's gradients several times slower inside a loop (jax-ml/jax#12868), so short
# 'xla' epochs are unrolled; PatchConv's matmuls run as fast in a loop, which compiles in a
# fraction of the time, so 'patches' loops.
CPU_UNROLL = {'xla': True, 'patches': False}
MAX_UNROLLED_STEPS = 32


def scan_unroll(config: configs.Config, backend: str | None = None):
  """The ``lax.scan`` unrolling of an epoch: see ``configs.Config.scan_unroll``."""
  if config.scan_unroll != 'auto':
    return config.scan_unroll
  backend = backend or jax.default_backend()
  if backend == 'cpu' and CPU_UNROLL[config.conv_impl] and (
      config.steps_per_epoch <= MAX_UNROLLED_STEPS):
    return True
  return 1


# ------------------------------------------------------------------------------------------------
# A run
# ------------------------------------------------------------------------------------------------


def _write_json(path: str, value: Any) -> None:
  tmp = path + '.tmp'
  with open(tmp, 'w') as f:
    json.dump(value, f, indent=2)
    f.write('\n')
  os.replace(tmp, path)


# Options that may change between a run and its resumption (where the files are, what is kept,
# how the epoch is compiled). The others are the run's `metadata` for the engine, which keeps
# them in every checkpoint and refuses a resume whose metadata differ, naming the key.
_RESUMABLE_CHANGES = ('workdir', 'data_dir', 'keep_checkpoints', 'conv_impl', 'scan_unroll')


def run_metadata(config: configs.Config) -> dict:
  """The example's options that a resumed run must share (JSON values)."""
  values = json.loads(json.dumps(configs.to_dict(config)))  # tuples -> lists
  return {k: v for k, v in values.items() if k not in _RESUMABLE_CHANGES}


def config_record(config: configs.Config) -> dict:
  """``config.json``: every option, the search as it runs (``'search'``: the resolved strategy
  object's class and every parameter, and the selection), without the flags it does not read
  (``sigma``/``policy_learning_rate`` are read by ``--strategy paper`` only)."""
  values = configs.to_dict(config)
  described = flags.describe_search(config.mode, config.strategy, config.sigma,
                                    config.policy_learning_rate, config.population)
  if described['strategy'] != 'paper':
    for name in flags.PAPER_ONLY:
      values.pop(name, None)
  values['search'] = described
  return values


METRICS_CSV = 'metrics.csv'
TENSORBOARD_DIR = 'tensorboard'


def _error_percent(totals: dict) -> float:
  return 100.0 * (1.0 - float(totals['correct']) / float(totals['count']))


def environment() -> dict:
  """Package versions and the device, for ``summary.json``."""
  versions = {}
  for package in ('jax', 'jaxlib', 'flax', 'optax', 'orbax-checkpoint', 'numpy', 'jaxloss',
                  'tensorflow-datasets', 'matplotlib'):
    try:
      versions[package] = metadata.version(package)
    except metadata.PackageNotFoundError:
      pass
  devices = jax.devices()
  return {'python': platform.python_version(), 'packages': versions,
          'backend': jax.default_backend(), 'device_count': len(devices),
          'device_kind': devices[0].device_kind, 'platform': platform.platform()}


def run(config: configs.Config, *, resume: bool = False, stop_after: int | None = None,
        data: input_pipeline.Data | None = None, progress: bool = True) -> dict:
  """Runs (or resumes) one experiment; returns the summary (also ``summary.json``).

  Args:
    config: the run's configuration.
    resume: continue from the latest checkpoint of this run's directory.
    stop_after: stop after this many epochs of this invocation (the engine's ``stop_after``;
      a checkpoint is written); continue later with ``resume=True``. The summary then has
      ``"finished": false``.
    data: the prepared data (default: :func:`input_pipeline.prepare_data`). Clean data get
      ``config.label_noise`` on their training labels; data with another noise raise
      ``ValueError`` (:func:`input_pipeline.with_label_noise`).
    progress: the engine's progress display (``SearchConfig.progress``: True, False or
      ``'lines'``).

  Besides the engine's records and checkpoints, the run directory gets ``metrics.csv`` (one
  row per epoch: ``jaxloss.search.callbacks.CSVLogger``) and, when tensorboardX is installed,
  TensorBoard event files in ``tensorboard/``. Ctrl-C raises ``search.SearchInterrupted``
  (the epochs before the one under way are checkpointed).
  """
  config.validate()
  if data is None:
    data = input_pipeline.prepare_data(config)
  data = input_pipeline.with_label_noise(data, config)
  run_dir = os.path.abspath(os.path.join(config.workdir, config.run_name))
  os.makedirs(run_dir, exist_ok=True)
  if not resume and os.path.isdir(os.path.join(run_dir, 'checkpoints')) and os.listdir(
      os.path.join(run_dir, 'checkpoints')):
    raise FileExistsError(
        f'{run_dir} already holds checkpoints of a run: pass --resume to continue it, or use '
        f'another --workdir (or delete the directory).')
  config_path = os.path.join(run_dir, CONFIG)
  if not (resume and os.path.exists(config_path)):  # on resume: once the engine accepted it
    _write_json(config_path, config_record(config))
  start = time.perf_counter()
  log.info('Data: %d train (%d noisy labels), %d validation, %d test images from %s.',
           len(data.train), int(data.flipped.sum()), len(data.val), len(data.test), data.source)

  program = program_for(config)
  engine = search.Engine(program.task, dataclasses.replace(search_config(config, run_dir),
                                                          progress=progress))
  test = engine.put_data((data.test.images, data.test.labels))

  test_log_path = os.path.join(run_dir, TEST_LOG)
  test_log = report.read_jsonl(test_log_path) if resume else []

  def after_epoch(record, state):
    nonlocal test_log
    del state
    epoch = record['epoch']
    # The engine evaluated the best copy on the test split inside the epoch's program (a
    # monitored split: it never influences the search).
    totals = record['monitor']['test']
    entry = {'epoch': epoch, 'best_index': record['best_index'],
             'val_accuracy': record['best_reward'],
             'test_error': _error_percent(totals), 'test_correct': int(totals['correct']),
             'test_count': int(totals['count'])}
    test_log = [t for t in test_log if t['epoch'] < epoch] + [entry]
    report.write_jsonl(test_log_path, test_log)

  train = (data.train.images, data.train.labels)
  val = (data.val.images, data.val.labels)
  loggers = [after_epoch, search.callbacks.CSVLogger(os.path.join(run_dir, METRICS_CSV))]
  if search.callbacks.tensorboard_available():
    loggers.append(search.callbacks.TensorBoardLogger(os.path.join(run_dir, TENSORBOARD_DIR)))
  try:
    result = search.run(program.task, engine.config, train, val, monitor={'test': test},
                        mesh=engine.mesh, resume=resume, callback=loggers,
                        stop_after=stop_after, metadata=run_metadata(config))
  except ValueError as error:
    if 'checkpoint was written by a different run' in str(error):
      raise ConfigMismatchError(f'--resume: the run in {run_dir} was started with other '
                                f'options; resume it with the same ones. {error}') from error
    raise
  finally:
    for logger in loggers[2:]:
      logger.close()
  if resume:
    _write_json(config_path, config_record(config))
  if not result.finished:
    log.info('Stopped after epoch %d; continue with --resume.', len(result.records))
    summary = _summary(config, result.records, test_log, None, None, data, start,
                       finished=False)
    _write_json(os.path.join(run_dir, SUMMARY), summary)
    plots.make_plots(config.workdir, run_dir)
    return summary

  final_test = search.evaluate_dataset(program.task, result.state, test,
                                       batch_size=config.eval_batch_size)
  summary = _summary(config, result.records, test_log, result, final_test, data, start,
                     finished=True)
  _write_json(os.path.join(run_dir, SUMMARY), summary)
  plots.make_plots(config.workdir, run_dir)
  return summary


def _summary(config, records, test_log, result, final_test, data, start, *, finished) -> dict:
  val = [r['best_reward'] for r in records if r.get('best_reward') is not None]
  summary = {
      'run': config.run_name, 'mode': config.mode, 'finished': finished,
      'epochs_completed': len(records), 'epochs': config.epochs,
      'population': config.effective_population, 'label_noise': config.label_noise,
      'seed': config.seed, 'depth': config.depth, 'width': config.width,
      'data': data.summary(), 'data_sha256': data.fingerprint(),
      'best_val_accuracy': max(val) if val else None,
      'best_val_epoch': int(np.argmax(val)) if val else None,
      'final_val_accuracy': val[-1] if val else None,
      'final_mu': records[-1]['mu_next'] if records else None,
      # This invocation, from reading the data to the end (a resumed run counts from the resume).
      'wall_time_s': time.perf_counter() - start,
      # The epochs of the whole run (all invocations): outer steps, logging and checkpoints ...
      'epochs_time_s': sum(r.get('time', {}).get('wall_s', 0.0) for r in records),
      # ... and the compilations of the outer step.
      'compile_time_s': sum(r.get('time', {}).get('compile_s', 0.0) for r in records),
      'scan_unroll': scan_unroll(config),
      'environment': environment(),
  }
  if final_test is not None:
    summary['final_test_error'] = _error_percent(final_test)
    summary['final_test_accuracy'] = float(final_test['correct']) / float(final_test['count'])
    summary['final_best_index'] = result.best_index
  return summary
