"""Ops: references against closed forms and gradcheck; the compiled C++ build against the
references (forward, gradients, double backward); the build_ops stage report."""
import importlib.util
import itertools
import json
import logging
import math
import os
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from balancehead import ops
from balancehead.ops import loader
from balancehead.ops.check import compare_low_precision, compare_with_reference
from balancehead.stages.build_ops import BuildOpsConfig, build as build_ops_main


@pytest.fixture(scope="session")
def built(tmp_path_factory):
    """One C++ build per test session (CUDA compile belongs to the stage, not the tests)."""
    out = tmp_path_factory.mktemp("ops_build")
    report = build_ops_main(BuildOpsConfig(build_cuda="no"), out)
    module = loader.load_built_ops(out)
    return out, report, module


def _rand(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


# ---------------- references ----------------

def test_bias_act_reference_gradcheck_all_activations():
    for act in ops.ACTIVATIONS:
        x, b = _rand(2, 3, 4, seed=1).requires_grad_(), _rand(3, seed=2).requires_grad_()
        assert torch.autograd.gradcheck(lambda x, b: ops.bias_act_reference(x, b, act=act, clamp=5.0), (x, b))


def test_bias_act_reference_values():
    x = torch.tensor([[-1.0, 2.0]])
    y = ops.bias_act_reference(x, torch.tensor([0.5, -0.5]), act="lrelu", gain=1.0)
    assert torch.allclose(y, torch.tensor([[-0.1, 1.5]]))
    assert ops.bias_act_reference(torch.tensor([10.0]), act="relu", gain=1.0, clamp=3.0).item() == 3.0


def test_upfirdn2d_reference_is_identity_for_delta_and_keeps_constants():
    x = _rand(1, 2, 5, 6)
    delta = torch.ones(1, 1)
    assert torch.equal(ops.upfirdn2d_reference(x, delta), x)
    const = torch.ones(1, 1, 8, 8, dtype=torch.float64)
    f = ops.make_filter().double()
    up = ops.upsample2d(const, f, impl="ref")
    down = ops.downsample2d(const, f, impl="ref")
    assert up.shape[-1] == 16 and down.shape[-1] == 4
    assert torch.allclose(up[..., 2:-2, 2:-2], torch.ones(1, dtype=torch.float64), atol=1e-12)  # interior keeps the mean
    assert torch.allclose(down[..., 1:-1, 1:-1], torch.ones(1, dtype=torch.float64), atol=1e-12)


def _upfirdn2d_by_definition(x, f, up, down, pad, flip, gain):
    """Zero insertion, pad/crop, correlation with the flipped filter, subsampling: literally."""
    n, c, h, w = x.shape
    u = x.new_zeros(n, c, h * up, w * up)
    u[:, :, ::up, ::up] = x
    x0, x1, y0, y1 = pad
    u = F.pad(u, [max(x0, 0), max(x1, 0), max(y0, 0), max(y1, 0)])
    u = u[:, :, max(-y0, 0): u.shape[2] - max(-y1, 0), max(-x0, 0): u.shape[3] - max(-x1, 0)]
    g = (f if flip else f.flip([0, 1])) * gain
    return F.conv2d(u, g[None, None].repeat(c, 1, 1, 1), groups=c)[:, :, ::down, ::down]


@pytest.mark.parametrize("up,down,pad,flip,taps", [
    (2, 1, (2, 1, 2, 1), False, (4, 4)), (2, 1, (1, 1, 1, 1), True, (3, 3)), (4, 1, (3, -1, -2, 4), False, (4, 4)),
    (1, 2, (1, 1, 1, 1), False, (4, 4)), (2, 2, (-1, 2, 0, 1), True, (5, 5)), (3, 2, (0, 0, 0, 0), False, (1, 1)),
])
def test_upfirdn2d_reference_matches_its_definition(up, down, pad, flip, taps):
    """The reference uses conv_transpose2d / strided conv2d (no zero-inserted tensor): same numbers."""
    g = torch.Generator().manual_seed(up * 10 + down)
    x = torch.randn(2, 3, 7, 6, generator=g, dtype=torch.float64)
    f = torch.rand(*taps, generator=g, dtype=torch.float64)
    expected = _upfirdn2d_by_definition(x, f, up, down, pad, flip, 1.7)
    got = ops.upfirdn2d_reference(x, f, up=up, down=down, padding=pad, flip_filter=flip, gain=1.7)
    assert got.shape == expected.shape
    assert torch.allclose(got, expected, atol=1e-12)


def test_upfirdn2d_reference_matches_strided_conv_and_gradcheck():
    x = _rand(1, 1, 7, 7).requires_grad_()
    f = torch.rand(3, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    y = ops.upfirdn2d_reference(x, f, down=2, padding=1, flip_filter=True)
    assert torch.allclose(y, F.conv2d(x, f[None, None], stride=2, padding=1))
    assert torch.autograd.gradcheck(lambda x: ops.upfirdn2d_reference(x, f, up=2, down=1, padding=(2, 1, 1, 2)), (x,))


def test_grid_sample_reference_matches_torch_and_is_twice_differentiable():
    x = _rand(2, 3, 5, 4, seed=4).requires_grad_()
    grid = (torch.rand(2, 3, 6, 2, generator=torch.Generator().manual_seed(5), dtype=torch.float64) * 2.2 - 1.1)
    grid.requires_grad_()
    ref = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    assert torch.allclose(ops.grid_sample_reference(x, grid), ref, atol=1e-12)
    assert torch.autograd.gradcheck(ops.grid_sample_reference, (x, grid))
    assert torch.autograd.gradgradcheck(lambda x: ops.grid_sample_reference(x, grid.detach()), (x,))


def test_conv2d_reference_gradgradcheck():
    x, w = _rand(1, 2, 4, 4, seed=6).requires_grad_(), _rand(3, 2, 3, 3, seed=7).requires_grad_()
    assert torch.autograd.gradgradcheck(lambda x, w: ops.conv2d_reference(x, w, padding=1), (x, w))


def test_without_build_dir_ops_use_reference(monkeypatch):
    monkeypatch.delenv(loader.ENV_VAR, raising=False)
    assert loader.load_built_ops() is None
    x = _rand(2, 3)
    assert torch.equal(ops.bias_act(x, act="relu"), ops.bias_act_reference(x, act="relu"))


def test_first_order_grid_sample_without_build_is_atens_and_equals_the_reference(monkeypatch):
    """double_backward=False (the generator's plane lookups) runs ATen's grid_sample when nothing is
    compiled: the reference's values and gradients to float rounding; 16-bit planes and the default
    keep the reference, whose double backward exists."""
    monkeypatch.delenv(loader.ENV_VAR, raising=False)
    g = torch.Generator().manual_seed(5)
    planes = torch.randn(3, 4, 9, 7, generator=g)
    grid = torch.rand(3, 1, 500, 2, generator=g) * 2.4 - 1.2
    dy = torch.randn(3, 4, 1, 500, generator=g)
    outs = []
    for kw in ({"double_backward": False}, {}):
        x, gr = planes.clone().requires_grad_(), grid.clone().requires_grad_()
        y = ops.grid_sample(x, gr, **kw)
        outs.append((y, *torch.autograd.grad(y, (x, gr), dy, create_graph=not kw)))
    (y_aten, dx_aten, dg_aten), (y_ref, dx_ref, dg_ref) = outs
    assert "GridSampler2DBackward" in type(y_aten.grad_fn).__name__ and y_ref.grad_fn is not y_aten.grad_fn
    assert torch.allclose(y_aten, y_ref, atol=1e-6) and torch.allclose(dx_aten, dx_ref, atol=1e-5)
    assert torch.allclose(dg_aten, dg_ref, rtol=1e-4, atol=1e-4)
    assert dx_ref.requires_grad                                   # the default stays twice differentiable
    half = ops.grid_sample(planes.bfloat16(), grid, double_backward=False)
    assert half.dtype == torch.bfloat16 and torch.allclose(half.float(), y_ref.detach(), atol=5e-2)


def test_conv2d_auto_is_atens_even_with_compiled_ops(built, monkeypatch):
    """impl="auto" runs ATen's convolution (faster on either device, see conv2d_gradfix); the extension
    only when asked for."""
    monkeypatch.setenv(loader.ENV_VAR, str(built[0]))
    x, w = _rand(1, 2, 5, 5).requires_grad_(), _rand(3, 2, 3, 3, seed=2)
    assert loader.compiled_for(x) is built[2]
    assert type(ops.conv2d(x, w, padding=1).grad_fn).__name__.startswith("ConvolutionBackward")
    assert "_Conv2d" in type(ops.conv2d(x, w, padding=1, impl="compiled").grad_fn).__name__


def test_loader_resolves_the_build_dir_once(built, monkeypatch):
    """An op call must not resolve paths or import anything: one lookup per value of the variable."""
    out, _, module = built
    monkeypatch.setenv(loader.ENV_VAR, str(out))
    x = _rand(4)
    assert loader.compiled_for(x) is module
    misses = loader._load_from_env.cache_info().misses
    resolves = []
    monkeypatch.setattr(loader.Path, "resolve", lambda self, *a, **k: resolves.append(self) or self)
    for _ in range(20):
        assert loader.compiled_for(x) is module
        ops.bias_act(x, act="relu")
    assert resolves == [] and loader._load_from_env.cache_info().misses == misses


def test_loader_never_imports_an_extension_whose_check_failed(built, tmp_path, caplog):
    """The report's numerical check gates the import: failed -> reference ops and a warning naming the
    report; an unreadable report trusts nothing; no report (a build by hand) is trusted."""
    good = tmp_path / "good"
    shutil.copytree(built[0], good)
    assert loader.load_built_ops(good) is not None
    report = json.loads((good / "report.json").read_text())
    report["extensions"][0]["check"]["passed"] = False
    variants = {"failed": json.dumps(report), "torn": '{"extensions": [', "none": None}
    for name, text in variants.items():
        d = tmp_path / name                      # a new directory each: the loader caches per directory
        shutil.copytree(good, d)
        if text is None:
            (d / "report.json").unlink()
        else:
            (d / "report.json").write_text(text)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="balancehead.ops"):
            module = loader.load_built_ops(d)
        assert (module is None) == (name != "none"), name
        if name == "failed":
            assert "failed the numerical check" in caplog.text and str(d / "report.json") in caplog.text
        if name == "torn":
            assert "unreadable" in caplog.text


def test_a_build_that_fails_its_check_is_reported_and_not_loaded(built, tmp_path, monkeypatch):
    """End to end: build_ops with an impossible tolerance records the failure; the loader refuses it."""
    from balancehead.stages import build_ops

    out = tmp_path / "ops"
    shutil.copytree(built[0], out)
    # the session's build (already compiled and loaded) stands for the compile step; check, report and
    # loader run for real
    monkeypatch.setattr(build_ops.ops_build, "build_cpu_extension", lambda out_dir, verbose=False: built[2])
    monkeypatch.setattr(build_ops, "TOLERANCE", -1.0)
    report = build_ops_main(BuildOpsConfig(build_cuda="no"), out)
    cpu = report["extensions"][0]
    assert cpu["status"] == "ok" and cpu["check"]["passed"] is False and not report["ok"]
    assert loader.refused_extensions(out).keys() == {"balancehead_ops_cpu"}
    assert loader.load_built_ops(out) is None


def test_loader_returns_none_for_empty_dir(tmp_path):
    assert loader.load_built_ops(tmp_path) is None


# ---------------- compiled C++ build ----------------

def test_build_report(built):
    out, report, module = built
    on_disk = json.loads((out / "report.json").read_text())
    assert on_disk == json.loads(json.dumps(report))
    cpu, cuda = report["extensions"]
    assert cpu["status"] == "ok" and cpu["check"]["passed"] and report["ok"]
    assert cuda["status"] == "skipped" and cuda["reason"] == "build_cuda=no"
    assert report["versions"]["torch"] == torch.__version__ and report["versions"]["gcc"]
    assert module is not None and not module.has_cuda_kernels()


def test_compiled_matches_reference_forward_and_grad(built):
    errors = compare_with_reference(built[2], seed=11)
    for name, err in errors.items():
        assert err["forward"] < 1e-10 and err["grad"] < 1e-10, (name, err)


def test_compiled_float32_matches_reference(built):
    errors = compare_with_reference(built[2], dtype=torch.float32, seed=12)
    for name, err in errors.items():
        assert err["forward"] < 1e-5 and err["grad"] < 1e-4, (name, err)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_compiled_16bit_runs_compiled_and_matches_reference(built, dtype):
    """The C++ twins take float16/bfloat16 (accumulating in float32), so mixed precision does not
    fall back to the references; results stay within a few 16-bit roundings of float64."""
    x = _rand(2, 3).to(dtype)
    assert loader.compiled_for(x) is None or loader.compiled_for(x) is built[2]  # dtype is accepted
    tol = 1e-2 if dtype == torch.float16 else 4e-2
    for name, err in compare_low_precision(built[2], dtype, seed=13).items():
        assert err["forward"] < tol and err["grad"] < tol, (name, err)


def test_compiled_accepts_16bit_in_loader(built, monkeypatch):
    monkeypatch.setenv(loader.ENV_VAR, str(built[0]))
    for dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
        assert loader.compiled_for(torch.zeros(1, dtype=dtype)) is built[2]
    assert loader.compiled_for(torch.zeros(1, dtype=torch.int64)) is None


# every (up, down) the models use -- and their adjoints -- with paddings and crops; (2, 2) is not fixed
_RESAMPLINGS = [(1, 1), (2, 1), (1, 2), (2, 2)]
_PADDINGS = [(0, 0, 0, 0), (2, 1, 2, 1), (1, 2, 3, 0), (-1, 2, 2, -1), (3, 3, 3, 3)]


def _fixed_vs_general(module, device, dtype, shape, seed):
    """-> [(case, input, fixed output, general output)] over resamplings, paddings and flips."""
    f = ops.make_filter(device=device)
    g = torch.Generator().manual_seed(seed)
    out = []
    for (up, down), pad, flip in itertools.product(_RESAMPLINGS, _PADDINGS, (False, True)):
        x = torch.randn(*shape, generator=g).to(device, dtype)
        args = (x, f, up, up, down, down, *pad, flip, 1.7)
        out.append(((up, down, pad, flip), x, module.upfirdn2d(*args), module.upfirdn2d_general(*args)))
    return out


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16, torch.bfloat16])
def test_upfirdn2d_fixed_size_path_equals_the_general_loop_exactly(built, dtype):
    """The unrolled 4x4 kernels visit the same taps in the same order as the general loop: the same bits."""
    for case, _, fixed, general in _fixed_vs_general(built[2], "cpu", dtype, (2, 3, 7, 6), seed=5):
        assert fixed.dtype == dtype and torch.equal(fixed, general), case
    ref = ops.upfirdn2d_reference(_rand(2, 3, 7, 6), ops.make_filter().double(), up=2, padding=(1, 2, 3, 0), gain=1.7)
    got = built[2].upfirdn2d(_rand(2, 3, 7, 6), ops.make_filter(), 2, 2, 1, 1, 1, 2, 3, 0, False, 1.7)
    assert torch.allclose(got, ref, atol=1e-12)


