"""Low-level ops of the GAN: each has a pure-PyTorch reference and a compiled C++/CUDA version.

Compiled versions come from the `build_ops` stage; `use_built(build_dir)` (or $BALANCEHEAD_OPS_DIR, or
`load_built_ops(build_dir)`) points at its output. Every op takes `impl="auto"|"ref"|"compiled"`.
"""
from .bias_act import ACTIVATIONS, bias_act, bias_act_reference, softplus_grad_from_output
from .conv2d_gradfix import conv2d, conv2d_reference
from .grid_sample_gradfix import grid_sample, grid_sample_reference, sampling_layout
from .loader import ENV_VAR, load_built_ops, use_built
from .upfirdn2d import downsample2d, make_filter, upfirdn2d, upfirdn2d_reference, upsample2d

__all__ = [
    "ACTIVATIONS", "ENV_VAR", "bias_act", "bias_act_reference", "conv2d", "conv2d_reference", "downsample2d",
    "grid_sample", "grid_sample_reference", "load_built_ops", "make_filter", "upfirdn2d", "upfirdn2d_reference",
    "sampling_layout", "softplus_grad_from_output", "upsample2d", "use_built",
]
