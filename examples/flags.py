"""Command-line flags derived from a configuration dataclass, shared by the examples.

Every field of the dataclass becomes a flag: ``num_intervals`` -> ``--num-intervals`` (also
spelt ``--num_intervals``), typed from the field's annotation, with the field's
``metadata['help']`` and its default in the help text. Both examples
(``amlfs_cifar10.py``, ``amlfs_mnist1d.py``) use this one vocabulary: the same name means the
same thing in both (``--population``, ``--num-intervals``, ``--sigma``,
``--policy-learning-rate``, ``--learning-rate``, ``--batch-size``, ``--epochs``,
``--label-noise``, ``--logit-scale``, ``--workdir``, ...), plus the run flags of
:func:`add_run_flags` (``--resume``, ``--no-progress``, ``--verbose``).

Types: ``bool`` -> ``--x`` / ``--no-x``; ``int``/``float``/``str``; ``Optional[T]`` also takes
``none``; ``str | float`` (e.g. ``logit_scale``) a float or the string;
``str | int | bool`` (``scan_unroll``) ``true``/``false``, an int or the string;
``tuple`` one or more floats. ``mode`` and ``seed`` take one or more values (``--mode amlfs
baseline``, ``--seeds 0 1 2``): the example runs every combination.

Flags that are not given are absent from :func:`overrides`, so a preset (the paper's default,
``--smoke``) supplies them.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import logging
import operator
import os
import sys
import types
import typing
from collections.abc import Iterable
from typing import Any

# Fields that take several values (the example runs each), and their plural spelling.
MULTIPLE = {'mode': '--modes', 'seed': '--seeds'}


def _optional(tp) -> tuple[Any, bool]:
  args = typing.get_args(tp)
  # `X | None` (types.UnionType) and `Optional[X]` (typing.Union) are different objects
  # before Python 3.14.
  if typing.get_origin(tp) in (typing.Union, types.UnionType) and type(None) in args:
    rest = tuple(a for a in args if a is not type(None))
    return (rest[0] if len(rest) == 1 else functools.reduce(operator.or_, rest)), True
  return tp, False


def _bool(text: str) -> bool:
  lowered = text.lower()
  if lowered in ('true', 'yes', '1'):
    return True
  if lowered in ('false', 'no', '0'):
    return False
  raise argparse.ArgumentTypeError(f'expected true or false, got {text!r}')


def _parser_for(tp):
  """A function str -> value for the annotation ``tp`` (bool handled by the caller)."""
  tp, optional = _optional(tp)
  union = typing.get_origin(tp) in (typing.Union, types.UnionType)
  members = set(typing.get_args(tp)) if union else {tp}

  def parse(text: str):
    if optional and text.lower() == 'none':
      return None
    if bool in members and text.lower() in ('true', 'false'):
      return _bool(text)
    for kind in (int, float):
      if kind in members:
        try:
          return kind(text)
        except ValueError:
          pass
    if str in members:
      return text
    kinds = [k.__name__ for k in (bool, int, float, str) if k in members]
    raise argparse.ArgumentTypeError(
        f"expected {' or '.join('an int' if k == 'int' else f'a {k}' for k in kinds)}"
        f"{' or none' if optional else ''}, got {text!r}")

  parse.__name__ = getattr(tp, '__name__', str(tp))  # argparse's error messages
  return parse


def add_config_flags(parser: argparse.ArgumentParser, config_cls, *,
                     skip: Iterable[str] = (), title: str | None = None) -> None:
  """One flag per field of ``config_cls`` (see the module docstring)."""
  hints = typing.get_type_hints(config_cls)
  defaults = config_cls()
  group = parser.add_argument_group(
      title or f'configuration (every field of {config_cls.__module__}.{config_cls.__name__})')
  for field in dataclasses.fields(config_cls):
    if field.name in skip:
      continue
    tp = hints[field.name]
    names = [f'--{field.name.replace("_", "-")}']
    if '_' in field.name and tp is not bool:
      names.append(f'--{field.name}')
    if field.name in MULTIPLE:
      names.append(MULTIPLE[field.name])
    default = getattr(defaults, field.name)
    help_text = field.metadata.get('help', '')
    shown = field.metadata.get('shown_default', repr(default))
    kwargs = dict(dest=field.name, default=argparse.SUPPRESS,
                  help=f'{help_text} (default: {shown})'.replace('%', '%%'))
    if tp is bool:
      kwargs['action'] = argparse.BooleanOptionalAction
    elif typing.get_origin(tp) is tuple or tp is tuple:
      kwargs.update(nargs='+', type=float, metavar='X')
    else:
      kwargs['type'] = _parser_for(tp)
      if 'choices' in field.metadata:
        kwargs['choices'] = field.metadata['choices']
      kwargs['metavar'] = (field.name.upper() if 'choices' not in field.metadata
                           else '{' + ','.join(field.metadata['choices']) + '}')
      if field.name in MULTIPLE:
        kwargs['nargs'] = '+'
    group.add_argument(*names, **kwargs)


def add_run_flags(parser: argparse.ArgumentParser) -> None:
  """Flags about running rather than about the experiment."""
  group = parser.add_argument_group('running')
  group.add_argument('--resume', action='store_true',
                     help='continue the runs from their latest checkpoints.')
  group.add_argument('--no-progress', dest='no_progress', action='store_true',
                     help='no progress bar: one plain line per epoch instead (epoch, best '
                          'validation accuracy, ETA), as when stderr is not a terminal (a '
                          'cluster job\'s log).')
  group.add_argument('--verbose', action='store_true',
                     help="library log messages (orbax, absl, jax) at INFO; default: WARNING.")


def overrides(args: argparse.Namespace, config_cls) -> dict:
  """The fields given on the command line, ``{name: value}`` (lists for ``mode``/``seed``)."""
  values = {}
  for field in dataclasses.fields(config_cls):
    if hasattr(args, field.name):
      value = getattr(args, field.name)
      if isinstance(value, list) and field.name not in MULTIPLE:
        value = tuple(value)
      values[field.name] = value
  return values


def expand(values: dict) -> list[dict]:
  """``{'mode': [a, b], 'seed': [0, 1], ...}`` -> one dict per (seed, mode), seeds outermost."""
  modes = values.get('mode')
  seeds = values.get('seed')
  modes = modes if isinstance(modes, list) else [modes]
  seeds = seeds if isinstance(seeds, list) else [seeds]
  out = []
  for seed in seeds:
    for mode in modes:
      one = {k: v for k, v in values.items() if k not in MULTIPLE}
      if mode is not None:
        one['mode'] = mode
      if seed is not None:
        one['seed'] = seed
      out.append(one)
  return out


# fontTools: matplotlib's PDF font subsetting warns about font timestamps.
LIBRARY_LOGGERS = ('absl', 'orbax', 'jax', 'tensorflow_datasets', 'etils', 'matplotlib')
QUIET_LOGGERS = ('fontTools',)


def setup_logging(own: Iterable[str], verbose: bool = False) -> None:
  """A quiet console: the example's own loggers at INFO on stdout (bare messages), the
  libraries' (orbax and tfds log through absl) at WARNING unless ``verbose``."""
  handler = logging.StreamHandler(sys.stdout)
  handler.setFormatter(logging.Formatter('%(message)s'))
  for name in own:
    logger = logging.getLogger(name)
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False
  level = logging.INFO if verbose else logging.WARNING
  for name in LIBRARY_LOGGERS:
    logging.getLogger(name).setLevel(level)
  for name in QUIET_LOGGERS:
    logging.getLogger(name).setLevel(logging.ERROR)
  if verbose:
    logging.basicConfig(level=logging.INFO, format='%(name)s: %(message)s')