def test_grid_sample_gather_backward_equals_direct_with_heavy_sharing(built):
    """Many samples on few texels (the contended case), points outside and on edges too."""
    module = built[2]
    g = torch.Generator().manual_seed(21)
    planes = torch.randn(3, 5, 4, 3, generator=g, dtype=torch.float64)
    grid = torch.rand(3, 50, 40, 2, generator=g, dtype=torch.float64) * 2.6 - 1.3
    grid[0, 0, :4] = torch.tensor([[-1.0, -1.0], [1.0, 1.0], [5.0, 0.0], [float("inf"), 0.0]], dtype=torch.float64)
    dy = torch.randn(3, 5, 50, 40, generator=g, dtype=torch.float64)
    d_direct = module.grid_sample_backward(dy, planes, grid, 0)
    d_gather = module.grid_sample_backward(dy, planes, grid, 1)
    assert torch.allclose(d_direct[0], d_gather[0], atol=1e-12)
    assert torch.equal(d_direct[1], d_gather[1])
    x, gr = planes.clone().requires_grad_(), grid[:, 1:].clone().requires_grad_()
    ref = torch.autograd.grad(ops.grid_sample_reference(x, gr), (x, gr), dy[:, :, 1:])
    x2, gr2 = planes.clone().requires_grad_(), grid[:, 1:].clone().requires_grad_()
    cmp = torch.autograd.grad(ops.grid_sample(x2, gr2, module=module, backward="gather"), (x2, gr2), dy[:, :, 1:])
    assert all(torch.allclose(a, b, atol=1e-10) for a, b in zip(ref, cmp))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16, torch.bfloat16])
