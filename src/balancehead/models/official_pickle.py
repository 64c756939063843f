"""Reading the official EG3D / PanoHead / SphereHead network pickles without running any code in them.

Those files (`network-snapshot-*.pkl`) are plain pickles of `{"G", "D", "G_ema", "augment_pipe",
"training_set_kwargs"}`. Every network class is decorated by the official `torch_utils.persistence`, whose
`__reduce__` replaces the object by a call `_reconstruct_persistent_obj(meta)` with
`meta = {type: "class", version, module_src, class_name, state}`: the official loader *executes* `module_src`
(the class's whole source file) and builds the class from it. A few plain `torch.nn.Module`s
(`torch.nn.Sequential`, EG3D's `OSGDecoder` / `ImportanceRenderer`, ...) are pickled by class reference
and `__dict__`. Tensors are pickled by torch as `_rebuild_tensor_v2(storage, ...)`, each storage as
`torch.storage._load_from_bytes(blob)` where `blob` is a small legacy (non-zip) `torch.save` file.

`RestrictedUnpickler` resolves *every* global through an explicit allow-list, and each allowed name maps
to a function or an inert record class of this module -- never to the named object itself (a few pure
data values excepted: torch dtypes). So an allowed REDUCE can only build data, and anything else
(`os.system`, `builtins.eval`, `subprocess.Popen`, an unknown class, ...) is refused with
`UnsafePickleError` naming the global, before it could run. `module_src` is never executed or imported:
only its SHA-256 is kept. Storage blobs are parsed here too (the legacy `torch.save` layout: magic number,
protocol version, system info, the pickled object with persistent storage ids, the storage keys, then per
storage an int64 element count and its raw little-endian bytes), with the same restricted unpickler.
A `torch.save` zip archive of the same objects (`<name>/data.pkl` + `<name>/data/<key>`) is read the
same way, its storages resolved from the archive.

The result is plain data: dicts, lists, tuples, numbers, strings, CPU tensors, numpy arrays, and
`PersistentObject` / `ModuleRecord` records carrying the stored `state` (a module's `__dict__`:
`_parameters`, `_buffers`, `_modules`, `_init_kwargs`, `rendering_kwargs`, ...).
"""
from __future__ import annotations

import hashlib
import io
import math
import pickle
import pickletools
import re
import struct
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch


class UnsafePickleError(pickle.UnpicklingError):
    """The pickle asks for something that is not plain data; the message names the refused global."""


# ----- inert records --------------------------------------------------------------------------------
class _NoBuild:
    """Objects that a pickle must not BUILD into (no `__setstate__` from the stream)."""

    def __setstate__(self, state):
        raise UnsafePickleError(f"refusing to set the state of a {type(self).__name__} from the pickle")


@dataclass(eq=False)
class PersistentObject(_NoBuild):
    """An object stored through `torch_utils.persistence`: its class name and stored `__dict__`, nothing
    built from its source (only the source's SHA-256 and length are kept)."""
    class_name: str
    version: Any
    state: dict
    module_src_sha256: str = ""
    module_src_chars: int = 0


class ModuleRecord:
    """A plain `torch.nn.Module` subclass pickled by reference (`official_class`), with its `__dict__`."""
    official_class = "?"
    state: dict = {}          # replaced (never mutated) by BUILD

    def __init__(self, *args, **kwargs):
        if args or kwargs:
            raise UnsafePickleError(f"refusing to call {self.official_class} with arguments")
        self.state: dict = {}

    def __setstate__(self, state):
        if isinstance(state, tuple) and len(state) == 2 and state[1] is None:   # (dict, slots) form
            state = state[0]
        if not isinstance(state, dict):
            raise UnsafePickleError(f"{self.official_class}: expected a dict state, got {type(state).__name__}")
        self.state = state

    def __repr__(self) -> str:
        return f"ModuleRecord({self.official_class})"


