"""Smoke tests of examples/amlfs_study.py and bench/diagnosis.py: both run on the engine."""

import json
import os
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "examples"))
sys.path.insert(0, os.path.join(ROOT, "bench"))

import amlfs_study as study  # noqa: E402
import diagnosis  # noqa: E402


def test_study_runs_every_kind_of_mode_through_the_engine(tmp_path, capsys):
  out = tmp_path / "study.json"
  table = tmp_path / "table.md"
  results = study.main(["--modes", "ce", "ce_best", "grid", "default", "--seeds", "0",
                        "--epochs", "2", "--population", "2", "--json", str(out),
                        "--output", str(table)])
  assert [r["mode"] for r in results] == ["ce", "ce_best", "grid", "default"]
  assert [r["copies"] for r in results] == [1, 2, 2, 2]
  for r in results:
    assert len(r["records"]) == 2
    assert 0.3 < r["test_accuracy"] <= 1.0  # MNIST-1D after 2 epochs: well above chance
    assert r["test_accuracy"] == r["records"][-1]["best_test"]
    # The engine's records: one theta and reward per copy, the selection of the mode.
    assert np.shape(r["records"][0]["thetas"]) == (r["copies"], 24)
    assert r["records"][0]["selection"] == ("none" if r["mode"] == "ce_best" else "best")
  assert results[0]["records"][0]["strategy"] == "Fixed"
  text = table.read_text()
  assert "| `ce_best` | 2 x 2 | 1 |" in text and "compute (copies x epochs)" in text
  saved = json.loads(out.read_text())
  assert len(saved["results"]) == 4
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