def test_grid_sample_channels_last_kernels_equal_nchw_exactly(built, dtype):
    """The planes' layout picks the kernels; the loops and their sums are the same, so the bits are too.
    Output and d input come back in the input's layout; points outside, on edges and shared included."""
    module = built[2]
    g = torch.Generator().manual_seed(23)
    planes = torch.randn(3, 5, 7, 6, generator=g, dtype=torch.float64).to(dtype)
    grid = torch.rand(3, 4, 9, 2, generator=g, dtype=torch.float64) * 2.6 - 1.3
    grid[0, 0, :3] = torch.tensor([[-1.0, -1.0], [1.0, 1.0], [5.0, 0.0]], dtype=torch.float64)
    grid[1, :, 4:] = grid[1, :, 3:4]
    planes_cl = planes.contiguous(memory_format=torch.channels_last)
    y, y_cl = module.grid_sample_forward(planes, grid), module.grid_sample_forward(planes_cl, grid)
    assert y.is_contiguous() and y_cl.is_contiguous(memory_format=torch.channels_last) and not y_cl.is_contiguous()
    assert torch.equal(y, y_cl)
    dy = torch.randn(y.shape, generator=g, dtype=torch.float64).to(dtype)
    for mode in (0, 1):
        d_input, d_grid = module.grid_sample_backward(dy, planes, grid, mode)
        d_input_cl, d_grid_cl = module.grid_sample_backward(dy.contiguous(memory_format=torch.channels_last), planes_cl,
                                                            grid, mode)
        assert d_input_cl.is_contiguous(memory_format=torch.channels_last) and d_input_cl.dtype == dtype, mode
        assert torch.equal(d_input, d_input_cl) and torch.equal(d_grid, d_grid_cl), mode