#: The examples' modes that train fixed losses: cross-entropy copies, and the grid of
#: ``loss_families`` (theta ``[family, parameter]``); no strategy flag applies to them.
CROSS_ENTROPY_MODES = ('baseline', 'baseline_best')
LOSS_GRID_MODES = ('losses', 'losses_indep')


def search_options(mode: str, strategy: str, sigma: float, policy_learning_rate: float,
                   population: int = 2) -> dict:
  """The ``SearchConfig`` options (``strategy``, ``selection``) of the examples' modes.

  ``amlfs``: the search (``--strategy default``: ``strategies.DEFAULT``; ``paper``: the
  paper's Gaussian with ``--sigma`` and Adam ``--policy-learning-rate`` on mu); ``random``: the
  same samples around mu_0, which never moves; ``baseline`` and ``baseline_best``:
  cross-entropy (``strategies.FIXED``), the copies independent (no selection); ``losses``:
  the grid of fixed losses of ``loss_families`` (``strategies.Grid``; theta ``[family,
  parameter]``, trained by ``loss_families.family_loss``), the best copy broadcast;
  ``losses_indep``: the same grid, the copies independent.
  """
  from jaxloss.search import strategies  # pylint: disable=import-outside-toplevel
  if mode in CROSS_ENTROPY_MODES:
    return dict(strategy='fixed', selection='none')
  if mode in LOSS_GRID_MODES:
    import loss_families  # pylint: disable=import-outside-toplevel
    grid = strategies.Grid(loss_families.family_grid(population)[1])
    return dict(strategy=grid, selection='best' if mode == 'losses' else 'none')
  if strategy == 'paper':
    chosen = strategies.Gaussian(sigma=sigma, learning_rate=policy_learning_rate)
  else:
    chosen = strategies.DEFAULT
  if mode == 'random':
    chosen = dataclasses.replace(chosen, update_mean=False)
  return dict(strategy=chosen, selection='best')


