"""The restricted unpickler reads official-layout network pickles as plain data and runs nothing in them."""
from __future__ import annotations

import builtins
import collections
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch

from balancehead.cli import main as cli_main
from balancehead.models.official_import import generator_rendering_kwargs, read_official_networks
from balancehead.models.official_pickle import (ModuleRecord, PersistentObject, UnsafePickleError, loads,
                                                load_network_pickle, module_state_dict, pickle_globals)
from official_fakes import Reduce, fake_official_modules, network_snapshot


@pytest.fixture()
def snapshot(tmp_path):
    marker = tmp_path / "module_src_ran"
    data = network_snapshot(marker)
    with fake_official_modules():
        blob = pickle.dumps(data, protocol=4)
    path = tmp_path / "network-snapshot.pkl"
    path.write_bytes(blob)
    assert not marker.exists()
    return path, data, marker


def test_the_fake_layout_is_the_official_one_and_plain_pickle_would_run_its_source(snapshot):
    path, _, marker = snapshot
    names = set(pickle_globals(path.read_bytes()))
    assert {"torch_utils.persistence._reconstruct_persistent_obj", "torch._utils._rebuild_tensor_v2",
            "torch._utils._rebuild_parameter", "torch.storage._load_from_bytes", "dnnlib.util.EasyDict",
            "training.triplane.OSGDecoder", "torch.nn.modules.container.Sequential"} <= names
    assert any(n.endswith(".scalar") for n in names)          # numpy scalars in the stored state
    with fake_official_modules():                               # the control: an ordinary unpickler executes module_src
        pickle.loads(path.read_bytes())
    assert marker.exists()


def test_reads_state_dicts_and_kwargs_without_running_module_src(snapshot):
    path, data, marker = snapshot
    nets = read_official_networks(path)
    assert not marker.exists()
    assert not {"torch_utils", "torch_utils.persistence", "dnnlib", "training", "training.triplane"} & set(sys.modules)
    for name in ("G_ema", "D"):
        truth = data[name].state_dict()
        got = nets[name].state_dict
        assert list(got) == list(truth)                                    # same keys, same order
        for k in truth:
            assert got[k].dtype == truth[k].dtype and got[k].shape == truth[k].shape and torch.equal(got[k], truth[k]), k
    g = nets["G_ema"]
    assert "superresolution.scratch" not in g.state_dict                 # non-persistent buffer
    assert not data["G_ema"].superresolution.weight16.is_contiguous()      # a strided view came through (checked above)
    assert g.class_name == "TriPlaneGenerator" and nets["D"].class_name == "DualDiscriminator"
    assert g.init_kwargs["mapping_kwargs"] == {"num_layers": 2} and type(g.init_kwargs["mapping_kwargs"]) is dict
    assert g.init_kwargs["c_dim"] == 25
    rk = generator_rendering_kwargs(g)
    assert rk["superresolution_module"].endswith("SuperresolutionHybrid2X") and rk["neural_rendering_resolution"] == 64


def test_a_bare_pickled_generator_is_read_as_g_ema(tmp_path):
    data = network_snapshot(tmp_path / "ran", with_d=False)
    with fake_official_modules():
        (tmp_path / "g.pkl").write_bytes(pickle.dumps(data["G_ema"], protocol=4))
    nets = read_official_networks(tmp_path / "g.pkl")
    assert set(nets) == {"G_ema"} and set(nets["G_ema"].state_dict) == set(data["G_ema"].state_dict())


def test_a_torch_save_zip_archive_is_read_the_same_way(tmp_path):
    marker = tmp_path / "module_src_ran"
    data = network_snapshot(marker)
    with fake_official_modules():
        torch.save(data, tmp_path / "net.pt")
    nets = read_official_networks(tmp_path / "net.pt")
    truth = data["G_ema"].state_dict()
    assert list(nets["G_ema"].state_dict) == list(truth)
    assert all(torch.equal(nets["G_ema"].state_dict[k], truth[k]) for k in truth) and not marker.exists()
    torch.save({"G_ema": Reduce(os.system, (f"touch {marker}",))}, tmp_path / "evil.pt")
    with pytest.raises(UnsafePickleError, match="system"):
        load_network_pickle(tmp_path / "evil.pt")
    assert not marker.exists()