def test_grid_sample_layouts_through_autograd_match_the_reference(built):
    """ops.grid_sample's `layout` with both backwards, gradients to planes and grid; 40 channels take the
    CUDA lanes' second round; an unknown layout names the choices."""
    g = torch.Generator().manual_seed(24)
    planes = torch.randn(2, 40, 6, 5, generator=g, dtype=torch.float64)
    grid = torch.rand(2, 3, 7, 2, generator=g, dtype=torch.float64) * 2.2 - 1.1
    x, gr = planes.clone().requires_grad_(), grid.clone().requires_grad_()
    ref_out = ops.grid_sample_reference(x, gr)
    ref = torch.autograd.grad(ref_out.square().sum(), (x, gr))
    for layout in ("channels_last", "nchw"):
        for backward in ("direct", "gather"):
            x, gr = planes.clone().requires_grad_(), grid.clone().requires_grad_()
            out = ops.grid_sample(x, gr, module=built[2], backward=backward, layout=layout)
            assert out.is_contiguous() == (layout == "nchw")
            got = torch.autograd.grad(out.square().sum(), (x, gr))
            assert torch.allclose(out, ref_out, atol=1e-13), (layout, backward)
            assert all(torch.allclose(a, b, atol=1e-12) for a, b in zip(got, ref)), (layout, backward)
    for kw in ({"module": built[2]}, {"impl": "ref"}):   # checked whether or not a build is used
        with pytest.raises(ValueError, match="channels_last"):
            ops.grid_sample(planes, grid, layout="nhwc", **kw)
        with pytest.raises(ValueError, match="gather"):
            ops.grid_sample(planes, grid, backward="atomic", **kw)