class _EasyDict(dict):
    """dnnlib.EasyDict (a dict subclass) read as a dict."""

    def __setstate__(self, state):
        if state:
            raise UnsafePickleError("dnnlib.util.EasyDict: unexpected instance state")


@dataclass(eq=False)
class _Tensor(_NoBuild):
    value: torch.Tensor


@dataclass(eq=False)
class _Storage(_NoBuild):
    flat: torch.Tensor            # 1-D tensor of the storage's dtype


@dataclass(eq=False)
class _StorageType(_NoBuild):
    name: str
    dtype: torch.dtype


class _Marker(_NoBuild):
    def __init__(self, name: str):
        self.name = name


class _NumpyDType:
    """numpy.dtype(code, align, copy) + BUILD(state); numeric kinds only (an object dtype is refused)."""

    def __init__(self, code, align=False, copy=False):
        if not isinstance(code, str) or not re.fullmatch(r"[biufc]\d{1,2}|b1|\?", code):
            raise UnsafePickleError(f"numpy.dtype: only numeric dtypes are data, refusing {code!r}")
        self.code, self.order = code, "<"

    def __setstate__(self, state):
        if not (isinstance(state, tuple) and len(state) >= 2 and state[1] in ("<", ">", "|", "=")):
            raise UnsafePickleError(f"numpy.dtype: unexpected state {state!r}")
        if any(s is not None for s in state[2:5]):
            raise UnsafePickleError("numpy.dtype: structured dtypes are refused")
        self.order = state[1]

    def numpy(self) -> np.dtype:
        return np.dtype(("=" if self.order == "|" else self.order) + self.code)


class _NumpyArray:
    """numpy.core.multiarray._reconstruct(ndarray, shape, b) + BUILD((version, shape, dtype, fortran, raw))."""

    def __init__(self):
        self.value: Optional[np.ndarray] = None

    def __setstate__(self, state):
        if not (isinstance(state, tuple) and len(state) == 5 and isinstance(state[2], _NumpyDType)
                and isinstance(state[4], (bytes, bytearray))):
            raise UnsafePickleError("numpy.ndarray: only numeric arrays stored as raw bytes are data")
        _, shape, dtype, fortran, raw = state
        shape = _int_tuple(shape, "numpy.ndarray shape")
        arr = np.frombuffer(bytes(raw), dtype=dtype.numpy())
        if arr.size != math.prod(shape):
            raise UnsafePickleError("numpy.ndarray: byte count does not match the shape")
        self.value = arr.reshape(shape, order="F" if fortran else "C").copy()


# ----- the allowed callables ----------------------------------------------------------------------------
def _int_tuple(v, what: str) -> tuple[int, ...]:
    if not isinstance(v, (tuple, list)) or not all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in v):
        raise UnsafePickleError(f"{what}: expected a tuple of non-negative ints, got {v!r}")
    return tuple(v)


def _check_hooks(hooks) -> None:
    if hooks is not None and not (isinstance(hooks, dict) and not hooks):
        raise UnsafePickleError("tensor backward hooks are code, not data; refusing")


def _strided(storage, offset, size, stride, dtype: Optional[torch.dtype] = None) -> _Tensor:
    if not isinstance(storage, _Storage):
        raise UnsafePickleError(f"tensor rebuild: expected a storage, got {type(storage).__name__}")
    size, stride = _int_tuple(size, "tensor size"), _int_tuple(stride, "tensor stride")
    if len(size) != len(stride) or not isinstance(offset, int) or offset < 0:
        raise UnsafePickleError("tensor rebuild: malformed size/stride/offset")
    flat = storage.flat
    if dtype is not None and dtype != flat.dtype:     # v3: untyped (byte) storage viewed as dtype
        flat = flat.view(torch.uint8).view(dtype)
    extent = 0 if 0 in size else offset + sum((n - 1) * s for n, s in zip(size, stride)) + 1
    if extent > flat.numel():
        raise UnsafePickleError(f"tensor rebuild: view of {extent} elements exceeds its storage of {flat.numel()}")
    return _Tensor(flat.as_strided(size, stride, offset).clone())


