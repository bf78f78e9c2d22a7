"""The package's promises about its dependencies: a light core, and a clear error for the extras."""

import subprocess
import sys
import textwrap


def _run(code):
  return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                        text=True, timeout=300)


def test_import_jaxloss_pulls_in_no_optional_dependency():
  out = _run("""
      import sys, jax.numpy as jnp, jaxloss
      loss = jaxloss.cross_entropy(jnp.array([[1.0, 2.0, 3.0]]), jnp.array([2]))
      heavy = [m for m in ("optax", "chex", "flax", "orbax", "torch", "tensorflow_datasets")
               if m in sys.modules]
      print(heavy, round(float(loss), 5))
  """)
  assert out.returncode == 0, out.stderr
  assert out.stdout.split() == ["[]", "0.40761"]


def test_search_without_its_extra_names_the_extra():
  # Hide orbax from the import system: the error must say what to install.
  out = _run("""
      import sys
      sys.modules["orbax"] = None
      sys.modules["orbax.checkpoint"] = None
      try:
        import jaxloss.search
      except ImportError as error:
        print(error)
  """)
  assert out.returncode == 0, out.stderr
  assert "pip install 'jaxloss[search]'" in out.stdout, out.stdout


def test_the_package_is_typed():
  import importlib.resources
  assert importlib.resources.files("jaxloss").joinpath("py.typed").is_file()