@pytest.mark.parametrize("representation", ["triplane", "trigrid", "hyplane", "sphere", "sphere_dual"])
def test_generator_with_compiled_ops_equals_the_reference_ops(built, monkeypatch, representation):
    """End to end through a tiny generator (float32, as the mapping computes): the compiled ops
    (channels-last plane lookups among them, whose output the representations reshape and average) give
    the reference's images and parameter gradients to float32 rounding."""
    import numpy as np

    from balancehead.camera import camera_label
    from balancehead.models import Generator, GeneratorConfig

    G = Generator(GeneratorConfig.tiny(representation=representation, n_coarse=6, n_importance=6))
    z = torch.randn(2, 32, generator=torch.Generator().manual_seed(3))
    cam = torch.from_numpy(np.stack([camera_label(y, 10.0) for y in (0.0, 120.0)])).float()

    def run():
        G.zero_grad(set_to_none=True)
        out = G(z, cam, cam, noise_mode="const")
        (out.image.square().mean() + out.image_raw.mean() + out.depth.mean()).backward()
        return out.image.detach(), {n: p.grad.clone() for n, p in G.named_parameters() if p.grad is not None}

    monkeypatch.delenv(loader.ENV_VAR, raising=False)
    ref_image, ref_grads = run()
    monkeypatch.setenv(loader.ENV_VAR, str(built[0]))
    assert loader.compiled_for(z) is built[2]
    image, grads = run()
    assert torch.allclose(image, ref_image, atol=1e-5)
    assert grads.keys() == ref_grads.keys() and any("decoder" in n for n in grads)
    for name, g in grads.items():
        scale = ref_grads[name].abs().max().clamp_min(1e-6)
        assert float((g - ref_grads[name]).abs().max() / scale) < 1e-4, name


def test_sampling_layout_stores_planes_channels_last_once(built, monkeypatch):
    """ops.sampling_layout: same values and shape, channels innermost, so the (B*P, C, H, W) view the
    lookup takes is channels-last without a copy; a no-op on planes already so stored and without
    compiled ops; the gradient passes through."""
    planes = torch.randn(2, 3, 4, 5, 6, requires_grad=True)
    monkeypatch.delenv(loader.ENV_VAR, raising=False)
    assert ops.sampling_layout(planes) is planes
    monkeypatch.setenv(loader.ENV_VAR, str(built[0]))
    assert ops.sampling_layout(planes, layout="nchw") is planes
    out = ops.sampling_layout(planes)
    assert out.shape == planes.shape and torch.equal(out, planes) and out.stride(2) == 1
    assert out.reshape(6, 4, 5, 6).is_contiguous(memory_format=torch.channels_last)
    assert ops.sampling_layout(out).data_ptr() == out.data_ptr()
    (out * torch.arange(out.numel()).reshape(out.shape)).sum().backward()
    assert torch.equal(planes.grad, torch.arange(planes.numel(), dtype=planes.dtype).reshape(planes.shape))
    with pytest.raises(ValueError, match="channels_last"):
        ops.sampling_layout(planes, layout="nhwc")


@pytest.mark.parametrize("representation", ["triplane", "hyplane", "sphere", "sphere_dual"])
def test_every_plane_lookup_of_a_forward_shares_one_channels_last_copy(built, monkeypatch, representation):
    """With compiled ops the planes are stored channels-last once per forward (the representations'
    `planes`), so the coarse and the fine pass hand the lookup the same storage, which it reads without
    copying, where each pass used to make (and keep for its backward) a copy of its own."""
    import numpy as np

    from balancehead.camera import camera_label
    from balancehead.models import Generator, GeneratorConfig
    from balancehead.models import representations

    monkeypatch.setenv(loader.ENV_VAR, str(built[0]))
    seen, lookup = [], ops.grid_sample

    def recording(input, grid, **kw):
        seen.append((input.data_ptr(), input.is_contiguous(memory_format=torch.channels_last)))
        return lookup(input, grid, **kw)

    monkeypatch.setattr(representations.ops, "grid_sample", recording)
    G = Generator(GeneratorConfig.tiny(representation=representation, n_coarse=6, n_importance=6)).eval()
    cam = torch.from_numpy(np.stack([camera_label(y, 10.0) for y in (0.0, 120.0)])).float()
    G(torch.randn(2, 32, generator=torch.Generator().manual_seed(3)), cam, cam, noise_mode="const")
    systems = 2 if representation == "sphere_dual" else 1     # eval: both systems of a dual sphere
    assert len(seen) == 2 * systems and all(cl for _, cl in seen)
    assert len({ptr for ptr, _ in seen}) == systems           # coarse and fine read the same storage


def _double_backward(fn, inputs):
    xs = [t.clone().requires_grad_(True) for t in inputs]
    y = fn(*xs)
    (g,) = torch.autograd.grad(y.square().sum(), xs[:1], create_graph=True)
    return torch.autograd.grad(g.square().sum(), xs)


