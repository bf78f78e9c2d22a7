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


# ------------------------------------------------------------------ layout rules (CONTRIBUTING)

import ast  # noqa: E402
import os  # noqa: E402
import subprocess as _subprocess  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _modules():
  """``{dotted name: path}`` of every module of the jaxloss package."""
  out = {}
  for folder, _, files in os.walk(os.path.join(ROOT, "jaxloss")):
    for name in files:
      if name.endswith(".py"):
        path = os.path.join(folder, name)
        dotted = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
        out[dotted.removesuffix(".__init__")] = path
  return out


def _imports(path):
  """Every ``(module, name or None)`` a file imports, anywhere in it (functions and
  ``if TYPE_CHECKING:`` blocks included)."""
  tree = ast.parse(open(path).read())
  found = []
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      found += [(alias.name, None) for alias in node.names]
    elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
      found += [(node.module, alias.name) for alias in node.names]
  return found


def test_no_import_cycle_between_the_package_modules():
  modules = _modules()
  graph = {}
  for name, path in modules.items():
    deps = set()
    for module, imported in _imports(path):
      if f"{module}.{imported}" in modules:   # `from jaxloss.search import loop`
        deps.add(f"{module}.{imported}")
      elif module in modules and module != "jaxloss" and not module.endswith(".search"):
        deps.add(module)
    graph[name] = deps - {name}
  state = {}

  def visit(node, stack):
    state[node] = "active"
    for dep in graph.get(node, ()):
      if state.get(dep) == "active":
        raise AssertionError("import cycle: " + " -> ".join(stack + [node, dep]))
      if dep not in state:
        visit(dep, stack + [node])
    state[node] = "done"

  for node in graph:
    if node not in state:
      visit(node, [])


def test_no_module_imports_another_modules_private_names():
  paths = list(_modules().values())
  for folder in ("examples", "bench", "tests"):
    for sub, _, files in os.walk(os.path.join(ROOT, folder)):
      paths += [os.path.join(sub, f) for f in files if f.endswith(".py")]
  bad = [(os.path.relpath(path, ROOT), module, name) for path in paths
         for module, name in _imports(path)
         if module.startswith("jaxloss") and name and name.startswith("_")
         and not name.startswith("__")
         and name not in ("_common", "_cosine")]  # the shared helper modules themselves
  assert not bad, bad


def test_no_absolute_path_of_a_machine_in_the_repository():
  files = _subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                          check=True).stdout.split()
  bad = []
  for name in files:
    if name.endswith((".png", ".pdf", ".gz")):
      continue
    text = open(os.path.join(ROOT, name), errors="replace").read()
    # The prefixes are assembled here so that this file does not hold them itself.
    for prefix in ("/" + p for p in ("work/", "home/", "root/", "Users/", "tmp/pytest-")):
      if prefix in text:
        bad.append((name, prefix))
  assert not bad, bad
