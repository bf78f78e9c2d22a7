"""Draws the AM-LFS transforms t and tau and the losses they give, like figure 1 of the paper.

Usage (from the repository root)::

    python docs/make_amlfs_figure.py            # writes docs/amlfs_transforms.png

Left: ``t`` on the cosine domain for the identity, CosFace (m = 0.35) and an
ArcFace-like theta (the chord fit of ``cos(arccos x + 0.5)`` on the M = 6
intervals), each beside the exact transform (and ArcFace's guarded target
logit, which differs from ``cos(arccos x + m)`` past ``theta = pi - m``). Middle: ``tau``
on the probability domain: the identity (the three thetas above), the chord fit of focal loss
(``tau(p) = p ** ((1 - p) ** 2)``, paper eq. 16 form of eq. 5-6) and one theta
sampled from N(identity, 0.2^2), which dips below zero in one interval (where the
loss's guard ``max(tau, 0.01 p)``, drawn as a thin dotted line, takes over). Right: the
resulting loss of one sample against the
angle to its class (10 classes, the other cosines 0, scale 30), on a log scale:
the exact losses (solid) and their AM-LFS approximations (dashed).
"""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
import jax  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import jaxloss  # noqa: E402

M = 6
MARGIN_COS, MARGIN_ARC, GAMMA = 0.35, 0.5, 2.0
SCALE, NUM_CLASSES = 30.0, 10
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "amlfs_transforms.png")


def _arcface_exact(x: np.ndarray, m: float) -> np.ndarray:
  """cos(arccos x + m) with insightface's guard (cos - m sin m past pi - m)."""
  phi = np.cos(np.arccos(np.clip(x, -1, 1)) + m)
  return np.where(x > np.cos(np.pi - m), phi, x - m * np.sin(m))


def _segments(ax, x, y, num_intervals, lo, hi, **kw):
  """Plots a piecewise-linear curve without the vertical jumps at the interval ends."""
  edges = np.linspace(lo, hi, num_intervals + 1)
  label = kw.pop("label", None)
  for i in range(num_intervals):
    sel = (x >= edges[i]) & (x <= edges[i + 1] if i == num_intervals - 1 else x < edges[i + 1])
    ax.plot(x[sel], y[sel], label=label if i == 0 else None, **kw)