def test_plain_data_records(snapshot):
    path, data, marker = snapshot
    out = load_network_pickle(path)
    assert set(out) == {"G", "G_ema", "D", "augment_pipe", "training_set_kwargs"}
    assert out["training_set_kwargs"] == {"path": "ffhq.zip", "resolution": 128}
    g = out["G_ema"]
    assert isinstance(g, PersistentObject) and len(g.module_src_sha256) == 64 and g.module_src_chars > 0
    decoder = g.state["_modules"]["decoder"]
    assert isinstance(decoder, ModuleRecord) and decoder.official_class == "training.triplane.OSGDecoder"
    fc = g.state["_modules"]["backbone"].state["_modules"]["mapping"].state["_modules"]["fc0"]
    assert isinstance(fc.state["weight_gain"], float) and fc.state["weight_gain"] == pytest.approx(0.5)
    assert set(module_state_dict(decoder)) == {"net.0.weight", "net.0.bias", "net.2.weight", "net.2.bias"}
    assert not marker.exists()


@pytest.mark.parametrize("proto", [2, 5])
def test_other_pickle_protocols(tmp_path, proto):
    marker = tmp_path / "ran"
    data = network_snapshot(marker, with_d=False)
    with fake_official_modules():
        blob = pickle.dumps(data, protocol=proto)
    out = loads(blob)
    assert torch.equal(out["G_ema"].state["_modules"]["backbone"].state["_modules"]["mapping"].state["_buffers"]["w_avg"],
                       data["G_ema"].backbone.mapping.w_avg)
    assert out["D"] is None and not marker.exists()


# ----- hostile pickles ------------------------------------------------------------------------------------
def _hostile(marker):
    touch = f"touch {marker}"
    return {
        "os.system": (Reduce(os.system, (touch,)), {"posix.system", "os.system"}),
        "builtins.eval": (Reduce(builtins.eval, (f"open({str(marker)!r}, 'w')",)), {"builtins.eval"}),
        "subprocess.Popen": (Reduce(subprocess.Popen, (["touch", str(marker)],)), {"subprocess.Popen"}),
        "unknown class": (Reduce(collections.Counter, ("abc",)), {"collections.Counter"}),
        "builtins.getattr": (Reduce(getattr, ("text", "upper")), {"builtins.getattr"}),
        "torch.load": (Reduce(torch.load, (str(marker),)), {"torch.serialization.load"}),
        "nested in a state dict": ({"G_ema": Reduce(_persistent_stub(), ({"type": "class", "class_name": "X", "version": 6,
                                    "module_src": "", "state": {"_parameters": {"w": Reduce(os.system, (touch,))}}},))},
                                   {"posix.system", "os.system"}),
    }


def _persistent_stub():
    from official_fakes import _reconstruct_persistent_obj
    return _reconstruct_persistent_obj


@pytest.mark.parametrize("case", ["os.system", "builtins.eval", "subprocess.Popen", "unknown class",
                                  "builtins.getattr", "torch.load", "nested in a state dict"])
def test_hostile_pickles_are_refused_naming_the_global(tmp_path, case):
    marker = tmp_path / "pwned"
    obj, names = _hostile(marker)[case]
    with fake_official_modules():
        blob = pickle.dumps(obj, protocol=4)
    with pytest.raises(UnsafePickleError) as err:
        loads(blob)
    assert any(repr(n) in str(err.value) for n in names), str(err.value)
    assert not marker.exists()


def test_protocol0_posix_system_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    blob = f"cposix\nsystem\n(Vtouch {marker}\ntR.".encode()
    with pytest.raises(UnsafePickleError, match="'posix.system'"):
        loads(blob)
    assert not marker.exists()


def test_tensor_tricks_are_refused():
    storage = torch.ones(2)._typed_storage()
    oob = Reduce(torch._utils._rebuild_tensor_v2, (storage, 0, (100,), (1,), False, collections.OrderedDict()))
    with pytest.raises(UnsafePickleError, match="exceeds its storage"):
        loads(pickle.dumps(oob, protocol=4))
    built = Reduce(torch._utils._rebuild_tensor_v2, (storage, 0, (2,), (1,), False, collections.OrderedDict()),
                   state=(storage, 0, (100,), (1,)))
    with pytest.raises(UnsafePickleError, match="refusing to set the state"):
        loads(pickle.dumps(built, protocol=4))
    with pytest.raises(UnsafePickleError, match="only numeric"):
        loads(pickle.dumps(np.array([1, "a"], dtype=object), protocol=4))
    with pytest.raises(UnsafePickleError, match="persistent id"):
        loads(b"\x80\x02X\x01\x00\x00\x00aQ.")


def test_cli_refuses_a_hostile_file(tmp_path, capsys):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(pickle.dumps({"G_ema": Reduce(os.system, (f"touch {marker}",))}, protocol=4))
    assert cli_main(["import-checkpoint", str(evil), "--kind", "eg3d", "--out", str(tmp_path / "out")]) == 2
    assert "system" in capsys.readouterr().err
    assert not marker.exists() and not (tmp_path / "out").exists()