@pytest.mark.parametrize("case", ["bias_act", "bias_act_lrelu", "conv2d", "upfirdn2d", "grid_sample_input"])
def test_compiled_double_backward_matches_reference(built, case):
    module = built[2]
    f = ops.make_filter().double()
    grid = torch.rand(1, 4, 4, 2, generator=torch.Generator().manual_seed(9), dtype=torch.float64) * 2 - 1
    fns = {
        "bias_act": (lambda x, b, **k: ops.bias_act(x, b, act="softplus", **k), [_rand(2, 3, 4), _rand(3, seed=1)]),
        "bias_act_lrelu": (lambda x, b, **k: ops.bias_act(x, b, act="lrelu", clamp=1.5, **k), [_rand(2, 3, 4), _rand(3, seed=1)]),
        "conv2d": (lambda x, w, **k: ops.conv2d(x, w, padding=1, **k), [_rand(1, 2, 5, 5), _rand(3, 2, 3, 3, seed=2)]),
        "upfirdn2d": (lambda x, **k: ops.upfirdn2d(x, f, up=2, padding=2, **k),
                      [_rand(1, 2, 4, 4)]),
        # R1 only differentiates grid_sample's input gradient w.r.t. the input path
        "grid_sample_input": (lambda x, **k: ops.grid_sample(x, grid, **k), [_rand(1, 2, 5, 5)]),
    }
    fn, inputs = fns[case]
    ref = _double_backward(lambda *a: fn(*a, impl="ref"), inputs)
    cmp = _double_backward(lambda *a: fn(*a, module=module), inputs)
    for a, b in zip(ref, cmp):
        assert torch.allclose(a, b, atol=1e-9), case


@pytest.mark.parametrize("act", ["linear", "relu", "lrelu"])
def test_compiled_bias_act_keeps_its_output_not_its_input(built, act):
    """EG3D's plugin rule: for these activations only y is saved for the backward (the next layer keeps
    it anyway); gradients equal the reference's, clamped entries included."""
    module = built[2]
    x = (_rand(2, 3, 5, 4) * 3).requires_grad_()
    b = _rand(3, seed=1).requires_grad_()
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        y = ops.bias_act(x, b, act=act, clamp=2.0, module=module)
    assert [t.data_ptr() for t in saved] == [y.data_ptr()]
    dy = _rand(2, 3, 5, 4, seed=3)
    got = torch.autograd.grad(y, (x, b), dy)
    want = torch.autograd.grad(ops.bias_act_reference(x, b, act=act, clamp=2.0), (x, b), dy)
    clamped = (ops.bias_act_reference(x, b, act=act).abs() > 2.0)
    assert clamped.any() and (~clamped).any()
    assert all(torch.allclose(g, w, atol=1e-12) for g, w in zip(got, want))
    softplus = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: softplus.append(t) or t, lambda t: t):
        ops.bias_act(x, b, act="softplus", module=module)
    assert {t.data_ptr() for t in softplus} == {x.data_ptr(), b.data_ptr()}    # x-based where y cannot tell