def main() -> None:
  thetas = {
      "identity (softmax)": jaxloss.identity_theta(M),
      f"CosFace, m={MARGIN_COS}": jaxloss.cosface_theta(MARGIN_COS, M),
      f"ArcFace-like, m={MARGIN_ARC}": jaxloss.arcface_theta(MARGIN_ARC, M),
  }
  focal = jaxloss.fit_theta(None, lambda p: p ** ((1 - p) ** GAMMA), M)
  sampled = jaxloss.identity_theta(M) + 0.2 * jax.random.normal(jax.random.key(3), (4 * M,))
  colors = {name: c for name, c in zip(thetas, ("tab:blue", "tab:orange", "tab:green"))}

  fig, (ax_t, ax_tau, ax_loss) = plt.subplots(1, 3, figsize=(16, 4.8))

  # t on [-1, 1].
  x = np.linspace(-1, 1, 1201)
  exact_t = {"identity (softmax)": x, f"CosFace, m={MARGIN_COS}": x - MARGIN_COS,
             f"ArcFace-like, m={MARGIN_ARC}": np.cos(np.arccos(x) + MARGIN_ARC)}
  for name, theta in thetas.items():
    curves = jaxloss.amlfs_curves(theta, num_points=1201)
    ax_t.plot(x, exact_t[name], color=colors[name], lw=1.2, alpha=0.6)
    _segments(ax_t, np.asarray(curves["x"]), np.asarray(curves["t"]), M, -1, 1,
              color=colors[name], ls="--", lw=2, label=name)
  ax_t.plot(x, _arcface_exact(x, MARGIN_ARC), color="0.4", lw=1, ls=":",
            label=r"ArcFace with its guard ($\cos\theta - m\sin m$ past $\pi - m$)")
  for edge in np.linspace(-1, 1, M + 1):
    ax_t.axvline(edge, color="0.85", lw=0.8, zorder=0)
  ax_t.set(title="t: transform of the target cosine (solid: exact, dashed: AM-LFS)",
           xlabel=r"$\cos\theta_y$", ylabel=r"$t(\cos\theta_y)$")
  ax_t.legend(loc="upper left", fontsize=8)

  # tau on [0, 1].
  p = np.linspace(0, 1, 1201)
  ax_tau.plot(p, p, color="tab:blue", lw=2, ls="--", label="identity (all three thetas)")
  ax_tau.plot(p, p ** ((1 - p) ** GAMMA), color="tab:red", lw=1.2, alpha=0.6)
  curves = jaxloss.amlfs_curves(focal, num_points=1201)
  _segments(ax_tau, np.asarray(curves["p"]), np.asarray(curves["tau"]), M, 0, 1,
            color="tab:red", ls="--", lw=2, label=rf"focal fit, $\gamma$={GAMMA:g}")
  curves = jaxloss.amlfs_curves(sampled, num_points=1201)
  _segments(ax_tau, np.asarray(curves["p"]), np.asarray(curves["tau"]), M, 0, 1,
            color="tab:purple", ls=":", lw=2, label=r"sampled from N(identity, $0.2^2$)")
  ax_tau.axhline(0, color="0.5", lw=0.8)
  # Where a sampled tau falls below 0.01 p the loss uses the guard instead (amlfs_loss's
  # tau_min_ratio): drawn thin, so that the transforms stay what the eye sees.
  ax_tau.plot(p, 0.01 * p, color="0.4", lw=0.8, ls=(0, (1, 2)),
              label=r"guard $0.01\,p$: the loss uses $\max(\tau, 0.01\,p)$")
  for edge in np.linspace(0, 1, M + 1):
    ax_tau.axvline(edge, color="0.85", lw=0.8, zorder=0)
  ax_tau.set(title=r"$\tau$: transform of the target probability",
             xlabel=r"$p_y^t$", ylabel=r"$\tau(p_y^t)$")
  ax_tau.legend(loc="upper left", fontsize=8)

  # The loss of one sample against its angle.
  angles = np.linspace(0.0, 179.0, 900)
  cos = np.zeros((angles.size, NUM_CLASSES))
  cos[:, 0] = np.cos(np.radians(angles))
  y = np.zeros(angles.size, int)
  exact = {
      "identity (softmax)": jaxloss.cross_entropy(SCALE * cos, y, reduction="none"),
      f"CosFace, m={MARGIN_COS}": jaxloss.cosface(cos, y, SCALE, MARGIN_COS, reduction="none"),
      f"ArcFace-like, m={MARGIN_ARC}": jaxloss.arcface(cos, y, SCALE, MARGIN_ARC,
                                                       reduction="none"),
  }
  for name, theta in thetas.items():
    ax_loss.plot(angles, exact[name], color=colors[name], lw=1.2, alpha=0.6)
    ax_loss.plot(angles, jaxloss.amlfs_loss(cos, y, theta, scale=SCALE, reduction="none"),
                 color=colors[name], ls="--", lw=2, label=name)
  focal_loss = jaxloss.amlfs_loss(cos, y, focal, scale=SCALE, reduction="none")
  focal_exact = jaxloss.softmax_focal_loss(SCALE * cos, y, GAMMA, reduction="none")
  ax_loss.plot(angles, focal_exact, color="tab:red", lw=1.2, alpha=0.6)
  ax_loss.plot(angles, focal_loss, color="tab:red", ls="--", lw=2,
               label=rf"focal fit, $\gamma$={GAMMA:g}")
  ax_loss.set_yscale("log")
  ax_loss.set_ylim(1e-6, 2e2)
  ax_loss.set(title=f"loss of one sample ({NUM_CLASSES} classes, other cosines 0, s={SCALE:g})",
              xlabel=r"angle to its class $\theta_y$ (degrees)", ylabel="loss (log scale)")
  ax_loss.legend(loc="lower right", fontsize=8)

  fig.suptitle(f"AM-LFS search space: piecewise-linear t and tau, M = {M} intervals", y=1.0)
  fig.tight_layout()
  fig.savefig(OUT, dpi=110)
  print(f"wrote {OUT}")


if __name__ == "__main__":
  jax.config.update("jax_enable_x64", False)
  main()
