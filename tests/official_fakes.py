"""Pickles with the layout of the official EG3D / PanoHead network pickles, built by the tests.

`fake_official_modules` installs stand-ins for the official `torch_utils.persistence`, `dnnlib.util` and
`training.triplane` modules (only while pickling). The stand-in `_reconstruct_persistent_obj` does what the
official one does -- it executes the embedded `module_src` -- and the source the tests embed writes a
marker file when executed, so a loader that runs it is caught. Networks are real `torch.nn.Module`s, so
their own `state_dict()` is the ground truth an extraction must reproduce.
"""
from __future__ import annotations

import contextlib
import copy
import importlib
import sys
import types

import collections

import numpy as np
import torch


class Reduce:
    """Pickles as `fn(*args)` (and BUILD(state) when `state` is given): the shape of a hostile pickle."""

    def __init__(self, fn, args, state=None):
        self.fn, self.args, self.state = fn, args, state

    def __reduce__(self):
        return (self.fn, self.args) if self.state is None else (self.fn, self.args, self.state)


def marker_source(marker) -> str:
    """A module source that leaves `marker` behind when executed, and defines the classes it names."""
    return (f"import pathlib\npathlib.Path({str(marker)!r}).write_text('module_src was executed')\n"
            "class TriPlaneGenerator: pass\nclass Generator: pass\nclass MappingNetwork: pass\n"
            "class FullyConnectedLayer: pass\nclass SuperresolutionHybrid2X: pass\nclass DualDiscriminator: pass\n")


def _reconstruct_persistent_obj(meta):
    """What the official torch_utils.persistence does on load: run the embedded source, build the class."""
    module = types.ModuleType("_imported_module_src")
    exec(meta["module_src"], module.__dict__)  # noqa: S102 -- this is the behaviour the tests guard against
    obj = module.__dict__[meta["class_name"]].__new__(module.__dict__[meta["class_name"]])
    obj.__dict__.update(meta["state"])
    return obj


class EasyDict(dict):
    pass


class Persistent(torch.nn.Module):
    """Pickles like an official `@persistence.persistent_class` object."""
    module_src = ""

    def __init__(self, **kwargs):
        super().__init__()
        self._init_args = ()
        self._init_kwargs = copy.deepcopy(EasyDict(kwargs))

    def __reduce__(self):
        meta = dict(type="class", version=6, module_src=self.module_src, class_name=type(self).__name__,
                    state=dict(self.__dict__))
        return (_reconstruct_persistent_obj, (meta,))


class FullyConnectedLayer(Persistent):
    def __init__(self, i, o):
        super().__init__(in_features=i, out_features=o)
        self.weight = torch.nn.Parameter(torch.randn(o, i))
        self.bias = torch.nn.Parameter(torch.randn(o))
        self.weight_gain = np.float64(1.0 / np.sqrt(i))     # official layers keep numpy scalars


class MappingNetwork(Persistent):
    def __init__(self):
        super().__init__(z_dim=4, w_dim=4, num_layers=2)
        self.fc0, self.fc1 = FullyConnectedLayer(4, 4), FullyConnectedLayer(4, 4)
        self.register_buffer("w_avg", torch.randn(4))


class Generator(Persistent):
    def __init__(self):
        super().__init__(img_resolution=256, img_channels=96)
        self.mapping = MappingNetwork()
        self.block_resolutions = [4, 8]


class OSGDecoder(torch.nn.Module):
    """A plain (not persistent) module, as EG3D's OSGDecoder."""

    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(FullyConnectedLayer(4, 8), torch.nn.Softplus(), FullyConnectedLayer(8, 4))


class SuperresolutionHybrid2X(Persistent):
    def __init__(self):
        super().__init__(channels=4, img_resolution=128)
        self.register_buffer("resample_filter", torch.ones(4, 4) / 16)
        self.register_buffer("scratch", torch.zeros(3), persistent=False)    # not in state_dict()
        self.weight16 = torch.nn.Parameter(torch.arange(6, dtype=torch.float16).reshape(2, 3).t())   # a strided view


class TriPlaneGenerator(Persistent):
    def __init__(self):
        rendering = dict(depth_resolution=48, depth_resolution_importance=48, ray_start=2.25, ray_end=3.3,
                         box_warp=1, c_gen_conditioning_zero=False, c_scale=1.0,
                         superresolution_module="training.superresolution.SuperresolutionHybrid2X")
        super().__init__(z_dim=4, c_dim=25, w_dim=4, img_resolution=128, img_channels=3,
                         mapping_kwargs=EasyDict(num_layers=2), rendering_kwargs=rendering, sr_kwargs={})
        self.backbone = Generator()
        self.superresolution = SuperresolutionHybrid2X()
        self.decoder = OSGDecoder()
        self.rendering_kwargs = rendering
        self.neural_rendering_resolution = 64
        self.z_dim = 4


class DualDiscriminator(Persistent):
    def __init__(self):
        super().__init__(c_dim=25, img_resolution=128, img_channels=3)
        self.fc = FullyConnectedLayer(4, 1)
        self.register_buffer("resample_filter", torch.ones(4, 4))


