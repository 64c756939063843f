"""Modulated conv: the unfused training path (EG3D's fused_modconv 'inference_only') equals the grouped
one, and a layer in training mode runs plain convolutions only (issue 10: the step's FLOPs and kernels)."""
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from balancehead import ops
from balancehead.models.layers import SynthesisLayer, modulated_conv2d


@pytest.mark.parametrize("up,demodulate,k", [(1, True, 3), (2, True, 3), (1, False, 1)])
def test_unfused_matches_grouped(up, demodulate, k):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 5, 8, 8, generator=g, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(4, 5, k, k, generator=g, dtype=torch.float64, requires_grad=True)
    styles = torch.randn(3, 5, generator=g, dtype=torch.float64, requires_grad=True)
    f = ops.make_filter().double()
    outs, grads = [], []
    for fused in (True, False):
        y = modulated_conv2d(x, weight, styles, demodulate=demodulate, up=up, resample_filter=f, fused=fused)
        outs.append(y)
        grads.append(torch.autograd.grad((y * torch.linspace(-1, 1, y.numel(), dtype=y.dtype).reshape(y.shape)).sum(),
                                         (x, weight, styles)))
    assert outs[0].shape == outs[1].shape == (3, 4, 8 * up, 8 * up)
    torch.testing.assert_close(outs[1], outs[0], rtol=1e-10, atol=1e-12)
    for a, b in zip(*grads):
        torch.testing.assert_close(b, a, rtol=1e-10, atol=1e-12)


class ConvGroups(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.groups = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func._overloadpacket is torch.ops.aten.convolution:
            self.groups.append((args[8], args[1].shape[1]))
        elif func._overloadpacket is torch.ops.aten.convolution_backward:
            self.groups.append((args[9], args[2].shape[1]))
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("training", [True, False])
def test_layer_fuses_only_for_inference(training):
    layer = SynthesisLayer(6, 4, 8, 8, torch.Generator().manual_seed(0), up=2, conv_clamp=None).train(training)
    x, w = torch.randn(3, 6, 4, 4, requires_grad=True), torch.randn(3, 8)
    with ConvGroups() as seen:
        layer(x, w).square().sum().backward()
    network = [g for g, in_per_group in seen.groups if in_per_group > 1]  # depthwise FIR convs aside
    assert network and all(g == (1 if training else 3) for g in network), seen.groups