def _rebuild_tensor(storage, storage_offset, size, stride):
    return _strided(storage, storage_offset, size, stride)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None):
    _check_hooks(backward_hooks)
    return _strided(storage, storage_offset, size, stride)


def _rebuild_tensor_v3(storage, storage_offset, size, stride, requires_grad, backward_hooks, dtype, metadata=None):
    _check_hooks(backward_hooks)
    if not isinstance(dtype, torch.dtype):
        raise UnsafePickleError("tensor rebuild v3: dtype is not a torch dtype")
    return _strided(storage, storage_offset, size, stride, dtype)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, state=None):
    _check_hooks(backward_hooks)
    if not isinstance(data, _Tensor):
        raise UnsafePickleError("Parameter rebuild: data is not a tensor")
    if state:
        raise UnsafePickleError("Parameter rebuild: unexpected Python state on a parameter")
    return data


_TENSOR_FUNCS = (_rebuild_tensor, _rebuild_tensor_v2, _rebuild_tensor_v3, _rebuild_parameter)


def _rebuild_from_type_v2(func, new_type, args, state):
    if func not in _TENSOR_FUNCS or not (isinstance(new_type, _Marker) and new_type.name in TENSOR_TYPES):
        raise UnsafePickleError("torch._tensor._rebuild_from_type_v2: only plain tensors are data")
    if state:
        raise UnsafePickleError("torch._tensor._rebuild_from_type_v2: unexpected Python state on a tensor")
    return func(*args)


def _reconstruct_persistent_obj(meta):
    if not isinstance(meta, dict) or meta.get("type") != "class" or not isinstance(meta.get("class_name"), str):
        raise UnsafePickleError("torch_utils.persistence._reconstruct_persistent_obj: malformed meta")
    state = meta.get("state") or {}
    if not isinstance(state, dict):
        raise UnsafePickleError(f"persistent {meta['class_name']}: state is not a dict")
    src = meta.get("module_src") or ""
    if not isinstance(src, str):
        raise UnsafePickleError(f"persistent {meta['class_name']}: module_src is not text")
    return PersistentObject(meta["class_name"], meta.get("version"), state,
                            hashlib.sha256(src.encode("utf-8", "surrogatepass")).hexdigest(), len(src))


def _ordered_dict(items=()):
    return dict(items)


def _encode(text, encoding="latin1"):       # protocol-2 pickles write bytes as _codecs.encode(str, "latin1")
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise UnsafePickleError("_codecs.encode: only latin1 text -> bytes is data")
    return text.encode("latin1")


def _numpy_scalar(dtype, data=None):
    if not isinstance(dtype, _NumpyDType) or not isinstance(data, (bytes, bytearray)):
        raise UnsafePickleError("numpy scalar: only numeric scalars stored as raw bytes are data")
    return np.frombuffer(bytes(data), dtype=dtype.numpy())[0].item()


def _numpy_reconstruct(cls, shape, typecode):
    if not (isinstance(cls, _Marker) and cls.name == "numpy.ndarray"):
        raise UnsafePickleError("numpy _reconstruct: only numpy.ndarray is data")
    return _NumpyArray()


def _numpy_frombuffer(buf, dtype, shape, order):     # numpy arrays under pickle protocol 5
    if not isinstance(buf, (bytes, bytearray)) or not isinstance(dtype, _NumpyDType) or order not in ("C", "F"):
        raise UnsafePickleError("numpy _frombuffer: only numeric arrays stored as raw bytes are data")
    arr = _NumpyArray()
    arr.__setstate__((1, shape, dtype, order == "F", buf))
    return arr


def _torch_size(dims=()):
    return _int_tuple(tuple(dims), "torch.Size")


