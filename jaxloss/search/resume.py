"""Resume: what a run's result depends on (its fingerprint), and whether a resume may go on.

A resumed run must continue THE SAME run, so every checkpoint stores a fingerprint of every
input the result depends on (:func:`run_fingerprint`), and a resume compares it entry by
entry (:func:`check_resume`): the plain options, the strategy, the reward function, the
user's functions by their own names (``task.loss``, ``task.train_step``, ...), the splits
(structure, shapes, dtypes and a content hash), the devices and the user's metadata. A
difference refuses the resume, naming each entry and the user's function by its name;
``allow_changed`` names the entries allowed to differ (e.g. ``('task.optimizer',)`` to
continue a diverged run with a lower learning rate): the resume then proceeds and the
change is recorded.

The descriptions (:func:`describe`, :func:`data_fingerprint`) give the same string in every
process and every run of the same code:

* plain values (``None``, bools, numbers, strings) by ``repr``; tuples, lists, dicts and
  (sorted) sets element by element; numpy/JAX arrays by dtype, shape and a hash of the bytes
  (up to 2^20 elements; larger ones by a hash of an evenly strided sample);
* a function by its qualified name plus a hash of its COMPILED code (bytecode, constants and
  the names it uses, recursively for nested functions; not its line numbers, so an edited
  comment, blank line or formatting leaves it unchanged, while a changed constant or
  operation changes it), its defaults, the contents of its closure cells and the user
  functions, classes and values it reads from its module's globals (described by these same
  rules, recursively; modules themselves are named, not described);
* ``functools.partial`` by its function, arguments and keywords; a bound method by its
  function and its object; a ``jax.jit`` wrapper by the function it wraps;
* an optax ``GradientTransformation`` (a named tuple of ``init``/``update`` closures) like any
  tuple: its closures' cells hold the learning rate and the other numbers, so ``adam(0.05)``
  and ``adam(0.01)`` differ;
* a dataclass (a strategy, a flax module) by its class and its fields; any other object by
  its class and its ``repr`` when that repr has no memory address in it (else by its class).

Limits (what the fingerprint cannot see): code reached only through attribute access on
modules (``mylib.helper(...)`` is named by module, so an edit of ``mylib`` goes unnoticed),
state hidden in objects whose ``repr`` shows an address, and files read at run time. The
bytecode depends on the Python version: resuming under another Python refuses (pass
``allow_changed`` when you know the code is the same). Recursion stops after a fixed depth.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import types
from typing import Any

import numpy as np

# Deep enough for optax chains of schedules (a schedule's numbers sit ~10 closures down);
# cycles are cut by `_Describer._active`.
_MAX_DEPTH = 32
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


@functools.lru_cache(maxsize=4096)
def _code_description(code: types.CodeType) -> str:
  """The code object's bytecode, constants and names: line numbers (and so comments, blank
  lines and formatting) are not part of it; nested code objects are described alike."""
  consts = [(_code_description(c) if isinstance(c, types.CodeType) else repr(c))
            for c in code.co_consts]
  return _hash(code.co_code + repr((consts, code.co_names, code.co_argcount,
                                    code.co_kwonlyargcount, code.co_flags)).encode())


@functools.lru_cache(maxsize=1024)
def _class_hash(cls: type) -> str:
  """The class's bases and its methods' compiled code."""
  parts = [_qualname(b) for b in cls.__mro__[1:]]
  for name, value in sorted(vars(cls).items()):
    value = getattr(value, "__func__", value)
    code = getattr(value, "__code__", None)
    if isinstance(code, types.CodeType):
      parts.append(f"{name}:{_code_description(code)}")
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
    parts = [_code_description(code)]
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


# ----------------------------------------------------------------------------------------------
# The fingerprint of a run, and the comparison a resume makes
# ----------------------------------------------------------------------------------------------

# Entries compared one level down (their sub-keys are named in messages).
NESTED = ("options", "task", "monitor", "metadata", "devices")
_MISSING = "<missing>"


def run_fingerprint(config, spec, *, devices: dict, train, val, monitor: dict | None,
                    metadata: dict | None, initial_state=None) -> dict:
  """Everything the result of a run depends on (JSON), compared by a resume.

  ``config``: the :class:`~jaxloss.search.config.SearchConfig` (its plain options);
  ``spec``: the :class:`~jaxloss.search.config.StepSpec` (the strategy, the reward function
  and the task: each of the user's functions under its own name, :meth:`Task.named_parts`);
  the splits (structure, shapes, dtypes, a content hash of a sample of their examples); the
  devices on the population axis (their number and platform change the rounding); the user's
  ``metadata``; the ``initial_state`` the copies started from, if any.
  """
  out = {
      "options": config.options(),
      "strategy": describe(spec.strategy),
      "selection": describe(spec.selection),
      "select_until": describe(config.select_until),
      "reward_fn": describe(spec.reward_fn),
      "task": {name: describe(part) for name, part in spec.task.named_parts()},
      "train": data_fingerprint(train), "val": data_fingerprint(val),
      "monitor": {name: data_fingerprint(d) for name, d in (monitor or {}).items()},
      "devices": devices,
      "metadata": check_metadata(metadata),
  }
  if initial_state is not None:
    out["initial_state"] = data_fingerprint(initial_state)
  return out


def check_metadata(metadata: dict | None) -> dict:
  """User metadata: a dict of JSON values (compared on resume, key by key)."""
  if metadata is None:
    return {}
  if not isinstance(metadata, dict):
    raise ValueError(f"search: `metadata` must be a dict of JSON values, got "
                     f"{type(metadata).__name__}.")
  try:
    return json.loads(json.dumps(metadata, allow_nan=False))
  except (TypeError, ValueError) as error:
    raise ValueError(f"search: `metadata` must be a dict of JSON values ({error}).") from None


def differences(old: dict, new: dict) -> list[str]:
  """The entries (``task.loss``, ``options.seed``, ``metadata.note``, ...) whose values
  differ; the :data:`NESTED` entries are compared one level down."""
  out = []
  for key in list(old) + [k for k in new if k not in old]:
    a, b = old.get(key, _MISSING), new.get(key, _MISSING)
    if key in NESTED and isinstance(a, dict) and isinstance(b, dict):
      out.extend(f"{key}.{sub}" for sub in list(a) + [k for k in b if k not in a]
                 if a.get(sub, _MISSING) != b.get(sub, _MISSING))
    elif a != b:
      out.append(key)
  return out


def lookup(tree: dict, dotted: str):
  """The value of a :func:`differences` entry in a fingerprint (``<missing>`` if absent)."""
  head, _, sub = dotted.partition(".")
  value = tree.get(head, _MISSING)
  if sub and head in NESTED and isinstance(value, dict):
    value = value.get(sub, _MISSING)
  return value


def check_allow_changed(allow_changed) -> tuple[str, ...]:
  """``allow_changed``: entry names (``'task'``, ``'task.loss'``, ``'strategy'``, ...) or
  ``'*'`` for every entry."""
  if isinstance(allow_changed, str):
    allow_changed = (allow_changed,)
  try:
    names = tuple(allow_changed)
  except TypeError:
    names = None
  if names is None or not all(isinstance(n, str) and n for n in names):
    raise ValueError("search: `allow_changed` must be a sequence of fingerprint entry names "
                     "(e.g. ('task.optimizer',), ('task',), or '*' for any), got "
                     f"{allow_changed!r}.")
  return names


def _allowed(name: str, allow: tuple[str, ...]) -> bool:
  return any(a == "*" or name == a or name.startswith(a + ".") for a in allow)


def _describe_entry(name: str, saved: dict) -> str:
  """``task.loss`` -> "the task's function `loss` (module.qualname)", for messages."""
  head, _, sub = name.partition(".")
  if head == "task" and sub:
    value = lookup(saved, name)
    qualname = value.split("#")[0] if isinstance(value, str) and "#" in value else ""
    plain = qualname and not any(c in qualname for c in " ()[]{}:,")  # a function's name
    where = f" ({qualname})" if plain else ""
    return f"the task's `{sub}`{where}"
  return f"`{name}`"


def check_resume(saved: dict | None, now: dict, allow_changed=()) -> list[str]:
  """Compares a checkpoint's fingerprint with this run's.

  Returns the entries that differ and are allowed to (the caller records them); raises a
  ``ValueError`` naming every other difference (and the user's functions by their names).
  """
  allow = check_allow_changed(allow_changed)
  if saved is None:
    raise ValueError("search: the checkpoint holds no run fingerprint (it was not written by "
                     "this version of jaxloss.search); start a new `output_dir`.")
  differ = differences(saved, now)
  refused = [name for name in differ if not _allowed(name, allow)]
  if refused:
    details = "; ".join(
        f"{_describe_entry(name, saved)}: checkpoint {lookup(saved, name)!r:.120}, now "
        f"{lookup(now, name)!r:.120}" for name in refused[:6])
    raise ValueError(
        f"search: the checkpoint was written by a different run ({', '.join(refused)}); "
        f"{details}. Resume the same run (everything but `epochs` and the output options), "
        f"use a new `output_dir`, or pass allow_changed=({', '.join(repr(n) for n in refused)},"
        f") to continue from the checkpoint with the change recorded.")
  return differ