def network_snapshot(marker, with_d: bool = True) -> dict:
    """The dict an official training loop pickles, with `marker_source(marker)` embedded in every class."""
    Persistent.module_src = marker_source(marker)
    torch.manual_seed(0)
    g = TriPlaneGenerator().requires_grad_(False)
    data = {"G": TriPlaneGenerator(), "G_ema": g, "augment_pipe": None,
            "training_set_kwargs": EasyDict(path="ffhq.zip", resolution=128)}
    data["D"] = DualDiscriminator().requires_grad_(False) if with_d else None
    return data


class LayoutModule:
    """A persistent module of a recorded official layout (scripts/golden/official_pickle_layout.py's JSON
    tree): pickles through `_reconstruct_persistent_obj(meta)` like the official object."""

    def __init__(self, class_name: str, state: dict, module_src: str):
        self.class_name, self.state, self.module_src = class_name, state, module_src

    def __reduce__(self):
        meta = dict(type="class", version=6, module_src=self.module_src, class_name=self.class_name, state=self.state)
        return (_reconstruct_persistent_obj, (meta,))


def _build(node: dict, gen: torch.Generator, module_src: str):
    def tensor(shape, dtype):
        return torch.randn(shape, generator=gen).to(getattr(torch, dtype.split(".")[-1])) * 0.1
    modules = {k: _build(v, gen, module_src) for k, v in node["modules"].items()}
    modules.update({k: None for k in node.get("none_modules", [])})
    state = {"training": False,
             "_parameters": {k: torch.nn.Parameter(tensor(*v), requires_grad=False) for k, v in node["parameters"].items()},
             "_buffers": {k: torch.tensor(node["fixed_buffers"][k]).reshape(v[0]) if k in node.get("fixed_buffers", {})
                          else tensor(*v) for k, v in node["buffers"].items()},
             "_non_persistent_buffers_set": set(node["non_persistent"]),
             "_forward_hooks": collections.OrderedDict(), "_modules": modules, **node["attributes"]}
    if "rendering_kwargs" in node:
        state["rendering_kwargs"] = node["rendering_kwargs"]
    if node["persistent"]:
        state["_init_args"], state["_init_kwargs"] = (), _easy(node["init_kwargs"])
        return LayoutModule(node["class"], state, module_src)
    module, name = node["class"].rsplit(".", 1)      # plain: a real instance of the (stand-in) class
    obj = getattr(sys.modules[module], name).__new__(getattr(sys.modules[module], name))
    obj.__dict__.update(state)
    return obj


def _easy(v):
    return EasyDict({k: _easy(x) for k, x in v.items()}) if isinstance(v, dict) else v


def layout_state_dict(obj, prefix: str = "") -> dict:
    """The state_dict() the official module of a layout snapshot has (ground truth for the reader)."""
    state = obj.state if isinstance(obj, LayoutModule) else obj.__dict__
    out = {prefix + k: v.detach() for k, v in state["_parameters"].items()}
    out.update({prefix + k: v for k, v in state["_buffers"].items() if k not in state["_non_persistent_buffers_set"]})
    for k, m in state["_modules"].items():
        if m is not None:
            out.update(layout_state_dict(m, f"{prefix}{k}."))
    return out


def layout_plain_classes(layout: dict) -> set[str]:
    def walk(node):
        own = set() if node["persistent"] else {node["class"]}
        return own.union(*(walk(c) for c in node["modules"].values()))
    return set().union(*(walk(n) for n in layout["networks"].values()))


def layout_snapshot(layout: dict, marker, seed: int = 0) -> dict:
    """A network snapshot of a recorded official layout; build it inside
    `fake_official_modules(layout_plain_classes(layout))`."""
    gen = torch.Generator().manual_seed(seed)
    nets = {name: _build(node, gen, marker_source(marker)) for name, node in layout["networks"].items()}
    return {"G": nets["G_ema"], "G_ema": nets["G_ema"], "D": nets.get("D"), "augment_pipe": None,
            "training_set_kwargs": EasyDict(resolution=128)}


@contextlib.contextmanager
def fake_official_modules(plain_classes=()):
    """sys.modules entries so pickle can name the stand-ins by their official paths (plus stand-in classes
    for the given plain `module.Class` names that torch does not define)."""
    names = {"torch_utils": None, "torch_utils.persistence": {"_reconstruct_persistent_obj": _reconstruct_persistent_obj},
             "dnnlib": None, "dnnlib.util": {"EasyDict": EasyDict}, "training": None,
             "training.triplane": {"OSGDecoder": OSGDecoder}}
    for qual in plain_classes:
        module, name = qual.rsplit(".", 1)
        if module.startswith("torch."):
            importlib.import_module(module)
            continue
        parts = module.split(".")
        for i in range(1, len(parts)):
            names.setdefault(".".join(parts[:i]), None)
        names[module] = {**(names.get(module) or {}), name: type(name, (torch.nn.Module,), {})}
    saved = {n: sys.modules.get(n) for n in names}
    try:
        for name, attrs in names.items():
            mod = types.ModuleType(name)
            for k, v in (attrs or {}).items():
                v.__module__, v.__qualname__ = name, k
                setattr(mod, k, v)
            sys.modules[name] = mod
        yield
    finally:
        for name, old in saved.items():
            if old is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = old