def describe_search(mode: str, strategy: str, sigma: float, policy_learning_rate: float,
                    population: int = 2) -> dict:
  """What :func:`search_options` resolves to, as JSON for ``config.json``/``summary.json``:
  ``{'mode', 'strategy' (the flag), 'class', 'parameters' (every field of the strategy
  object), 'selection'}``: exactly what runs, not the flags it ignores."""
  options = search_options(mode, strategy, sigma, policy_learning_rate, population)
  chosen = options['strategy']
  if isinstance(chosen, str):
    from jaxloss.search import strategies  # pylint: disable=import-outside-toplevel
    chosen = strategies.resolve(chosen)
  parameters = {}
  if dataclasses.is_dataclass(chosen):
    for field in dataclasses.fields(chosen):
      value = getattr(chosen, field.name)
      parameters[field.name] = (list(value) if isinstance(value, tuple) else value
                                if isinstance(value, (bool, int, float, str, type(None)))
                                else repr(value))
  named = ('fixed' if mode in CROSS_ENTROPY_MODES else 'grid' if mode in LOSS_GRID_MODES
           else strategy)
  return {'mode': mode, 'strategy': named,
          'class': type(chosen).__name__, 'parameters': parameters,
          'selection': options['selection']}


# The flags only the paper's strategy reads (the default strategy has its own settings).
PAPER_ONLY = ('sigma', 'policy_learning_rate')


def check_strategy_flags(values: dict, prog: str | None = None) -> None:
  """Refuses, as argparse does (one line, status 2), flags the chosen strategy does not read."""
  strategy = values.get('strategy', 'default')
  unread = [f'--{name.replace("_", "-")}' for name in PAPER_ONLY if name in values]
  if strategy != 'paper' and unread:
    error(f"{' and '.join(unread)} {'is' if len(unread) == 1 else 'are'} read only by "
          f"--strategy paper (strategy {strategy!r} sets its own sigma and step size); add "
          f"--strategy paper or drop {'it' if len(unread) == 1 else 'them'}.", prog=prog)


def check_numbers(config, *, positive_ints: Iterable[str] = (), positive: Iterable[str] = (),
                  at_least_zero: Iterable[str] = ()) -> None:
  """``ValueError`` naming the flag, for a field of ``config`` out of range: ``positive_ints``
  at least 1, ``positive`` finite and > 0, ``at_least_zero`` finite and >= 0 (``None``, where
  a field allows it, passes)."""
  import math  # pylint: disable=import-outside-toplevel

  def flag(name):
    return f'--{name.replace("_", "-")}'

  for name in positive_ints:
    value = getattr(config, name)
    if value is not None and value < 1:
      raise ValueError(f'{flag(name)} must be at least 1, got {value}.')
  for name in positive:
    value = getattr(config, name)
    if value is not None and not (math.isfinite(value) and value > 0):
      raise ValueError(f'{flag(name)} must be a positive number, got {value}.')
  for name in at_least_zero:
    value = getattr(config, name)
    if value is not None and not (math.isfinite(value) and value >= 0):
      raise ValueError(f'{flag(name)} must be a number >= 0, got {value}.')


def interrupted(stop, prefix: str = '') -> typing.NoReturn:
  """Ctrl-C during a run (``jaxloss.search.SearchInterrupted``): one line, exit status 130
  (128 + SIGINT, as a shell reports an interrupted command)."""
  if stop.checkpointed:
    hint = 'continue with --resume'
  else:
    hint = 'no epoch was kept' if not stop.epochs_completed else 'nothing was kept (no --workdir)'
  print(f'\n{prefix}stopped after epoch {stop.epochs_completed} of {stop.epochs}; {hint}',
        file=sys.stderr, flush=True)
  raise SystemExit(130)


class Parser(argparse.ArgumentParser):
  """An ``ArgumentParser`` whose errors are one line, ``prog: error: message`` (exit status
  2), like every other refusal of the examples: argparse's usage block (twenty lines for
  these examples) would bury the message; ``--help`` lists the flags."""

  def error(self, message: str) -> typing.NoReturn:
    error(f'{message} (--help lists the flags)', prog=self.prog)


def error(message: str, prog: str | None = None) -> typing.NoReturn:
  """``prog: error: message`` on stderr and exit status 2, as argparse reports a bad flag."""
  prog = prog or os.path.basename(sys.argv[0]) or 'python'
  print(f'{prog}: error: {message}', file=sys.stderr)
  raise SystemExit(2)