def _frozen(items=()):
    return frozenset(items)


def _set(items=()):
    return set(items)


def _bytearray(data=b"", *rest):
    if rest or not isinstance(data, (bytes, bytearray)):
        raise UnsafePickleError("builtins.bytearray: only bytes are data")
    return bytearray(data)


STORAGE_DTYPES = {
    "FloatStorage": torch.float32, "DoubleStorage": torch.float64, "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16, "LongStorage": torch.int64, "IntStorage": torch.int32,
    "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool, "ComplexFloatStorage": torch.complex64, "ComplexDoubleStorage": torch.complex128,
    "UntypedStorage": torch.uint8,
}
TENSOR_TYPES = ("torch.Tensor", "torch.nn.parameter.Parameter")

# Plain torch.nn.Modules of the official code bases, pickled by class reference (no persistence decorator).
OFFICIAL_PLAIN_MODULES = frozenset({
    "training.triplane.OSGDecoder",                                   # EG3D
    "training.volumetric_rendering.renderer.ImportanceRenderer",       # EG3D
    "training.volumetric_rendering.ray_marcher.MipRayMarcher2",        # EG3D
    "training.volumetric_rendering.ray_sampler.RaySampler",            # EG3D, PanoHead, SphereHead
})


class RestrictedUnpickler(pickle.Unpickler):
    """`pickle.Unpickler` whose globals come only from the allow-list above (see the module docstring).

    `storage_ids`: resolves torch's persistent storage ids (inside a legacy storage blob, or the data.pkl
    of a torch.save zip); without it (an official network pickle has none) a persistent id is refused."""

    def __init__(self, file, storage_ids: Optional[Callable[[tuple], Any]] = None):
        super().__init__(file)
        self._storage_ids = storage_ids
        self._module_classes: dict[str, type] = {}

    def find_class(self, module: str, name: str):
        if module == "__builtin__":     # the Python 2 name protocol 0-2 pickles use
            module = "builtins"
        qual = f"{module}.{name}"
        if qual in ALLOWED_CALLS:
            return ALLOWED_CALLS[qual]
        if qual in TENSOR_TYPES or qual == "numpy.ndarray":
            return _Marker(qual)
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(name, STORAGE_DTYPES[name])
        if module == "torch" and isinstance(vars(torch).get(name), torch.dtype):
            return vars(torch)[name]           # a dtype is a value, not callable (vars(): no lazy imports)
        if qual in OFFICIAL_PLAIN_MODULES or self._is_torch_module(module, name):
            return self._module_class(qual)
        raise UnsafePickleError(f"refusing global {qual!r}: not plain data (only tensors, containers and the "
                                "stored state of official network objects are read; no code is run)")

    @staticmethod
    def _is_torch_module(module: str, name: str) -> bool:
        if not module.startswith("torch.nn.modules.") or not name.isidentifier():
            return False
        cls = vars(torch.nn).get(name)
        return isinstance(cls, type) and issubclass(cls, torch.nn.Module) and cls.__module__ == module

    def _module_class(self, qual: str) -> type:
        if qual not in self._module_classes:
            self._module_classes[qual] = type(qual.rsplit(".", 1)[1], (ModuleRecord,), {"official_class": qual})
        return self._module_classes[qual]

    def persistent_load(self, pid):
        if self._storage_ids is None:
            raise UnsafePickleError(f"refusing persistent id {pid!r} outside a torch storage blob")
        return self._storage_ids(pid)


def _storage_id(pid, length: int) -> tuple[torch.dtype, str, int]:
    """(dtype, key, numel) of torch's ('storage', type, key, location, numel[, view]) persistent id; the
    location (e.g. cuda:0) is ignored: everything is read to the CPU."""
    if not (isinstance(pid, tuple) and len(pid) == length and pid[0] == "storage" and isinstance(pid[1], _StorageType)
            and isinstance(pid[2], str) and isinstance(pid[4], int) and pid[4] >= 0):
        raise UnsafePickleError(f"unexpected persistent id {pid!r}")
    if length == 6 and pid[5] is not None:
        raise UnsafePickleError("storage views of the pre-1.0 torch format are not supported")
    return pid[1].dtype, pid[2], pid[4]


