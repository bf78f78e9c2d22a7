"""Stable descriptions of the things a search run depends on (the resume fingerprint).

A resumed run must continue THE SAME run, so the checkpoint stores a fingerprint of every
input the result depends on, and a resume compares it option by option. Most inputs are
plain values; the others are callables (the mu optimiser, the reward function, the task's
functions) and data. They are described by :func:`describe` and :func:`data_fingerprint`
with rules that give the same string in every process and every run of the same code:

* plain values (``None``, bools, numbers, strings) by ``repr``; tuples, lists, dicts and
  (sorted) sets element by element; numpy/JAX arrays by dtype, shape and a hash of the bytes
  (up to 2^20 elements; larger ones by a hash of an evenly strided sample);
* a function by its qualified name plus a hash of its source (``inspect.getsource``; the
  bytecode, constants and names of its code object when there is no source, e.g. under
  ``python -c``), its defaults, the contents of its closure cells (described by these same
  rules, recursively) and the user functions, classes and values it reads from its module's
  globals (modules themselves are named, not described);
* ``functools.partial`` by its function, arguments and keywords; a bound method by its
  function and its object; a ``jax.jit`` wrapper by the function it wraps;
* an optax ``GradientTransformation`` (a named tuple of ``init``/``update`` closures) like any
  tuple: its closures' cells hold the learning rate and the other numbers (``b1``, ``eps``,
  schedules: themselves closures), so ``adam(0.05)`` and ``adam(0.01)`` differ;
* an object with a ``spec()`` method (e.g. a search strategy) by what ``spec()`` returns;
  a dataclass (a flax module, a frozen strategy) by its class and its fields; any other
  object by its class and its ``repr`` when that repr has no memory address in it (else by
  its class only).

Limits (what the fingerprint cannot see): code reached only through attribute access on
modules (``mylib.helper`` called as ``mylib.helper(...)`` is named by module, so an edit of
``mylib`` goes unnoticed), state hidden in objects whose ``repr`` shows an address, files
read at run time, and the exact source of two lambdas written on the same line (they share
it). Editing a comment or the formatting of a described function changes its source hash:
resume then refuses, naming the option; pass the same code (or start a new ``output_dir``).
Recursion stops after a fixed depth (the deepest levels are then named, not described).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import inspect
import math
import types
from typing import Any

import numpy as np

_MAX_DEPTH = 8
_MAX_ELEMENTS = 1 << 20
_SAMPLE_ROWS = 256


def _hash(text: str | bytes) -> str:
  data = text.encode() if isinstance(text, str) else text
  return hashlib.sha256(data).hexdigest()[:16]


def _qualname(obj) -> str:
  module = getattr(obj, "__module__", None) or "?"
  return f"{module}.{getattr(obj, '__qualname__', getattr(obj, '__name__', type(obj).__name__))}"


def _array_description(a) -> str:
  try:
    host = np.asarray(a)
  except Exception:  # pylint: disable=broad-except  (e.g. a non-addressable global array)
    return f"array({getattr(a, 'dtype', '?')}, {tuple(getattr(a, 'shape', ()))}, unreadable)"
  if host.dtype == object:
    return f"array(object, {host.shape})"
  flat = host.reshape(-1)
  if flat.size > _MAX_ELEMENTS:
    flat = flat[:: -(-flat.size // _MAX_ELEMENTS)]
  return f"array({host.dtype}, {host.shape}, {_hash(np.ascontiguousarray(flat).tobytes())})"


def _code_description(code: types.CodeType) -> str:
  consts = [(_code_description(c) if isinstance(c, types.CodeType) else repr(c))
            for c in code.co_consts]
  return _hash(code.co_code + repr((consts, code.co_names)).encode())


@functools.lru_cache(maxsize=4096)
def _code_source_hash(code: types.CodeType) -> str | None:
  try:
    return _hash(inspect.getsource(code))
  except (OSError, TypeError):
    return None


@functools.lru_cache(maxsize=1024)
def _class_hash(cls: type) -> str:
  """The class's methods' sources (inspect.getsource of a class parses its whole module)."""
  parts = [_qualname(b) for b in cls.__mro__[1:]]
  for name, value in sorted(vars(cls).items()):
    value = getattr(value, "__func__", value)
    code = getattr(value, "__code__", None)
    if isinstance(code, types.CodeType):
      parts.append(f"{name}:{_code_source_hash(code) or _code_description(code)}")
  return _hash("|".join(parts))


class _Describer:

  def __init__(self):
    self._active: set[int] = set()

  def __call__(self, obj: Any, depth: int = 0) -> str:
    if obj is None or isinstance(obj, (bool, int, str, bytes, np.integer, np.bool_)):
      return repr(obj)
    if isinstance(obj, (float, np.floating)):
      value = float(obj)
      return repr(value) if math.isfinite(value) else str(value)
    if isinstance(obj, type):
      try:
        return f"class {_qualname(obj)}#{_class_hash(obj)}"
      except TypeError:  # unhashable / unusual class objects
        return f"class {_qualname(obj)}"
    if isinstance(obj, types.ModuleType):
      return f"module {obj.__name__}"
    if isinstance(obj, np.ndarray) or (hasattr(obj, "shape") and hasattr(obj, "dtype")
                                       and hasattr(obj, "__array__")):
      return _array_description(obj)
    if depth >= _MAX_DEPTH or id(obj) in self._active:
      return f"<{_qualname(type(obj))}>"
    self._active.add(id(obj))
    try:
      return self._compound(obj, depth + 1)
    finally:
      self._active.discard(id(obj))

  def _compound(self, obj, depth) -> str:
    d = lambda x: self(x, depth)
    if isinstance(obj, (list, tuple)):
      name = type(obj).__name__ if type(obj) in (list, tuple) else _qualname(type(obj))
      return f"{name}(" + ", ".join(d(x) for x in obj) + ")"
    if isinstance(obj, dict):
      return "{" + ", ".join(f"{d(k)}: {d(v)}" for k, v in obj.items()) + "}"
    if isinstance(obj, (set, frozenset)):
      return "{" + ", ".join(sorted(d(x) for x in obj)) + "}"
    if isinstance(obj, functools.partial):
      return f"partial({d(obj.func)}, {d(obj.args)}, {d(obj.keywords)})"
    if isinstance(obj, types.MethodType):
      return f"method({d(obj.__func__)}, {d(obj.__self__)})"
    if isinstance(obj, types.FunctionType):
      return self._function(obj, depth)
    spec = getattr(obj, "spec", None)
    if callable(spec) and not isinstance(obj, type):
      return f"{_qualname(type(obj))}.spec({d(spec())})"
    wrapped = getattr(obj, "__wrapped__", None)
    if wrapped is not None:
      return f"wrapped({d(wrapped)})"
    if dataclasses.is_dataclass(obj):
      fields = ", ".join(f"{f.name}={d(getattr(obj, f.name, None))}"
                         for f in dataclasses.fields(obj) if f.name not in ("parent", "name"))
      return f"{d(type(obj))}({fields})"
    text = repr(obj)
    if " at 0x" in text or "object at" in text:
      return f"<{d(type(obj))}>"
    return f"{d(type(obj))}:{text}"

  def _function(self, fn: types.FunctionType, depth: int) -> str:
    d = lambda x: self(x, depth)
    code = fn.__code__
    parts = [_code_source_hash(code) or _code_description(code)]
    if fn.__defaults__:
      parts.append("defaults=" + d(fn.__defaults__))
    if fn.__kwdefaults__:
      parts.append("kwdefaults=" + d(fn.__kwdefaults__))
    if fn.__closure__:
      cells = []
      for name, cell in zip(code.co_freevars, fn.__closure__):
        try:
          cells.append(f"{name}={d(cell.cell_contents)}")
        except ValueError:  # an empty cell
          cells.append(f"{name}=<empty>")
      parts.append("closure(" + ", ".join(cells) + ")")
    globals_ = fn.__globals__
    seen = []
    for name in _global_names(code):
      if name in globals_ and name not in seen:
        seen.append(name)
        parts.append(f"{name}={d(globals_[name])}")
    return f"{_qualname(fn)}#{_hash('|'.join(parts))}"


def _global_names(code: types.CodeType) -> list[str]:
  names = list(code.co_names)
  for const in code.co_consts:
    if isinstance(const, types.CodeType):
      names.extend(_global_names(const))
  return names


def describe(obj: Any) -> str:
  """A stable, process-independent description of ``obj`` (see the module docstring)."""
  return _Describer()(obj)


def data_fingerprint(data: Any) -> dict:
  """The structure, shapes, dtypes and a cheap content hash of a split (a pytree of arrays).

  The content hash covers up to 256 evenly spaced examples (rows of the leading axis),
  always including the first and the last. A split held as arrays this process cannot read
  (a multi-process global array) is described by its shapes and dtypes only.
  """
  import jax  # pylint: disable=import-outside-toplevel

  leaves, treedef = jax.tree.flatten(data)
  out = {"structure": str(treedef), "leaves": []}
  for leaf in leaves:
    shape, dtype = tuple(np.shape(leaf)), str(getattr(leaf, "dtype", np.asarray(leaf).dtype))
    entry = {"shape": list(shape), "dtype": dtype}
    host = _readable(leaf)
    if host is not None and host.ndim and host.shape[0]:
      rows = np.unique(np.linspace(0, host.shape[0] - 1, min(_SAMPLE_ROWS, host.shape[0]))
                       .round().astype(np.int64))
      entry["sample_hash"] = _hash(np.ascontiguousarray(host[rows]).tobytes())
    out["leaves"].append(entry)
  return out


def _readable(leaf) -> np.ndarray | None:
  if isinstance(leaf, np.ndarray):
    return leaf
  if getattr(leaf, "is_fully_addressable", True) is False:
    shards = getattr(leaf, "addressable_shards", [])
    if shards and tuple(shards[0].data.shape) == tuple(leaf.shape):  # replicated
      return np.asarray(shards[0].data)
    return None
  try:
    return np.asarray(leaf)
  except Exception:  # pylint: disable=broad-except
    return None


def differences(old: dict, new: dict, prefix: str = "") -> list[str]:
  """The dotted keys whose values differ between two fingerprints (missing keys included)."""
  out = []
  for key in list(old) + [k for k in new if k not in old]:
    name = f"{prefix}{key}"
    if key not in old or key not in new:
      out.append(name)
    elif isinstance(old[key], dict) and isinstance(new[key], dict):
      out.extend(differences(old[key], new[key], name + "."))
    elif old[key] != new[key]:
      out.append(name)
  return out
