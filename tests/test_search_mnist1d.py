"""End to end on real data: examples/amlfs_mnist1d.py, the three modes, B = 8, a few epochs.

MNIST-1D is generated locally (no download). The 1-D CNN of the example, 3800 training /
1000 validation / 1200 test examples; 10 classes, so chance is 0.1.
"""

import importlib.util
import json
import os
import sys

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _load_example():
  path = os.path.join(REPO, "examples", "amlfs_mnist1d.py")
  spec = importlib.util.spec_from_file_location("amlfs_mnist1d", path)
  module = importlib.util.module_from_spec(spec)
  sys.modules[spec.name] = module  # Flax modules (dataclasses) look their module up
  spec.loader.exec_module(module)
  return module


def test_amlfs_random_and_baseline_learn_mnist1d(tmp_path, capsys):
  example = _load_example()
  out = str(tmp_path / "runs")
  results = example.main(["--epochs", "5", "--population", "8", "--seeds", "0", "--no-progress",
                          "--workdir", out])
  printed = capsys.readouterr().out
  with capsys.disabled():  # the table of test accuracies, shown in the test log
    print("\n" + printed)
  assert [r["mode"] for r in results] == ["amlfs", "random", "baseline"]
  for r in results:
    assert r["test_accuracy"] > 0.5, r  # chance is 0.1
  amlfs, random, baseline = results
  assert amlfs["mu"] != random["mu"]  # the search moved mu; random search keeps mu_0
  assert len(baseline["copies_test_accuracy"]) == 8
  assert np.std(baseline["copies_test_accuracy"]) > 0  # independent cross-entropy runs
  for mode in ("amlfs", "random", "baseline"):
    assert f"{mode}" in printed
    with open(os.path.join(out, f"{mode}_seed0", "records.jsonl")) as f:
      records = [json.loads(line) for line in f]
    assert [r["epoch"] for r in records] == [0, 1, 2, 3, 4]
    assert len(records[0]["thetas"]) == 8 and len(records[0]["thetas"][0]) == 24
  with open(os.path.join(out, "summary.json")) as f:
    assert len(json.load(f)["results"]) == 3


def test_label_noise_moves_exactly_the_ratio_to_other_classes():
  example = _load_example()
  labels = np.random.default_rng(0).integers(0, 10, size=1000).astype(np.int32)
  noisy = example.add_label_noise(labels, 0.2, seed=3)
  changed = noisy != labels
  assert changed.sum() == 200 and noisy.dtype == labels.dtype
  assert noisy.min() >= 0 and noisy.max() < 10
  np.testing.assert_array_equal(noisy, example.add_label_noise(labels, 0.2, seed=3))
  np.testing.assert_array_equal(example.add_label_noise(labels, 0.0), labels)