def _flat(raw: bytes, dtype: torch.dtype, numel: int, what: str) -> torch.Tensor:
    size = torch.empty((), dtype=dtype).element_size()
    if len(raw) != numel * size:
        raise UnsafePickleError(f"{what}: {len(raw)} bytes for {numel} elements of {dtype}")
    return torch.frombuffer(bytearray(raw), dtype=dtype) if numel else torch.empty(0, dtype=dtype)


MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
PROTOCOL_VERSION = 1001


def read_legacy_storage(blob) -> _Storage:
    """Parse the legacy `torch.save(storage)` bytes inside `_load_from_bytes`, without torch.load."""
    if not isinstance(blob, (bytes, bytearray)):
        raise UnsafePickleError("torch.storage._load_from_bytes: argument is not bytes")
    f = io.BytesIO(bytes(blob))
    magic = RestrictedUnpickler(f).load()
    if magic != MAGIC_NUMBER:
        raise UnsafePickleError("torch storage blob: not the legacy torch.save format (bad magic number)")
    if RestrictedUnpickler(f).load() != PROTOCOL_VERSION:
        raise UnsafePickleError("torch storage blob: unsupported legacy protocol version")
    sys_info = RestrictedUnpickler(f).load()
    if not isinstance(sys_info, dict) or not sys_info.get("little_endian", False):
        raise UnsafePickleError("torch storage blob: only little-endian storages are supported")
    pending: dict = {}

    def record(pid):
        dtype, key, numel = _storage_id(pid, 6)
        pending[key] = (dtype, numel)
        return ("pending-storage", key)
    obj = RestrictedUnpickler(f, storage_ids=record).load()
    keys = RestrictedUnpickler(f).load()
    if not (isinstance(obj, tuple) and obj[:1] == ("pending-storage",)) or not isinstance(keys, list):
        raise UnsafePickleError("torch storage blob: expected exactly one storage")
    data = {}
    for key in keys:
        if key not in pending:
            raise UnsafePickleError(f"torch storage blob: data for an undeclared storage {key!r}")
        dtype, numel = pending[key]
        (count,) = struct.unpack("<q", f.read(8).ljust(8, b"\xff"))
        if count != numel:
            raise UnsafePickleError(f"torch storage blob: storage {key!r} has {count} elements, its id says {numel}")
        data[key] = _flat(f.read(numel * torch.empty((), dtype=dtype).element_size()), dtype, numel,
                          f"torch storage blob {key!r}")
    if obj[1] not in data:
        raise UnsafePickleError("torch storage blob: storage data missing")
    return _Storage(data[obj[1]])


ALLOWED_CALLS = {
    "torch_utils.persistence._reconstruct_persistent_obj": _reconstruct_persistent_obj,
    "torch._utils._rebuild_tensor": _rebuild_tensor,
    "torch._utils._rebuild_tensor_v2": _rebuild_tensor_v2,
    "torch._utils._rebuild_tensor_v3": _rebuild_tensor_v3,
    "torch._utils._rebuild_parameter": _rebuild_parameter,
    "torch._utils._rebuild_parameter_with_state": _rebuild_parameter,
    "torch._tensor._rebuild_from_type_v2": _rebuild_from_type_v2,
    "torch.storage._load_from_bytes": read_legacy_storage,
    "torch.Size": _torch_size,
    "collections.OrderedDict": _ordered_dict,
    "builtins.set": _set,
    "builtins.frozenset": _frozen,
    "builtins.bytearray": _bytearray,
    "_codecs.encode": _encode,
    "numpy.core.multiarray.scalar": _numpy_scalar,
    "numpy._core.multiarray.scalar": _numpy_scalar,
    "numpy.core.multiarray._reconstruct": _numpy_reconstruct,
    "numpy._core.multiarray._reconstruct": _numpy_reconstruct,
    "numpy.core.numeric._frombuffer": _numpy_frombuffer,
    "numpy._core.numeric._frombuffer": _numpy_frombuffer,
    "numpy.dtype": _NumpyDType,
    "dnnlib.util.EasyDict": _EasyDict,
    "dnnlib.EasyDict": _EasyDict,
}


