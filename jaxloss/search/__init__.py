"""AM-LFS loss-function search (Li et al., ICCV 2019) as one jitted population program.

A population of ``B`` copies of a model trains under ``jax.vmap`` (sharded over devices),
each with its own loss parameters ``theta`` asked of a strategy (``theta ~ N(mu, sigma^2)``
for AM-LFS); after every epoch the copies are scored on a validation split, the strategy is
told the rewards (REINFORCE moves ``mu`` as an optax step) and the best copy's whole
training state is broadcast to all copies. See ``docs/search_api.md``.

Quick start::

  from jaxloss import search
  task = search.Task(init=init, train_step=train_step, evaluate=evaluate)
  config = search.SearchConfig(initial_mu=jaxloss.identity_theta(6), population_size=8,
                               epochs=20, batch_size=128, output_dir='runs/amlfs')
  result = search.run(task, config, train=(x, y), val=(x_val, y_val))
  print(search.evaluate_dataset(task, result.state, (x_test, y_test)))
"""

try:  # the search's own dependencies are an extra: say which one, not just what is missing
  import optax as _optax  # noqa: F401
  import orbax.checkpoint as _orbax_checkpoint  # noqa: F401
except ImportError as error:
  raise ImportError(
      f"jaxloss.search needs optax and orbax-checkpoint ({error.name} is not installed): "
      "pip install 'jaxloss[search]'") from error

from jaxloss.search import callbacks, selection, strategies
from jaxloss.search.checkpoint import CheckpointDamagedError, CheckpointStore
from jaxloss.search.config import SELECTIONS, SearchConfig, StepSpec
from jaxloss.search.engine import Engine
from jaxloss.search.loop import (
  PopulationDivergedError,
  SearchInterrupted,
  SearchResult,
  read_records,
  run,
)
from jaxloss.search.outer_step import SearchState, tree_all_finite
from jaxloss.search.sharding import POPULATION_AXIS, population_mesh
from jaxloss.search.task import (
  OptaxTaskState,
  Task,
  accuracy,
  classification_metrics,
  evaluate_dataset,
  optax_task,
)

__all__ = [
    "POPULATION_AXIS",
    "SELECTIONS",
    "CheckpointDamagedError",
    "CheckpointStore",
    "Engine",
    "OptaxTaskState",
    "PopulationDivergedError",
    "SearchConfig",
    "SearchInterrupted",
    "SearchResult",
    "SearchState",
    "StepSpec",
    "Task",
    "accuracy",
    "callbacks",
    "classification_metrics",
    "evaluate_dataset",
    "optax_task",
    "population_mesh",
    "read_records",
    "run",
    "selection",
    "strategies",
    "tree_all_finite",
]