@pytest.mark.parametrize("gain", [1.0, 0.7])
def test_compiled_linear_bias_act_without_clamp_keeps_nothing(built, gain):
    """Its derivative is the gain: nothing is saved (ToRGB's and D's skip outputs are otherwise held by no
    one), and first and second derivatives equal the reference's."""
    module = built[2]
    x = _rand(2, 3, 5, 4).requires_grad_()
    b = _rand(3, seed=1).requires_grad_()
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        y = ops.bias_act(x, b, act="linear", gain=gain, module=module)
    assert saved == []
    dy = _rand(2, 3, 5, 4, seed=3).requires_grad_()
    got = torch.autograd.grad(y, (x, b), dy, create_graph=True)
    want = torch.autograd.grad(ops.bias_act_reference(x, b, act="linear", gain=gain), (x, b), dy, create_graph=True)
    assert all(torch.allclose(g, w, atol=1e-12) for g, w in zip(got, want))
    (ddy,) = torch.autograd.grad(got[0].square().sum(), dy)
    assert torch.allclose(ddy, torch.autograd.grad(want[0].square().sum(), dy)[0], atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_softplus_grad_from_output_equals_torchs_softplus_backward(built, dtype):
    """sigmoid(x) read off y = softplus(x), over x in [-30, 30]: reference and the compiled one-kernel version
    agree with ATen's softplus backward -- to rounding, and past ATen's threshold (x > 20, where it passes the
    gradient through exactly) to sigmoid's own distance from 1, exp(-20) = 2.1e-9, below float32's resolution."""
    x = torch.linspace(-30, 30, 603, dtype=torch.float64).reshape(3, 1, 201).to(dtype).requires_grad_()
    dy = _rand(3, 1, 201, seed=4).to(dtype)
    y = F.softplus(x)
    (want,) = torch.autograd.grad(y, x, dy)
    tol = {torch.float64: 1e-13, torch.float32: 2e-6}[dtype]
    linear = x.detach() > 20
    for kw in ({"impl": "ref"}, {"module": built[2]}):
        got = ops.softplus_grad_from_output(dy, y.detach(), **kw)
        assert got.dtype == dtype and torch.allclose(got[~linear], want[~linear], rtol=tol, atol=tol), kw
        assert float((got[linear] - want[linear]).abs().max()) <= max(math.exp(-20) * 3, tol), kw


def test_models_use_compiled_ops_via_env_var(built, monkeypatch):
    from balancehead.models import Generator, GeneratorConfig
    from balancehead.camera import camera_label

    out, _, _ = built
    G = Generator(GeneratorConfig.tiny(n_coarse=4, n_importance=0))
    z = torch.randn(1, 32, generator=torch.Generator().manual_seed(0))
    cam = torch.from_numpy(camera_label(30, 5))[None]
    monkeypatch.delenv(loader.ENV_VAR, raising=False)
    ref = G(z, cam, cam).image
    monkeypatch.setenv(loader.ENV_VAR, str(out))
    assert loader.compiled_for(ref) is not None
    cmp = G(z, cam, cam).image
    assert torch.allclose(ref, cmp, atol=1e-4)


def test_bench_ops_times_every_case_in_every_column(built, monkeypatch, capsys):
    """benchmarks/bench_ops.py at its small shapes on the CPU build: a row per case, the compiled and the
    reference column in each of ours, torch's operator where it has one."""
    spec = importlib.util.spec_from_file_location("bench_ops", Path(__file__).parents[1] / "benchmarks" / "bench_ops.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    monkeypatch.setenv(loader.ENV_VAR, str(built[0]))
    rows = bench.main(["--device", "cpu", "--shapes", "small", "--reps", "1", "--dtype", "float32"])
    names = [r["case"] for r in rows]
    assert len(names) == 6 and any("downsample2d" in n for n in names) and any("gather" in n for n in names)
    for r in rows:
        cols = r["ms"]
        assert ("torch" in cols) == (r["case"].startswith(("bias_act", "conv2d", "grid_sample direct"))), r
        if not r["case"].startswith("conv2d"):
            assert cols["compiled"] > 0 and cols["reference"] > 0, r
        assert ("compiled nchw" in cols) == r["case"].startswith("grid_sample"), r
    assert "grid_sample gather" in capsys.readouterr().out


# ---------------- CUDA kernels (run where a GPU is present; `cuda` in every name) ----------------

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture(scope="session")
def built_cuda(tmp_path_factory):
    """The CUDA build from $BALANCEHEAD_OPS_DIR when it has CUDA kernels, else one built here."""
    env = os.environ.get(loader.ENV_VAR)
    if env:
        module = loader.load_built_ops(env)
        if module is not None and module.has_cuda_kernels():
            return module
    out = tmp_path_factory.mktemp("ops_cuda_build")
    major, minor = torch.cuda.get_device_capability()
    build_ops_main(BuildOpsConfig(build_cuda="yes", cuda_arch_list=f"{major}.{minor}"), out)
    module = loader.load_built_ops(out)
    assert module is not None and module.has_cuda_kernels()
    return module


@needs_cuda
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16, torch.bfloat16])
def test_cuda_kernels_match_reference(built_cuda, dtype):
    if dtype == torch.float64:
        for name, err in compare_with_reference(built_cuda, device="cuda", seed=31).items():
            assert err["forward"] < 1e-10 and err["grad"] < 1e-10, (name, err)
        return
    tol = {torch.float32: 1e-5, torch.float16: 1e-2, torch.bfloat16: 4e-2}[dtype]
    for name, err in compare_low_precision(built_cuda, dtype, device="cuda", seed=32).items():
        assert err["forward"] < tol and err["grad"] < tol, (name, err)


@needs_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cuda_grid_sample_gather_and_direct_agree_at_plane_scale(built_cuda, dtype):
    """Tri-plane-like sizes: 2 x 3 planes of 32 x 64^2, 30k points each, many points per texel."""
    g = torch.Generator().manual_seed(33)
    planes = torch.randn(6, 32, 64, 64, generator=g).cuda().to(dtype)
    grid = (torch.rand(6, 1, 30000, 2, generator=g) * 2.2 - 1.1).cuda()
    dy = torch.randn(6, 32, 1, 30000, generator=g).cuda().to(dtype)
    direct = built_cuda.grid_sample_backward(dy, planes, grid, 0)
    gather = built_cuda.grid_sample_backward(dy, planes, grid, 1)
    ref = built_cuda.grid_sample_backward(dy.double(), planes.double(), grid.double(), 1)
    scale = ref[0].abs().max()
    for got in (direct, gather):
        assert got[0].dtype == dtype
        assert float((got[0].double() - ref[0]).abs().max() / scale) < (1e-5 if dtype == torch.float32 else 2e-2)
    assert torch.equal(direct[1], gather[1])


@needs_cuda
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
def test_cuda_grid_sample_channels_last_kernels_agree_with_nchw(built_cuda, dtype):
    """Warp-per-sample channels-last kernels against the thread-per-sample NCHW ones at plane scale (32 and
    40 channels, many samples per texel): the forward sums the same corners in the same order (equal);
    d grid is summed over lanes by shuffles and d input by atomics in any order (close)."""
    g = torch.Generator().manual_seed(34)
    for c in (32, 40):
        planes = torch.randn(6, c, 64, 64, generator=g).cuda().to(dtype)
        grid = (torch.rand(6, 1, 30000, 2, generator=g) * 2.2 - 1.1).cuda().to(torch.float64 if dtype == torch.float64
                                                                              else torch.float32)
        dy = torch.randn(6, c, 1, 30000, generator=g).cuda().to(dtype)
        planes_cl = planes.contiguous(memory_format=torch.channels_last)
        y, y_cl = built_cuda.grid_sample_forward(planes, grid), built_cuda.grid_sample_forward(planes_cl, grid)
        assert y_cl.is_contiguous(memory_format=torch.channels_last) and torch.equal(y, y_cl)
        tol = {torch.float64: 1e-12, torch.float32: 1e-5, torch.bfloat16: 2e-2}[dtype]
        for mode in (0, 1):
            ref = built_cuda.grid_sample_backward(dy, planes, grid, mode)
            got = built_cuda.grid_sample_backward(dy.contiguous(memory_format=torch.channels_last), planes_cl, grid, mode)
            assert got[0].is_contiguous(memory_format=torch.channels_last) and got[0].dtype == dtype
            for a, b in zip(got, ref):
                assert float((a.double() - b.double()).abs().max() / b.double().abs().max()) < tol, (c, mode)


