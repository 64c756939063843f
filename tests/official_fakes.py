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
import sys
import types

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


@contextlib.contextmanager
def fake_official_modules():
    """sys.modules entries so pickle can name the stand-ins by their official paths."""
    names = {"torch_utils": None, "torch_utils.persistence": {"_reconstruct_persistent_obj": _reconstruct_persistent_obj},
             "dnnlib": None, "dnnlib.util": {"EasyDict": EasyDict}, "training": None,
             "training.triplane": {"OSGDecoder": OSGDecoder}}
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
