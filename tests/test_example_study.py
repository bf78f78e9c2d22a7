"""Smoke tests of examples/amlfs_study.py and bench/diagnosis.py: both run on the engine."""

import json
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxloss

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "examples"))
sys.path.insert(0, os.path.join(ROOT, "bench"))

import amlfs_study as study  # noqa: E402
import diagnosis  # noqa: E402
import loss_families  # noqa: E402


def test_study_runs_every_kind_of_mode_through_the_engine(tmp_path, capsys):
  """One study invocation (one process's compiled programs) over every kind of mode: a single
  run, independent copies, a grid, the search, the library's fixed-loss grid greedy and
  independent, and the search with a label-smoothing coordinate."""
  out = tmp_path / "study.json"
  table = tmp_path / "table.md"
  modes = ["ce", "ce_best", "grid", "default", "losses_indep", "losses", "default_eps"]
  results = study.main(["--modes", *modes, "--seeds", "0", "--epochs", "2", "--population",
                        "2", "--json", str(out), "--output", str(table)])
  assert [r["mode"] for r in results] == modes
  assert [r["copies"] for r in results] == [1, 2, 2, 2, 2, 2, 2]
  by_mode = {r["mode"]: r for r in results}
  theta_size = {"losses_indep": 2, "losses": 2, "default_eps": 25}
  for r in results:
    assert len(r["records"]) == 2
    assert 0.3 < r["test_accuracy"] <= 1.0  # MNIST-1D after 2 epochs: well above chance
    assert r["test_accuracy"] == r["records"][-1]["best_test"]
    # The engine's records: one theta and reward per copy, the selection of the mode.
    assert np.shape(r["records"][0]["thetas"]) == (r["copies"], theta_size.get(r["mode"], 24))
    assert r["records"][0]["selection"] == (
        "none" if r["mode"] in ("ce_best", "losses_indep") else "best")
  assert results[0]["records"][0]["strategy"] == "Fixed"
  # The fixed-loss grid trains the library's losses: theta [family, parameter].
  np.testing.assert_allclose(by_mode["losses_indep"]["records"][0]["thetas"],
                             loss_families.family_grid(2)[1])
  # default_eps starts at label smoothing 0.1: copy 0 (the mean copy) trains with it.
  assert by_mode["default_eps"]["records"][0]["thetas"][0][-1] == np.float32(study.LS_START)
  # Independent modes: every copy's final test accuracy; the kept copy is one of them.
  for mode in ("ce_best", "losses_indep"):
    copies = by_mode[mode]["copy_test"]
    assert len(copies) == 2 and all(0.2 < a <= 1.0 for a in copies)
    assert min(abs(a - by_mode[mode]["test_accuracy"]) for a in copies) < 1e-6
  assert "copy_test" not in by_mode["losses"]  # greedy: the copies are broadcast, not kept
  text = table.read_text()
  assert "| `ce_best` | 2 x 2 | 1 |" in text and "compute (copies x epochs)" in text
  # ce was run, so it is the single reference; ce_single (ce_best's copies) is listed too.
  single = float(np.mean(by_mode["ce_best"]["copy_test"]))
  assert f"| `ce_single` | 1 x 2 | 1 | {single:.4f}" in text
  assert "vs `ce` (paired)" in text and "vs `ce_best` (paired)" in text
  assert "ls 0.1:" in text  # the per-copy table names the grid's losses
  saved = json.loads(out.read_text())
  assert len(saved["results"]) == len(modes)
  merged = study.main(["--from-json", str(out)])
  assert [r["test_accuracy"] for r in merged] == [r["test_accuracy"] for r in results]


def test_study_help_explains_every_mode_and_flag(capsys):
  with pytest.raises(SystemExit) as info:
    study.parse_args(["--help"])
  assert info.value.code == 0
  text = capsys.readouterr().out
  for mode in study.ALL_MODES:
    assert mode in text
  for flag in ("--dataset", "--data-dir", "--modes", "--seeds", "--epochs", "--population",
               "--label-noise", "--from-json", "--json", "--figure"):
    assert flag in text


@pytest.mark.parametrize("argv", [["--epochs", "0"], ["--population", "-1"],
                                  ["--label-noise", "1.5"], ["--modes", "nope"],
                                  ["--dataset", "cifar10-subset", "--depth", "9"]])
def test_study_bad_flags_are_one_line_errors(argv, capsys):
  with pytest.raises(SystemExit) as info:
    study.parse_args(argv)
  assert info.value.code == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert err[-1].startswith("usage:") is False and "error:" in err[-1]


def test_study_from_json_refuses_a_bad_file(tmp_path):
  bad = tmp_path / "bad.json"
  bad.write_text("{not json")
  with pytest.raises(SystemExit, match="not a --json file"):
    study.main(["--from-json", str(bad)])


def test_study_cifar_needs_a_data_dir(monkeypatch):
  monkeypatch.delenv(study.DATA_DIR_ENV, raising=False)
  with pytest.raises(SystemExit, match="--data-dir"):
    study.main(["--dataset", "cifar10-subset", "--modes", "ce", "--epochs", "1"])


def test_diagnosis_runs_on_the_engine():
  args = diagnosis.parse_args(["--warm", "0", "1", "--samples", "2", "--sigmas", "0.05",
                               "--parts", "t_slopes", "--epochs", "2"])
  out = diagnosis.run(args)
  assert [s["warm"] for s in out["states"]] == [0, 1]
  for state in out["states"]:
    # mu, 2 perturbed copies and 2 noise-floor copies, each with a validation accuracy.
    assert len(state["val"]) == 5
    assert 0.1 < state["mu_val"] <= 1.0
    assert {r["part"] for r in state["rows"]} == {"t_slopes", "noise floor"}


@pytest.mark.parametrize("family, parameter, reference", [
    ("ls", 0.0, lambda x, y: jaxloss.cross_entropy(x, y)),
    ("ls", 0.2, lambda x, y: jaxloss.cross_entropy(x, y, label_smoothing=0.2)),
    ("poly1", 1.0, lambda x, y: jnp.mean(jaxloss.poly_loss_cross_entropy(
        x, jax.nn.one_hot(y, x.shape[-1]), epsilon=1.0))),
    ("focal", 1.0, lambda x, y: jaxloss.softmax_focal_loss(x, y, gamma=1.0)),
    ("gce", 0.7, lambda x, y: jaxloss.generalized_cross_entropy(x, y, q=0.7)),
    ("sce", 0.1, lambda x, y: jaxloss.symmetric_cross_entropy(x, y, alpha=0.1, beta=1.0)),
])
def test_family_loss_is_the_library_loss(family, parameter, reference):
  key1, key2 = jax.random.split(jax.random.key(0))
  cos = jnp.tanh(jax.random.normal(key1, (16, 10), jnp.float32))
  y = jax.random.randint(key2, (16,), 0, 10)
  theta = jnp.asarray(loss_families.family_theta(family, parameter), jnp.float32)
  f = jax.jit(lambda t, c: loss_families.family_loss(c, y, t, scale=4.0))
  np.testing.assert_allclose(f(theta, cos), reference(4.0 * cos, y), rtol=1e-6)
  g = jax.grad(lambda c: f(theta, c))(cos)
  np.testing.assert_allclose(g, jax.grad(lambda c: reference(4.0 * c, y))(cos), rtol=1e-5,
                             atol=1e-7)
  with pytest.raises(ValueError, match="family must be one of"):
    loss_families.family_theta("nope", 1.0)
