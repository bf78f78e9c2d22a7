"""Parity of jaxloss.classification against torch.nn.functional, plus behaviour and errors."""

import itertools

import torch

import chex
import jax
import jax.numpy as jnp
import numpy as np
import torch.nn.functional as F
from absl.testing import absltest, parameterized
from jax.experimental import checkify

import jaxloss
from tests.parity import DTYPES, ParityTestCase, rand

# Input shapes: unbatched (C,), (N, C), (N, C, d1), (N, C, d1, d2).
SHAPES = (("unbatched", (5,)), ("2d", (4, 5)), ("3d", (3, 4, 2)), ("4d", (2, 3, 2, 2)))
REDUCTIONS = ("none", "mean", "sum")

# Options for class-index targets. `ignore`: 'some' (targets at -100), 'all',
# or 'class' (ignore_index=1, a valid class index, present among the targets).
INDEX_OPTIONS = (
    ("plain", {}),
    ("weighted", {"weight": True}),
    ("ignored", {"ignore": "some"}),
    ("weighted_ignored", {"weight": True, "ignore": "some"}),
    ("all_ignored", {"ignore": "all"}),
    ("weighted_all_ignored", {"weight": True, "ignore": "all"}),
    ("weighted_ignore_class", {"weight": True, "ignore": "class"}),
    ("ls0.1", {"ls": 0.1}),
    ("ls0.3_weighted_ignored", {"ls": 0.3, "weight": True, "ignore": "some"}),
    ("ls0.1_weighted_all_ignored", {"ls": 0.1, "weight": True, "ignore": "all"}),
    ("ls0.3_ignore_class", {"ls": 0.3, "ignore": "class"}),
)
# Options for class-probability targets (differentiated too).
PROB_OPTIONS = (
    ("probs", {"probs": "dirichlet"}),
    ("probs_weighted", {"probs": "dirichlet", "weight": True}),
    ("probs_ls0.1", {"probs": "dirichlet", "ls": 0.1}),
    ("probs_ls0.3_weighted_unnormalised", {"probs": "uniform", "ls": 0.3, "weight": True}),
)
NLL_OPTIONS = (
    ("plain", {}),
    ("weighted_ignored", {"weight": True, "ignore": "some"}),
    ("weighted_all_ignored", {"weight": True, "ignore": "all"}),
    ("ignore_class", {"ignore": "class"}),
)


def _cases(options, dtypes=DTYPES):
  for (sname, shape), reduction, dtype, (oname, opt) in itertools.product(
      SHAPES, REDUCTIONS, dtypes, options):
    yield dict(testcase_name=f"{sname}_{reduction}_{dtype.__name__}_{oname}", shape=shape,
               reduction=reduction, dtype=dtype, opt=opt)


def _num_classes(shape):
  return shape[0] if len(shape) == 1 else shape[1]


def _sample_shape(shape):
  return () if len(shape) == 1 else (shape[0],) + tuple(shape[2:])


def _index_target(rng, shape, ignore=None):
  """Random class indices; returns (target, ignore_index)."""
  target = rng.integers(0, _num_classes(shape), size=_sample_shape(shape))
  target = np.array(target, dtype=np.int64)
  if ignore == "all":
    target[...] = -100
  elif ignore == "some" and target.size > 1:
    target.flat[0] = -100
  elif ignore == "class":
    target.flat[0] = 1
    if target.size > 1:
      target.flat[-1] = 0
    return target, 1
  return target, -100


def _prob_target(rng, shape, kind, dtype):
  cax = 0 if len(shape) == 1 else 1
  if kind == "uniform":  # soft targets need not sum to one in torch
    return rand(rng, shape, dtype, 0.0, 1.0)
  p = rng.dirichlet(np.ones(shape[cax]), size=_sample_shape(shape))
  return np.moveaxis(p, -1, cax).astype(dtype)


class ClassificationParityTest(ParityTestCase):

  def _check(self, jfn, tfn, shape, reduction, dtype, opt, extra=None):
    rng = np.random.default_rng(sum(shape) + 7 * len(shape))
    x = rand(rng, shape, dtype, -3.0, 3.0)
    kw = dict(reduction=reduction, **(extra or {}))
    if "ls" in opt:
      kw["label_smoothing"] = opt["ls"]
    if "probs" in opt:
      target = _prob_target(rng, shape, opt["probs"], dtype)
      grad_argnums = (0, 1)
    else:
      target, kw["ignore_index"] = _index_target(rng, shape, opt.get("ignore"))
      grad_argnums = (0,)  # torch refuses to differentiate `weight` here
    args = [x, target]
    if opt.get("weight"):
      args.append(rand(rng, (_num_classes(shape),), dtype, 0.2, 2.0))
      if "probs" in opt:
        grad_argnums = (0, 1, 2)
    self.assert_parity(jfn, tfn, args, kw, grad_argnums=grad_argnums)

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.named_parameters(*_cases(INDEX_OPTIONS))
  def test_cross_entropy_class_indices(self, shape, reduction, dtype, opt):
    self._check(jaxloss.cross_entropy, F.cross_entropy, shape, reduction, dtype, opt)

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.named_parameters(*_cases(PROB_OPTIONS))
  def test_cross_entropy_class_probabilities(self, shape, reduction, dtype, opt):
    self._check(jaxloss.cross_entropy, F.cross_entropy, shape, reduction, dtype, opt)

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.named_parameters(*_cases(NLL_OPTIONS))
  def test_nll_loss(self, shape, reduction, dtype, opt):
    self._check(jaxloss.nll_loss, F.nll_loss, shape, reduction, dtype, opt)


if __name__ == "__main__":
  absltest.main()