# ----- plain data out ------------------------------------------------------------------------------------
def _plain(obj, seen: dict):
    key = id(obj)
    if key in seen:
        return seen[key]
    if isinstance(obj, _Tensor):
        out = obj.value
    elif isinstance(obj, _NumpyArray):
        if obj.value is None:
            raise UnsafePickleError("numpy.ndarray without data")
        out = obj.value
    elif isinstance(obj, (_Storage, _StorageType, _Marker, _NumpyDType)):
        raise UnsafePickleError(f"a bare {type(obj).__name__} is not expected in a network pickle")
    elif isinstance(obj, dict):           # _EasyDict included
        out = {}
        seen[key] = out
        for k, v in obj.items():
            out[_plain(k, seen)] = _plain(v, seen)
        return out
    elif isinstance(obj, list):
        out = []
        seen[key] = out
        out.extend(_plain(v, seen) for v in obj)
        return out
    elif isinstance(obj, tuple):
        out = tuple(_plain(v, seen) for v in obj)
    elif isinstance(obj, (set, frozenset)):
        out = type(obj)(_plain(v, seen) for v in obj)
    elif isinstance(obj, PersistentObject):
        out = PersistentObject(obj.class_name, obj.version, {}, obj.module_src_sha256, obj.module_src_chars)
        seen[key] = out
        out.state = _plain(obj.state, seen)
        return out
    elif isinstance(obj, ModuleRecord):
        out = type(obj)()
        seen[key] = out
        out.state = _plain(obj.state, seen)
        return out
    elif obj is None or isinstance(obj, (bool, int, float, complex, str, bytes, bytearray, torch.dtype)):
        out = obj
    else:
        raise UnsafePickleError(f"unexpected {type(obj).__name__} in the unpickled data")
    seen[key] = out
    return out


def loads(data: bytes) -> Any:
    """Plain data of a network pickle held in memory (see `load_network_pickle`)."""
    return _plain(RestrictedUnpickler(io.BytesIO(data)).load(), {})


