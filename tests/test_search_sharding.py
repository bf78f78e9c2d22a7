"""The population axis sharded over simulated CPU devices, and over two processes.

The device count is fixed when JAX starts, so these checks run in fresh interpreters with
``XLA_FLAGS=--xla_force_host_platform_device_count=N``.

Sharded (4 devices) versus single-device: these are two DIFFERENT compiled programs. XLA's
CPU code for a vmapped step depends on the number of copies per device (8 on one device, 2
on each of 4), and on the machine's vector width: the same per-copy arithmetic is emitted
with other loop/vector splits, and rounding differs at the last bit. In float32 that is
enough to flip a validation example near the decision boundary (seen on an AVX-512 Xeon:
one copy's accuracy 0.390625 against 0.4296875), after which the best index, mu and every
later epoch differ. So no bitwise equality is asserted between the two. The comparison runs
in float64 end to end (float64 data, parameters, compute and mu): the rounding differences
are then about 1e-16 relative, and a flip would need a validation example within about
1e-12 of a class boundary, so the discrete outcomes (validation counts, rewards, best
index, finiteness) are compared exactly and every float (thetas, mu, normalised rewards,
losses, trained states) to 1e-9 relative.

Two processes x 2 devices (with checkpoints, stopped after one epoch and resumed) versus
one process x 4 devices (uninterrupted): the per-device programs are the same, so the runs
are bitwise equal (that is asserted).
"""

import json
import os
import socket
import subprocess
import sys
import textwrap

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _env(devices):
  return dict(os.environ, JAX_PLATFORMS="cpu",
              XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
              PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))


def _start(script, devices, *args):
  return subprocess.Popen([sys.executable, "-c", textwrap.dedent(script), *map(str, args)],
                          cwd=REPO, env=_env(devices), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)


def _finish(proc, timeout=600):
  out, err = proc.communicate(timeout=timeout)
  assert proc.returncode == 0, out[-3000:] + err[-5000:]
  return out


PRELUDE = """
import json, sys
import jax, numpy as np
from jax.experimental import multihost_utils
jax.config.update("jax_enable_x64", True)  # as in the in-process tests
from jaxloss import search
from tests.test_search_common import (FAST_COMPILE, LINEN64_TASK, MLP_TASK, MLP64_TASK, config,
                                      dataset64, identity_theta, strip_times)

def dump(result, path):
  # Every process takes part in the gather of the sharded population; process 0 writes.
  state = multihost_utils.process_allgather(result.search_state, tiled=True)
  if jax.process_index() == 0:
    with open(path, "w") as f:
      json.dump({"records": strip_times(result.records),
                 "state": [np.asarray(a).tolist() for a in jax.tree.leaves(state)]}, f)

# Float64 end to end (see the module docstring): data, parameters, compute and mu.
train, val, _ = dataset64()
MU64 = np.asarray(identity_theta(), np.float64)
# Per-copy keys and permutations, the hand-written MLP.
MLP_CONFIG = config(population_size=8, epochs=2, common_random_numbers=False,
                    compiler_options=FAST_COMPILE, initial_mu=MU64)
"""

ONE_PROCESS = PRELUDE + """
out_dir = sys.argv[1]
assert jax.device_count() == 4
one_device = search.population_mesh(jax.devices()[:1])
# The default path (common random numbers, XLA's default options) on linen + BatchNorm +
# SGD momentum + a schedule, and per-copy keys on the MLP.
cases = [("linen", LINEN64_TASK, config(population_size=8, epochs=2, compiler_options=None,
                                        initial_mu=MU64)),
         ("mlp", MLP64_TASK, MLP_CONFIG)]
for name, task, cfg in cases:
  single = search.run(task, cfg, train, val, mesh=one_device)
  sharded = search.run(task, cfg, train, val)  # default mesh: all 4 devices
  leaf = jax.tree.leaves(sharded.search_state.population)[0]
  assert len(leaf.sharding.device_set) == 4, leaf.sharding
  assert {s.data.shape[0] for s in leaf.addressable_shards} == {2}  # 8 copies / 4 devices
  dump(single, f"{out_dir}/{name}_1device.json")
  dump(sharded, f"{out_dir}/{name}_4devices.json")

try:
  search.Engine(MLP_TASK, config(population_size=6))
except ValueError as e:
  assert "multiple of the number of devices" in str(e) and "(4)" in str(e), e
  print("B=6 on 4 devices:", e)
else:
  raise AssertionError("B=6 on 4 devices must raise")
print("OK")
"""

TWO_PROCESSES = """
import sys
import jax
process_id, port, out_dir = int(sys.argv[1]), sys.argv[2], sys.argv[3]
jax.config.update("jax_cpu_collectives_implementation", "gloo")
jax.distributed.initialize(coordinator_address=f"localhost:{port}", num_processes=2,
                           process_id=process_id)
""" + PRELUDE + """
import dataclasses
assert jax.device_count() == 4 and jax.local_device_count() == 2
# The same mesh code on 2 hosts, with collective orbax checkpoints: one epoch, then a
# resumed run to the end.
run_dir = f"{out_dir}/two_process_run"
search.run(MLP64_TASK, dataclasses.replace(MLP_CONFIG, epochs=1, output_dir=run_dir), train,
           val)
result = search.run(MLP64_TASK, dataclasses.replace(MLP_CONFIG, output_dir=run_dir), train, val,
                    resume=True)
dump(result, f"{out_dir}/mlp_2processes.json")
jax.distributed.shutdown()
print("OK")
"""


def _load(path):
  with open(path) as f:
    return json.load(f)


def _free_port():
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


# What two different compiled programs (1 device, 4 devices) agree on in float64.
_EXACT = ("epoch", "finite", "best_index", "val", "rewards", "best_reward")
_CLOSE = ("mu", "mu_next", "thetas", "normalized_rewards", "train_loss")


def _assert_float64_rounding(a, b):
  """Records and states of two float64 runs agree (see the module docstring)."""
  close = lambda x, y: np.testing.assert_allclose(np.asarray(x, float), np.asarray(y, float),
                                                  rtol=1e-9, atol=1e-12)
  for ra, rb in zip(a["records"], b["records"], strict=True):
    for key in _EXACT:
      assert ra[key] == rb[key], key
    for key in _CLOSE:
      close(ra[key], rb[key])
  for x, y in zip(a["state"], b["state"], strict=True):
    close(x, y)


def test_sharded_and_multi_process_runs_equal_the_single_device_run(tmp_path):
  port = _free_port()
  one = _start(ONE_PROCESS, 4, tmp_path)
  hosts = [_start(TWO_PROCESSES, 2, i, port, tmp_path) for i in range(2)]
  out = _finish(one)
  assert out.strip().endswith("OK"), out
  for proc in hosts:
    assert _finish(proc).strip().endswith("OK")
  for name in ("linen", "mlp"):
    _assert_float64_rounding(_load(tmp_path / f"{name}_1device.json"),
                           _load(tmp_path / f"{name}_4devices.json"))
  assert _load(tmp_path / "mlp_2processes.json") == _load(tmp_path / "mlp_4devices.json")
