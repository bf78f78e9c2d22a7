"""jaxloss.nn wrappers: each equals its torch.nn module with non-default options."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import torch
from absl.testing import absltest, parameterized

import jaxloss
from jaxloss import nn

rng = np.random.default_rng(0)
N, C, T, S = 6, 5, 12, 3


def _r(*shape, low=-2.0, high=2.0):
  return rng.uniform(low, high, size=shape)


def _pm1(*shape):
  return np.where(rng.random(shape) < 0.5, -1.0, 1.0)


def _ctc_inputs():
  lp = np.log(rng.dirichlet(np.ones(C), size=(T, N)))
  targets = rng.integers(1, C, size=(N, S))
  return lp, targets, np.full(N, T), rng.integers(1, S + 1, size=N)


_w = rng.uniform(0.5, 2.0, C)
_labels = rng.integers(0, C, N)
_labels_ign = np.where(np.arange(N) == 2, 1, _labels)
_multilabel = np.array([[0, 3, -1, 1, 2], [4, -1, 0, 0, 0], [1, 2, 3, 4, 0],
                        [-1, 0, 0, 0, 0], [2, 2, -1, 0, 0], [3, 0, -1, 4, 4]])

# (name, jaxloss class, torch class, constructor kwargs, inputs); array kwargs are given
# to torch as tensors.
CASES = [
    ("L1Loss", nn.L1Loss, torch.nn.L1Loss, {"reduction": "sum"}, (_r(N, C), _r(N, C))),
    ("MSELoss", nn.MSELoss, torch.nn.MSELoss, {"reduction": "none"}, (_r(N, C), _r(N, C))),
    ("HuberLoss", nn.HuberLoss, torch.nn.HuberLoss, {"delta": 0.4}, (_r(N, C), _r(N, C))),
    ("SmoothL1Loss", nn.SmoothL1Loss, torch.nn.SmoothL1Loss, {"beta": 0.3},
     (_r(N, C), _r(N, C))),
    ("CrossEntropyLoss", nn.CrossEntropyLoss, torch.nn.CrossEntropyLoss,
     {"weight": _w, "ignore_index": 1, "label_smoothing": 0.2}, (_r(N, C), _labels_ign)),
    ("NLLLoss", nn.NLLLoss, torch.nn.NLLLoss, {"weight": _w, "reduction": "sum"},
     (np.log(rng.dirichlet(np.ones(C), N)), _labels)),
    ("BCELoss", nn.BCELoss, torch.nn.BCELoss, {"weight": _w},
     (_r(N, C, low=0.05, high=0.95), _r(N, C, low=0, high=1))),
    ("BCEWithLogitsLoss", nn.BCEWithLogitsLoss, torch.nn.BCEWithLogitsLoss,
     {"pos_weight": _w, "reduction": "none"}, (_r(N, C), _r(N, C, low=0, high=1))),
    ("KLDivLoss", nn.KLDivLoss, torch.nn.KLDivLoss, {"reduction": "batchmean", "log_target": True},
     (np.log(rng.dirichlet(np.ones(C), N)), np.log(rng.dirichlet(np.ones(C), N)))),
    ("PoissonNLLLoss", nn.PoissonNLLLoss, torch.nn.PoissonNLLLoss,
     {"log_input": False, "full": True}, (_r(N, C, low=0.1, high=3), _r(N, C, low=0, high=4))),
    ("GaussianNLLLoss", nn.GaussianNLLLoss, torch.nn.GaussianNLLLoss, {"full": True},
     (_r(N, C), _r(N, C), _r(N, 1, low=0.1, high=2))),
    ("SoftMarginLoss", nn.SoftMarginLoss, torch.nn.SoftMarginLoss, {"reduction": "sum"},
     (_r(N, C), _pm1(N, C))),
    ("MultiLabelSoftMarginLoss", nn.MultiLabelSoftMarginLoss, torch.nn.MultiLabelSoftMarginLoss,
     {"weight": _w}, (_r(N, C), (_r(N, C) > 0).astype(float))),
    ("MultiLabelMarginLoss", nn.MultiLabelMarginLoss, torch.nn.MultiLabelMarginLoss,
     {"reduction": "none"}, (_r(N, C), _multilabel)),
    ("MultiMarginLoss", nn.MultiMarginLoss, torch.nn.MultiMarginLoss,
     {"p": 2, "margin": 0.7, "weight": _w}, (_r(N, C), _labels)),
    ("MarginRankingLoss", nn.MarginRankingLoss, torch.nn.MarginRankingLoss, {"margin": 0.3},
     (_r(N), _r(N), _pm1(N))),
    ("HingeEmbeddingLoss", nn.HingeEmbeddingLoss, torch.nn.HingeEmbeddingLoss, {"margin": 1.5},
     (_r(N, C), _pm1(N, C))),
    ("CosineEmbeddingLoss", nn.CosineEmbeddingLoss, torch.nn.CosineEmbeddingLoss,
     {"margin": 0.2}, (_r(N, C), _r(N, C), _pm1(N))),
    ("TripletMarginLoss", nn.TripletMarginLoss, torch.nn.TripletMarginLoss,
     {"margin": 0.5, "p": 1.0, "swap": True}, (_r(N, C), _r(N, C), _r(N, C))),
    ("TripletMarginWithDistanceLoss", nn.TripletMarginWithDistanceLoss,
     torch.nn.TripletMarginWithDistanceLoss, {"margin": 0.8, "swap": True},
     (_r(N, C), _r(N, C), _r(N, C))),
    ("CTCLoss", nn.CTCLoss, torch.nn.CTCLoss, {"blank": 0, "reduction": "sum"}, _ctc_inputs()),
]


def _torch(x):
  return torch.from_numpy(np.array(x, copy=True)) if isinstance(x, np.ndarray) else x


class TorchModuleParityTest(parameterized.TestCase):

  def test_every_torch_loss_has_a_wrapper(self):
    names = {c.__name__ for c in nn.TORCH_LOSSES}
    self.assertLen(names, 22)  # torch 2.13's loss classes but AdaptiveLogSoftmaxWithLoss
    self.assertEqual(names, {case[0] for case in CASES} | {"LinearCrossEntropyLoss"})
    torch_names = {n for n in dir(torch.nn) if n.endswith("Loss") and n not in (
        "AdaptiveLogSoftmaxWithLoss",)}
    self.assertEqual(names, torch_names)

  @parameterized.named_parameters(("plain", {}, False),
                                  ("bias_weighted_smoothed", {"label_smoothing": 0.1}, True),
                                  ("ignore_class_sum", {"ignore_index": 1, "reduction": "sum"},
                                   True))
  def test_linear_cross_entropy_loss_matches_torch_module(self, options, bias):
    torch.manual_seed(0)
    weight = _w if options.get("label_smoothing") else None
    theirs = torch.nn.LinearCrossEntropyLoss(C, C, bias=bias, weight=_torch(weight),
                                             dtype=torch.float64, **options)
    ours = nn.LinearCrossEntropyLoss(weight=weight, chunk_size=3, **options)
    x, y = _r(N, C), _labels_ign
    lw, lb = theirs.linear.weight.detach().numpy(), theirs.linear.bias
    lb = None if lb is None else lb.detach().numpy()
    expected = theirs(_torch(x), _torch(y)).detach().numpy()
    got = jax.jit(lambda *a: ours(a[0], a[1], a[2], linear_bias=a[3]))(x, lw, y, lb)
    chex.assert_trees_all_close(got, expected, rtol=1e-10, atol=1e-12)
    self.assertIsNone(ours.options)

  def test_adaptive_log_softmax_is_the_flax_module(self):
    from jaxloss import adaptive  # noqa: PLC0415
    self.assertIs(nn.AdaptiveLogSoftmaxWithLoss, adaptive.AdaptiveLogSoftmaxWithLoss)

  @parameterized.named_parameters(*[(c[0],) + c[1:] for c in CASES])
  def test_matches_torch_module(self, ours_cls, torch_cls, options, inputs):
    ours = ours_cls(**options)
    theirs = torch_cls(**{k: _torch(v) for k, v in options.items()})
    expected = theirs(*[_torch(x) for x in inputs]).numpy()
    got = jax.jit(lambda *a: ours(*a))(*[jnp.asarray(x) for x in inputs])
    chex.assert_trees_all_close(got, expected, rtol=1e-10, atol=1e-12)
    for name, value in options.items():
      self.assertIs(getattr(ours, name), value)


class WrapperBehaviourTest(absltest.TestCase):

  def test_where_is_passed_through(self):
    x, y = jnp.asarray(_r(N, C)), jnp.asarray(_labels)
    keep = jnp.arange(N) % 2 == 0
    loss = nn.CrossEntropyLoss(label_smoothing=0.1)
    chex.assert_trees_all_close(loss(x, y, where=keep),
                                jaxloss.cross_entropy(x, y, label_smoothing=0.1, where=keep))

  def test_immutable_and_repr(self):
    loss = nn.HuberLoss(delta=0.5)
    with self.assertRaises(AttributeError):
      loss.delta = 2.0
    self.assertEqual(repr(loss), "HuberLoss(reduction='mean', delta=0.5)")
    self.assertIn("<array (5,)>", repr(nn.CrossEntropyLoss(weight=jnp.ones(5))))

  def test_legacy_arguments_raise(self):
    with self.assertRaisesRegex(ValueError, "size_average"):
      nn.CrossEntropyLoss(size_average=False)
    with self.assertRaisesRegex(ValueError, "size_average"):
      nn.L1Loss(True)

  def test_beyond_torch_wrappers_equal_the_functions(self):
    cos = jnp.asarray(np.clip(_r(N, C, low=-1, high=1), -1, 1))
    y = jnp.asarray(_labels)
    theta = jaxloss.cosface_theta(0.3)
    cases = [
        (nn.CosFaceLoss(scale=30.0, m=0.2), jaxloss.cosface(cos, y, 30.0, 0.2), (cos, y)),
        (nn.ArcFaceLoss(easy_margin=True), jaxloss.arcface(cos, y, easy_margin=True), (cos, y)),
        (nn.SphereFaceLoss(scale=8.0, lambda_=5.0), jaxloss.sphereface(cos, y, 8.0, lambda_=5.0),
         (cos, y)),
        (nn.CombinedMarginLoss(scale=16.0), jaxloss.combined_margin(cos, y, 16.0), (cos, y)),
        (nn.SoftmaxFocalLoss(gamma=1.5), jaxloss.softmax_focal_loss(cos, y, 1.5), (cos, y)),
        (nn.AMLFSLoss(scale=10.0), jaxloss.amlfs_loss(cos, y, theta, scale=10.0),
         (cos, y, theta)),
    ]
    feats, wmat = jnp.asarray(_r(N, 4)), jnp.asarray(_r(C, 4))
    cases.append((nn.LargeMarginSoftmaxLoss(m=3), jaxloss.large_margin_softmax(feats, wmat, y, 3),
                   (feats, wmat, y)))
    b = jnp.asarray((_r(N, C) > 0).astype(float))
    cases.append((nn.SigmoidFocalLoss(reduction="sum"),
                  jaxloss.sigmoid_focal_loss(cos, b, reduction="sum"), (cos, b)))
    for wrapper, expected, inputs in cases:
      chex.assert_trees_all_close(wrapper(*inputs), expected, rtol=1e-12)

  def test_box_and_metric_learning_wrappers_equal_the_functions(self):
    rng = np.random.default_rng(7)
    xy, wh = rng.uniform(0, 3, (N, 2)), rng.uniform(0.5, 2, (N, 2))
    b1 = jnp.asarray(np.concatenate([xy, xy + wh], -1))
    b2 = b1 + 0.3
    e, k = jnp.asarray(_r(8, 4)), jnp.asarray(_r(8, 4))
    y = jnp.array([0, 1, 0, 1, 2, 2, 0, 1])
    keep = jnp.array([True] * 6 + [False] * 2)
    cases = [
        (nn.GeneralizedBoxIoULoss(reduction="mean"),
         jaxloss.generalized_box_iou_loss(b1, b2, "mean"), (b1, b2)),
        (nn.DistanceBoxIoULoss(eps=0.1), jaxloss.distance_box_iou_loss(b1, b2, eps=0.1),
         (b1, b2)),
        (nn.CompleteBoxIoULoss(), jaxloss.complete_box_iou_loss(b1, b2), (b1, b2)),
        (nn.NTXentLoss(temperature=0.3), jaxloss.ntxent(e, y, 0.3), (e, y)),
        (nn.InfoNCELoss(symmetric=True), jaxloss.info_nce(e, k, symmetric=True), (e, k)),
        (nn.SupConLoss(), jaxloss.supervised_contrastive_loss(e, y), (e, y)),
        (nn.BatchHardTripletLoss(margin=0.2), jaxloss.batch_hard_triplet_loss(e, y, 0.2),
         (e, y)),
        (nn.BatchAllTripletLoss(normalize=False),
         jaxloss.batch_all_triplet_loss(e, y, normalize=False), (e, y)),
        (nn.MultiSimilarityLoss(beta=10.0), jaxloss.multi_similarity_loss(e, y, beta=10.0),
         (e, y)),
    ]
    for wrapper, expected, inputs in cases:
      chex.assert_trees_all_close(wrapper(*inputs), expected, rtol=1e-12)
    chex.assert_trees_all_close(nn.SupConLoss(chunk_size=3)(e, y, where=keep),
                                jaxloss.supervised_contrastive_loss(e[:6], y[:6]), rtol=1e-12)


if __name__ == "__main__":
  absltest.main()