@needs_cuda
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16, torch.bfloat16])
def test_cuda_upfirdn2d_fixed_size_kernels_equal_the_general_kernel(built_cuda, dtype):
    """Several thread blocks per plane (70 x 37 pixels); the CPU build's general loop agrees too."""
    tol = {torch.float64: 1e-12, torch.float32: 1e-5, torch.float16: 4e-3, torch.bfloat16: 2e-2}[dtype]
    for case, x, fixed, general in _fixed_vs_general(built_cuda, "cuda", dtype, (3, 5, 37, 70), seed=6):
        up, down, pad, flip = case
        on_cpu = built_cuda.upfirdn2d_general(x.cpu(), ops.make_filter(), up, up, down, down, *pad, flip, 1.7)
        assert fixed.dtype == dtype and fixed.is_cuda, case
        for other in (general, on_cpu):
            assert float((fixed.double().cpu() - other.double().cpu()).abs().max()) <= tol * 8, case


@needs_cuda
def test_cuda_ops_forward_backward_without_host_sync(built_cuda):
    """No op waits on the host (sorting and segment search included): sync debug mode raises if one does."""
    f = ops.make_filter(device="cuda")
    x = torch.randn(2, 8, 16, 16, device="cuda", requires_grad=True)
    b = torch.randn(8, device="cuda", requires_grad=True)
    planes = torch.randn(2, 8, 16, 16, device="cuda", requires_grad=True)
    grid = (torch.rand(2, 1, 500, 2, device="cuda") * 2 - 1).requires_grad_()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        y = ops.bias_act(x, b, act="lrelu", clamp=256, module=built_cuda)
        y = ops.downsample2d(ops.upsample2d(y, f, module=built_cuda), f, module=built_cuda)
        s = sum(ops.grid_sample(planes, grid, module=built_cuda, backward=mode).sum() for mode in ("direct", "gather"))
        (y.square().sum() + s).backward()
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert x.grad is not None and planes.grad is not None and grid.grad is not None


def test_stage_logs_never_ask_for_the_ops_environment_variable(caplog):
    """Issue 15: stages get the compiled ops from their declared `ops` input (use_built), so the log of a
    CPU run says which ops are used once and never suggests setting $BALANCEHEAD_OPS_DIR."""
    import logging

    from balancehead.ops import loader

    loader._load_from_env.cache_clear()
    with caplog.at_level(logging.INFO, logger="balancehead"):
        assert loader._load_from_env("") is None
    assert not [r for r in caplog.records if r.levelno >= logging.INFO and loader.ENV_VAR in r.getMessage()]
    loader._load_from_env.cache_clear()


def test_bench_flops_books_a_compiled_op_call_as_one_kernel(built, monkeypatch):
    """bench_flops --gpu-path: a compiled op is one kernel reading its arguments and writing its output
    (its inner allocations unbooked); a step on the GPU path has the reference path's network FLOPs in
    fewer kernels; without --gpu-path the reference ops run even where a build is set; the loader is
    restored afterwards."""
    out, _, module = built
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import bench_flops

    counter = bench_flops.PartCounter()
    x, f = torch.randn(2, 3, 16, 16), torch.ones(4, 4) / 16
    with counter:
        y = bench_flops.CountedOps(module, counter).upfirdn2d(x, f, 1, 1, 2, 2, 1, 1, 1, 1, False, 1.0)
    assert y.shape == (2, 3, 8, 8)
    assert counter.ops == {"": 1} and counter.bytes == {"": 4 * (x.numel() + f.numel() + y.numel())}
    with counter:
        x.new_zeros([0])                    # a placeholder: no kernel
        x.new_zeros(x.shape)                # one kernel writing x's size, reading nothing
    assert counter.ops == {"": 2} and counter.bytes == {"": 4 * (2 * x.numel() + f.numel() + y.numel())}

    monkeypatch.setenv(loader.ENV_VAR, str(out))
    resolve = loader._load_from_env
    gpu = bench_flops.step_parts("ours", "tiny", 1, "cpu", None, gpu_path=True)
    ref = bench_flops.step_parts("ours", "tiny", 1, "cpu", None)     # the reference ops, although a build is set
    assert loader._load_from_env is resolve and not gpu.inside_kernel
    net = lambda c: sum(v for (_, kind), v in c.flops.items() if kind == "net")  # noqa: E731
    assert net(gpu) == net(ref) > 0
    assert not any(kind == "fir" for _, kind in gpu.flops)        # resampling ran in the compiled kernel
    assert any(kind == "fir" for _, kind in ref.flops)            # and here in the reference's convolution
    assert sum(gpu.ops.values()) < sum(ref.ops.values())
