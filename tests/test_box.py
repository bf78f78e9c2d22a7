"""jaxloss.box against torchvision's box losses (copied below: torchvision is not installed)."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import torch
from absl.testing import absltest, parameterized
from jax.experimental import checkify

import jaxloss
from tests.parity import DTYPES, REDUCTIONS, ParityTestCase

# ---------------------------------------------------------------------------------------------
# The reference: torchvision's code, copied verbatim (plain torch) from the repository
# pytorch/vision, paths torchvision/ops/_utils.py (_upcast_non_float, _loss_inter_union),
# torchvision/ops/giou_loss.py, torchvision/ops/diou_loss.py and torchvision/ops/ciou_loss.py,
# as of torchvision 0.20 (main); only the docstrings and the `_log_api_usage_once` calls
# (telemetry) are left out, the indentation is this repository's 2 spaces and the public
# functions carry a `tv_` prefix (and `Tuple` is spelled `tuple`).
# ---------------------------------------------------------------------------------------------


def _upcast_non_float(t: torch.Tensor) -> torch.Tensor:
  # Protects from numerical overflows in multiplications by upcasting to the equivalent higher type
  if t.dtype not in (torch.float32, torch.float64):
    return t.float()
  return t


def _loss_inter_union(
    boxes1: torch.Tensor,
    boxes2: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:

  x1, y1, x2, y2 = boxes1.unbind(dim=-1)
  x1g, y1g, x2g, y2g = boxes2.unbind(dim=-1)

  # Intersection keypoints
  xkis1 = torch.max(x1, x1g)
  ykis1 = torch.max(y1, y1g)
  xkis2 = torch.min(x2, x2g)
  ykis2 = torch.min(y2, y2g)

  intsctk = torch.zeros_like(x1)
  mask = (ykis2 > ykis1) & (xkis2 > xkis1)
  intsctk[mask] = (xkis2[mask] - xkis1[mask]) * (ykis2[mask] - ykis1[mask])
  unionk = (x2 - x1) * (y2 - y1) + (x2g - x1g) * (y2g - y1g) - intsctk

  return intsctk, unionk


def tv_generalized_box_iou_loss(
    boxes1: torch.Tensor,
    boxes2: torch.Tensor,
    reduction: str = "none",
    eps: float = 1e-7,
) -> torch.Tensor:
  boxes1 = _upcast_non_float(boxes1)
  boxes2 = _upcast_non_float(boxes2)
  intsctk, unionk = _loss_inter_union(boxes1, boxes2)
  iouk = intsctk / (unionk + eps)

  x1, y1, x2, y2 = boxes1.unbind(dim=-1)
  x1g, y1g, x2g, y2g = boxes2.unbind(dim=-1)

  # smallest enclosing box
  xc1 = torch.min(x1, x1g)
  yc1 = torch.min(y1, y1g)
  xc2 = torch.max(x2, x2g)
  yc2 = torch.max(y2, y2g)

  area_c = (xc2 - xc1) * (yc2 - yc1)
  miouk = iouk - ((area_c - unionk) / (area_c + eps))

  loss = 1 - miouk

  # Check reduction option and return loss accordingly
  if reduction == "none":
    pass
  elif reduction == "mean":
    loss = loss.mean() if loss.numel() > 0 else 0.0 * loss.sum()
  elif reduction == "sum":
    loss = loss.sum()
  else:
    raise ValueError(
        f"Invalid Value for arg 'reduction': '{reduction} \n Supported reduction modes: 'none', 'mean', 'sum'"  # noqa: E501
    )
  return loss


def tv_distance_box_iou_loss(
    boxes1: torch.Tensor,
    boxes2: torch.Tensor,
    reduction: str = "none",
    eps: float = 1e-7,
) -> torch.Tensor:
  boxes1 = _upcast_non_float(boxes1)
  boxes2 = _upcast_non_float(boxes2)

  loss, _ = _diou_iou_loss(boxes1, boxes2, eps)

  # Check reduction option and return loss accordingly
  if reduction == "none":
    pass
  elif reduction == "mean":
    loss = loss.mean() if loss.numel() > 0 else 0.0 * loss.sum()
  elif reduction == "sum":
    loss = loss.sum()
  else:
    raise ValueError(
        f"Invalid Value for arg 'reduction': '{reduction} \n Supported reduction modes: 'none', 'mean', 'sum'"  # noqa: E501
    )
  return loss


def _diou_iou_loss(
    boxes1: torch.Tensor,
    boxes2: torch.Tensor,
    eps: float = 1e-7,
) -> tuple[torch.Tensor, torch.Tensor]:

  intsct, union = _loss_inter_union(boxes1, boxes2)
  iou = intsct / (union + eps)
  # smallest enclosing box
  x1, y1, x2, y2 = boxes1.unbind(dim=-1)
  x1g, y1g, x2g, y2g = boxes2.unbind(dim=-1)
  xc1 = torch.min(x1, x1g)
  yc1 = torch.min(y1, y1g)
  xc2 = torch.max(x2, x2g)
  yc2 = torch.max(y2, y2g)
  # The diagonal distance of the smallest enclosing box squared
  diagonal_distance_squared = ((xc2 - xc1) ** 2) + ((yc2 - yc1) ** 2) + eps
  # centers of boxes
  x_p = (x2 + x1) / 2
  y_p = (y2 + y1) / 2
  x_g = (x1g + x2g) / 2
  y_g = (y1g + y2g) / 2
  # The distance between boxes' centers squared.
  centers_distance_squared = ((x_p - x_g) ** 2) + ((y_p - y_g) ** 2)
  # The distance IoU is the IoU penalized by a normalized
  # distance between boxes' centers squared.
  loss = 1 - iou + (centers_distance_squared / diagonal_distance_squared)
  return loss, iou


def tv_complete_box_iou_loss(
    boxes1: torch.Tensor,
    boxes2: torch.Tensor,
    reduction: str = "none",
    eps: float = 1e-7,
) -> torch.Tensor:
  boxes1 = _upcast_non_float(boxes1)
  boxes2 = _upcast_non_float(boxes2)

  diou_loss, iou = _diou_iou_loss(boxes1, boxes2)

  x1, y1, x2, y2 = boxes1.unbind(dim=-1)
  x1g, y1g, x2g, y2g = boxes2.unbind(dim=-1)

  # width and height of boxes
  w_pred = x2 - x1
  h_pred = y2 - y1
  w_gt = x2g - x1g
  h_gt = y2g - y1g
  v = (4 / (torch.pi**2)) * torch.pow((torch.atan(w_gt / h_gt) - torch.atan(w_pred / h_pred)), 2)
  with torch.no_grad():
    alpha = v / (1 - iou + v + eps)

  loss = diou_loss + alpha * v

  # Check reduction option and return loss accordingly
  if reduction == "none":
    pass
  elif reduction == "mean":
    loss = loss.mean() if loss.numel() > 0 else 0.0 * loss.sum()
  elif reduction == "sum":
    loss = loss.sum()
  else:
    raise ValueError(
        f"Invalid Value for arg 'reduction': '{reduction} \n Supported reduction modes: 'none', 'mean', 'sum'"  # noqa: E501
    )
  return loss

# --------------------------------------------------------------------------------------------

LOSSES = (
    ("giou", jaxloss.generalized_box_iou_loss, tv_generalized_box_iou_loss),
    ("diou", jaxloss.distance_box_iou_loss, tv_distance_box_iou_loss),
    ("ciou", jaxloss.complete_box_iou_loss, tv_complete_box_iou_loss),
)


def random_boxes(rng, shape, dtype):
  xy = rng.uniform(0, 4, size=tuple(shape) + (2,))
  wh = rng.uniform(0.2, 3, size=tuple(shape) + (2,))
  return np.concatenate([xy, xy + wh], -1).astype(dtype)


# Degenerate pairs: identical, zero-area (a point, a line), x2 < x1, touching edges, nested,
# far apart, sharing an edge coordinate (ties in max/min).
DEGENERATE = np.array([
    [[0, 0, 2, 2], [0, 0, 2, 2]],
    [[1, 1, 1, 1], [0, 0, 2, 2]],
    [[0, 1, 3, 1], [0, 0, 2, 2]],
    [[2, 0, 0, 2], [0, 0, 2, 2]],
    [[3, 3, 1, 1], [0, 1, 2, 3]],
    [[0, 0, 1, 1], [1, 0, 2, 1]],
    [[0, 0, 4, 4], [1, 1, 2, 2]],
    [[0, 0, 1, 1], [5, 6, 7, 9]],
    [[0, 0, 2, 3], [0, 1, 2, 2]],
    [[0, 0, 0, 0], [0, 0, 0, 0]],
], np.float64)


def cases():
  for name, fn, ref in LOSSES:
    for reduction in REDUCTIONS:
      for dtype in DTYPES:
        yield dict(testcase_name=f"{name}_{reduction}_{dtype.__name__}", fn=fn, ref=ref,
                   reduction=reduction, dtype=dtype)


class BoxParityTest(ParityTestCase):

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.named_parameters(cases())
  def test_random_boxes(self, fn, ref, reduction, dtype):
    rng = np.random.default_rng(0)
    b1, b2 = random_boxes(rng, (3, 5), dtype), random_boxes(rng, (3, 5), dtype)
    self.assert_parity(fn, ref, (b1, b2), dict(reduction=reduction), grad_argnums=(0, 1))

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.named_parameters(
      (f"{name}_{d.__name__}", fn, ref, d) for name, fn, ref in LOSSES for d in DTYPES)
  def test_degenerate_boxes(self, fn, ref, dtype):
    b = DEGENERATE.astype(dtype)
    if fn is jaxloss.complete_box_iou_loss:  # zero heights: nan gradients in both (atan(w/0))
      b = b[np.all(b[:, :, 3] != b[:, :, 1], axis=1)]
    self.assert_parity(fn, ref, (b[:, 0], b[:, 1]), dict(reduction="none"), grad_argnums=(0, 1))

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.named_parameters((name, fn, ref) for name, fn, ref in LOSSES)
  def test_eps_and_single_box(self, fn, ref):
    rng = np.random.default_rng(1)
    b1, b2 = random_boxes(rng, (2,), np.float64), random_boxes(rng, (2,), np.float64)
    b1[1] = b2[1]
    self.assert_parity(fn, ref, (b1[0], b2[0]), dict(reduction="none", eps=0.3),
                       grad_argnums=(0, 1))
    self.assert_parity(fn, ref, (b1, b2), dict(reduction="sum", eps=0.3), grad_argnums=(0, 1))

  def test_complete_zero_height_is_nan_as_torchvision(self):
    b1, b2 = np.array([[0.0, 1, 3, 1]]), np.array([[0.0, 0, 2, 2]])
    t1 = torch.from_numpy(b1).requires_grad_(True)
    tv_complete_box_iou_loss(t1, torch.from_numpy(b2)).sum().backward()
    g = jax.grad(lambda b: jaxloss.complete_box_iou_loss(b, b2, "sum"))(jnp.asarray(b1))
    np.testing.assert_array_equal(np.isnan(np.asarray(g)), np.isnan(t1.grad.numpy()))
    self.assertTrue(np.isnan(np.asarray(g)).any())


class BoxTest(chex.TestCase):

  @parameterized.named_parameters((name, fn, ref) for name, fn, ref in LOSSES)
  def test_integer_boxes_and_empty_mean(self, fn, ref):
    b1, b2 = np.array([[0, 0, 3, 2], [1, 1, 4, 5]]), np.array([[1, 0, 2, 2], [0, 0, 2, 2]])
    out = fn(b1, b2)
    self.assertEqual(out.dtype, jnp.float32)
    np.testing.assert_allclose(out, ref(torch.from_numpy(b1), torch.from_numpy(b2)).numpy(),
                               rtol=1e-6)
    self.assertEqual(float(fn(jnp.zeros((0, 4)), jnp.zeros((0, 4)), "mean")), 0.0)

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.named_parameters((name, fn) for name, fn, _ in LOSSES)
  def test_where_gives_exact_zero_gradients(self, fn):
    rng = np.random.default_rng(2)
    b1, b2 = random_boxes(rng, (6,), np.float64), random_boxes(rng, (6,), np.float64)
    keep = np.array([True, False, True, True, False, True])
    b1_bad = np.where(keep[:, None], b1, np.nan)
    f = self.variant(lambda a, b: fn(a, b, "mean", where=keep))
    self.assertAlmostEqual(float(f(b1_bad, b2)), float(fn(b1[keep], b2[keep], "mean")),
                           places=12)
    g1, g2 = jax.grad(f, argnums=(0, 1))(jnp.asarray(b1_bad), jnp.asarray(b2))
    for g in (g1, g2):
      self.assertTrue(np.all(np.asarray(g)[~keep] == 0.0))
      self.assertTrue(np.all(np.isfinite(np.asarray(g))))
    none = fn(b1_bad, b2, where=keep)
    self.assertTrue(np.all(np.asarray(none)[~keep] == 0.0))

  @parameterized.named_parameters((name, fn) for name, fn, _ in LOSSES)
  def test_nan_contract(self, fn):
    rng = np.random.default_rng(3)
    b1, b2 = random_boxes(rng, (4,), np.float32), random_boxes(rng, (4,), np.float32)
    b1[2, 1] = np.nan
    b2[0, 3] = np.inf
    none = np.asarray(fn(b1, b2))
    np.testing.assert_array_equal(np.isnan(none), [True, False, True, False])
    for reduction in ("mean", "sum"):
      loss, (g1, g2) = jax.value_and_grad(lambda a, b: fn(a, b, reduction), (0, 1))(b1, b2)
      self.assertTrue(np.isnan(float(loss)))
      self.assertTrue(np.all(np.isnan(np.asarray(g1)[[0, 2]])))
      self.assertTrue(np.all(np.isnan(np.asarray(g2)[[0, 2]])))
    err, _ = jax.jit(checkify.checkify(fn))(b1, b2)
    with self.assertRaisesRegex(checkify.JaxRuntimeError,
                                "every box coordinate must be finite; box pair 0"):
      err.throw()
    err, _ = jax.jit(checkify.checkify(fn))(b1[[1, 3]], b2[[1, 3]])
    err.throw()
    # Masked invalid boxes are neither reported nor poisoned.
    keep = np.array([False, True, False, True])
    err, loss = checkify.checkify(lambda a, b: fn(a, b, "mean", where=keep))(b1, b2)
    err.throw()
    self.assertTrue(np.isfinite(float(loss)))

  def test_eps_traced_and_vmap(self):
    b1, b2 = (random_boxes(np.random.default_rng(4), (5,), np.float64) for _ in range(2))
    eps = jnp.array([1e-7, 0.1, 1.0])
    batched = jax.vmap(lambda e: jaxloss.complete_box_iou_loss(b1, b2, "mean", e))(eps)
    looped = [jaxloss.complete_box_iou_loss(b1, b2, "mean", float(e)) for e in eps]
    chex.assert_trees_all_close(batched, jnp.stack(looped), rtol=1e-12)

  def test_half_precision_returns_input_dtype(self):
    b1, b2 = random_boxes(np.random.default_rng(5), (2, 4), np.float32), random_boxes(
        np.random.default_rng(6), (2, 4), np.float32)
    out = jaxloss.generalized_box_iou_loss(b1.astype(jnp.bfloat16), b2.astype(jnp.bfloat16))
    self.assertEqual(out.dtype, jnp.bfloat16)

  def test_errors(self):
    with self.assertRaisesRegex(ValueError, r"generalized_box_iou_loss: `boxes1` must have "
                                r"shape \(\.\.\., 4\)"):
      jaxloss.generalized_box_iou_loss(jnp.ones((3, 5)), jnp.ones((3, 4)))
    with self.assertRaisesRegex(ValueError, r"distance_box_iou_loss: `reduction` must be"):
      jaxloss.distance_box_iou_loss(jnp.ones((3, 4)), jnp.ones((3, 4)), "batchmean")
    with self.assertRaisesRegex(ValueError, r"complete_box_iou_loss: `boxes1` of shape \(3, 4\) "
                                r"and `boxes2` of shape \(2, 4\) cannot be broadcast"):
      jaxloss.complete_box_iou_loss(jnp.ones((3, 4)), jnp.ones((2, 4)))
    with self.assertRaisesRegex(ValueError, r"`where` must be a boolean"):
      jaxloss.complete_box_iou_loss(jnp.ones((3, 4)), jnp.ones((3, 4)), where=jnp.ones(3))


if __name__ == "__main__":
  absltest.main()