def _load_torch_zip(path: Path) -> Any:
    """A torch.save zip archive (<name>/data.pkl + <name>/data/<key>), through the same restricted unpickler."""
    with zipfile.ZipFile(path) as zf:
        names = set(zf.namelist())
        pkls = [n for n in names if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(pkls) != 1:
            raise UnsafePickleError(f"{path}: not a torch.save archive (expected one <name>/data.pkl)")
        prefix = pkls[0][: -len("data.pkl")]
        if prefix + "byteorder" in names and zf.read(prefix + "byteorder").strip() != b"little":
            raise UnsafePickleError(f"{path}: only little-endian archives are supported")
        storages: dict[str, _Storage] = {}

        def storage(pid):
            dtype, key, numel = _storage_id(pid, 5)
            if key not in storages:
                name = f"{prefix}data/{key}"
                if name not in names:
                    raise UnsafePickleError(f"{path}: storage {key!r} missing from the archive")
                if zf.getinfo(name).file_size != numel * torch.empty((), dtype=dtype).element_size():
                    raise UnsafePickleError(f"{path}: storage {key!r} size disagrees with its id")
                storages[key] = _Storage(_flat(zf.read(name), dtype, numel, f"{path} storage {key!r}"))
            return storages[key]
        with zf.open(pkls[0]) as f:
            return _plain(RestrictedUnpickler(f, storage_ids=storage).load(), {})


def load_network_pickle(path) -> Any:
    """Plain data of an official network pickle file (or a torch.save zip archive of the same objects);
    raises `UnsafePickleError` naming any refused global."""
    path = Path(path)
    with path.open("rb") as f:
        head = f.read(4)
    if head == b"PK\x03\x04":
        return _load_torch_zip(path)
    with path.open("rb") as f:
        return _plain(RestrictedUnpickler(f).load(), {})


def pickle_globals(blob: bytes) -> list[str]:
    """Every global (`module.name`) a pickle names, read opcode by opcode without loading anything."""
    names, recent, memo = set(), [None, None], {}
    for op, arg, _ in pickletools.genops(io.BytesIO(blob)):
        value = None
        if op.name in ("GLOBAL", "INST"):
            names.add(arg.replace(" ", "."))
        elif op.name in ("SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE"):
            value = arg
        elif op.name in ("BINGET", "LONG_BINGET", "GET"):
            value = memo.get(arg)
        elif op.name == "MEMOIZE":
            memo[len(memo)] = recent[-1]
        elif op.name in ("BINPUT", "LONG_BINPUT", "PUT"):
            memo[arg] = recent[-1]
        elif op.name == "STACK_GLOBAL":
            names.add(f"{recent[-2]}.{recent[-1]}")
        if op.name not in ("MEMOIZE", "FRAME", "BINPUT", "LONG_BINPUT", "PUT"):
            recent = [recent[-1], value]
    return sorted(names)


# ----- reading the stored modules ---------------------------------------------------------------------------
def module_state_dict(obj, prefix: str = "") -> dict[str, torch.Tensor]:
    """`state_dict()` of a stored module: its `_parameters`, persistent `_buffers` and `_modules`, recursively."""
    if not isinstance(obj, (PersistentObject, ModuleRecord)):
        raise TypeError(f"not a stored module: {type(obj).__name__}")
    state = obj.state
    out: dict[str, torch.Tensor] = {}
    for name, value in (state.get("_parameters") or {}).items():
        if value is not None:
            out[prefix + name] = value
    skip = set(state.get("_non_persistent_buffers_set") or ())
    for name, value in (state.get("_buffers") or {}).items():
        if value is not None and name not in skip:
            out[prefix + name] = value
    for name, child in (state.get("_modules") or {}).items():
        if child is not None:
            out.update(module_state_dict(child, f"{prefix}{name}."))
    for k, v in out.items():
        if not isinstance(v, torch.Tensor):
            raise TypeError(f"{k}: stored parameter/buffer is a {type(v).__name__}, not a tensor")
    return out


def module_init_kwargs(obj) -> dict:
    """The constructor keyword arguments a persistent object recorded (`_init_kwargs`)."""
    if not isinstance(obj, PersistentObject):
        raise TypeError(f"not a persistent object: {type(obj).__name__}")
    return dict(obj.state.get("_init_kwargs") or {})


@dataclass
class OfficialNetwork:
    """One network of an official pickle, as plain data."""
    class_name: str
    state_dict: dict[str, torch.Tensor]
    init_kwargs: dict
    rendering_kwargs: dict = field(default_factory=dict)
    attributes: dict = field(default_factory=dict)     # other scalar attributes (e.g. neural_rendering_resolution)


def official_network(obj) -> OfficialNetwork:
    if not isinstance(obj, PersistentObject):
        raise TypeError(f"expected a persistent network object, got {type(obj).__name__}")
    scalars = {k: v for k, v in obj.state.items()
               if not k.startswith("_") and isinstance(v, (bool, int, float, str)) and k != "training"}
    rendering = obj.state.get("rendering_kwargs") or module_init_kwargs(obj).get("rendering_kwargs") or {}
    return OfficialNetwork(obj.class_name, module_state_dict(obj), module_init_kwargs(obj), dict(rendering), scalars)
