// CPU kernels for balancehead.ops, plus the Python bindings of the extension.
// When compiled together with ops_cuda.cu (BH_WITH_CUDA defined), CUDA tensors are routed to it.
// All kernels take double, float, half and bfloat16 (accumulating in at::opmath_type: float or double).
#include <torch/extension.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <cstdint>
#include "ops_common.h"

#define BH_DISPATCH(TYPE, NAME, ...) \
  AT_DISPATCH_FLOATING_TYPES_AND2(at::ScalarType::Half, at::ScalarType::BFloat16, TYPE, NAME, __VA_ARGS__)

#ifdef BH_WITH_CUDA
torch::Tensor bias_act_forward_cuda(torch::Tensor x, torch::Tensor b, int64_t inner, int64_t act, double alpha, double gain, double clamp);
torch::Tensor bias_act_backward_cuda(torch::Tensor dy, torch::Tensor x, torch::Tensor b, int64_t inner, int64_t act, double alpha, double gain, double clamp, bool from_y);
torch::Tensor upfirdn2d_cuda(torch::Tensor x, torch::Tensor f, int64_t upx, int64_t upy, int64_t downx, int64_t downy,
                             int64_t padx0, int64_t padx1, int64_t pady0, int64_t pady1, bool flip, double gain,
                             bool general);
torch::Tensor grid_sample_forward_cuda(torch::Tensor input, torch::Tensor grid, bool cl);
std::vector<torch::Tensor> grid_sample_backward_atomic_cuda(torch::Tensor dy, torch::Tensor input, torch::Tensor grid, bool cl);
std::vector<torch::Tensor> grid_sample_backward_dgrid_cuda(torch::Tensor dy, torch::Tensor input, torch::Tensor grid, bool cl);
torch::Tensor grid_sample_backward_gather_cuda(torch::Tensor dy_nsc, torch::Tensor order, torch::Tensor start, torch::Tensor wts,
                                               int64_t N, int64_t C, int64_t H, int64_t W, bool cl);
#endif

namespace {

int64_t inner_size(const torch::Tensor& x, int64_t dim) {
  int64_t n = 1;
  for (int64_t d = dim + 1; d < x.dim(); ++d) n *= x.size(d);
  return n;
}

at::ScalarType opmath_dtype(at::ScalarType t) {
  return t == at::ScalarType::Double ? at::ScalarType::Double : at::ScalarType::Float;
}

torch::Tensor bias_act_forward_cpu(torch::Tensor x, torch::Tensor b, int64_t inner, int64_t act, double alpha, double gain, double clamp) {
  auto y = torch::empty_like(x);
  const int64_t n = x.numel(), C = b.numel();
  BH_DISPATCH(x.scalar_type(), "bias_act_forward_cpu", [&] {
    using A = at::opmath_type<scalar_t>;
    const scalar_t* px = x.data_ptr<scalar_t>();
    const scalar_t* pb = C ? b.data_ptr<scalar_t>() : nullptr;
    scalar_t* py = y.data_ptr<scalar_t>();
    at::parallel_for(0, n, 4096, [&](int64_t lo, int64_t hi) {
      for (int64_t i = lo; i < hi; ++i) {
        A bi = C ? static_cast<A>(pb[(i / inner) % C]) : A(0);
        py[i] = static_cast<scalar_t>(bh::bias_act_point<A>(static_cast<A>(px[i]), bi, act, A(alpha), A(gain), A(clamp)));
      }
    });
  });
  return y;
}

torch::Tensor bias_act_backward_cpu(torch::Tensor dy, torch::Tensor x, torch::Tensor b, int64_t inner, int64_t act, double alpha, double gain, double clamp, bool from_y) {
  auto dx = torch::empty_like(x);
  const int64_t n = x.numel(), C = b.numel();
  BH_DISPATCH(x.scalar_type(), "bias_act_backward_cpu", [&] {
    using A = at::opmath_type<scalar_t>;
    const scalar_t* px = x.data_ptr<scalar_t>();
    const scalar_t* pd = dy.data_ptr<scalar_t>();
    const scalar_t* pb = C ? b.data_ptr<scalar_t>() : nullptr;
    scalar_t* pdx = dx.data_ptr<scalar_t>();
    at::parallel_for(0, n, 4096, [&](int64_t lo, int64_t hi) {
      for (int64_t i = lo; i < hi; ++i) {
        if (from_y) {  // px holds y
          pdx[i] = static_cast<scalar_t>(bh::bias_act_grad_from_y_point<A>(static_cast<A>(pd[i]), static_cast<A>(px[i]),
                                                                            act, A(alpha), A(gain), A(clamp)));
          continue;
        }
        A bi = C ? static_cast<A>(pb[(i / inner) % C]) : A(0);
        pdx[i] = static_cast<scalar_t>(bh::bias_act_grad_point<A>(static_cast<A>(pd[i]), static_cast<A>(px[i]), bi, act,
                                                                  A(alpha), A(gain), A(clamp)));
      }
    });
  });
  return dx;
}

torch::Tensor upfirdn2d_cpu(torch::Tensor x, torch::Tensor f, int64_t upx, int64_t upy, int64_t downx, int64_t downy,
                            int64_t padx0, int64_t padx1, int64_t pady0, int64_t pady1, bool flip, double gain,
                            bool general) {
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  const int64_t fh = f.size(0), fw = f.size(1);
  const int64_t oh = (H * upy + pady0 + pady1 - fh) / downy + 1;
  const int64_t ow = (W * upx + padx0 + padx1 - fw) / downx + 1;
  TORCH_CHECK(oh > 0 && ow > 0, "upfirdn2d: empty output");
  auto y = torch::empty({N, C, oh, ow}, x.options());
  const float* pf = f.data_ptr<float>();
  BH_DISPATCH(x.scalar_type(), "upfirdn2d_cpu", [&] {
    using A = at::opmath_type<scalar_t>;
    const scalar_t* px = x.data_ptr<scalar_t>();
    scalar_t* py = y.data_ptr<scalar_t>();
    auto each_output = [&](auto point) {  // py[p, oy, ox] = point(p, oy, ox), planes in parallel
      at::parallel_for(0, N * C, 1, [&](int64_t lo, int64_t hi) {
        for (int64_t p = lo; p < hi; ++p)
          for (int64_t oy = 0; oy < oh; ++oy)
            for (int64_t ox = 0; ox < ow; ++ox) py[(p * oh + oy) * ow + ox] = static_cast<scalar_t>(point(p, oy, ox));
      });
    };
    const bool fixed = !general && bh::upfirdn2d_fixed_dispatch(
        upx, upy, downx, downy, fh, fw, padx0, pady0, x.numel(), y.numel(), H, W, [&](auto up, auto down) {
          constexpr int UP = decltype(up)::value, DOWN = decltype(down)::value;
          each_output([&](int64_t p, int64_t oy, int64_t ox) {
            return bh::upfirdn2d_point_fixed<scalar_t, A, UP, DOWN, 4, 4>(
                px + p * H * W, (int)H, (int)W, pf, (int)padx0, (int)pady0, flip, A(gain), (int)oy, (int)ox);
          });
        });
    if (fixed) return;
    each_output([&](int64_t p, int64_t oy, int64_t ox) {
      return bh::upfirdn2d_point<scalar_t, A>(px + p * H * W, H, W, pf, fh, fw, upx, upy, downx, downy, padx0, pady0,
                                              flip, A(gain), oy, ox);
    });
  });
  return y;
}

at::MemoryFormat grid_format(bool cl) { return cl ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous; }

// `cl`: channels-last input, output and d input (bh::GridLayout); the loops are the same in both layouts.
torch::Tensor grid_sample_forward_cpu(torch::Tensor input, torch::Tensor grid, bool cl) {
  const int64_t N = input.size(0), C = input.size(1), H = input.size(2), W = input.size(3);
  const int64_t S = grid.size(1) * grid.size(2);
  auto out = torch::empty({N, C, grid.size(1), grid.size(2)}, input.options().memory_format(grid_format(cl)));
  const bh::GridLayout L{C, H * W, S, cl};
  BH_DISPATCH(input.scalar_type(), "grid_sample_forward_cpu", [&] {
    using A = at::opmath_type<scalar_t>;
    const scalar_t* pi = input.data_ptr<scalar_t>();
    const A* pg = grid.data_ptr<A>();
    scalar_t* po = out.data_ptr<scalar_t>();
    at::parallel_for(0, N * S, 256, [&](int64_t lo, int64_t hi) {
      for (int64_t q = lo; q < hi; ++q) bh::grid_sample_forward_point<scalar_t, A>(pi, pg, po, L, H, W, q);
    });
  });
  return out;
}

// Direct backward: one task per batch item, each writing only its own slice of d input (no races).
std::vector<torch::Tensor> grid_sample_backward_direct_cpu(torch::Tensor dy, torch::Tensor input, torch::Tensor grid, bool cl) {
  const int64_t N = input.size(0), C = input.size(1), H = input.size(2), W = input.size(3);
  const int64_t S = grid.size(1) * grid.size(2);
  auto dgrid = torch::empty_like(grid);
  // (torch::zeros ignores a memory format in its options; empty honours it)
  auto acc = torch::empty(input.sizes(), input.options().dtype(opmath_dtype(input.scalar_type())).memory_format(grid_format(cl))).zero_();
  const bh::GridLayout L{C, H * W, S, cl};
  BH_DISPATCH(input.scalar_type(), "grid_sample_backward_direct_cpu", [&] {
    using A = at::opmath_type<scalar_t>;
    const scalar_t* pi = input.data_ptr<scalar_t>();
    const A* pg = grid.data_ptr<A>();
    const scalar_t* pd = dy.data_ptr<scalar_t>();
    A* pacc = acc.data_ptr<A>();
    A* pdg = dgrid.data_ptr<A>();
    at::parallel_for(0, N, 1, [&](int64_t lo, int64_t hi) {
      for (int64_t q = lo * S; q < hi * S; ++q)
        bh::grid_sample_direct_point<scalar_t, A>(pd, pi, pg, pdg, L, H, W, q, [&](int64_t i, A v) { pacc[i] += v; });
    });
  });
  return {acc.to(input.scalar_type()), dgrid};
}

std::vector<torch::Tensor> grid_sample_backward_dgrid_cpu(torch::Tensor dy, torch::Tensor input, torch::Tensor grid, bool cl) {
  const int64_t N = input.size(0), C = input.size(1), H = input.size(2), W = input.size(3);
  const int64_t S = grid.size(1) * grid.size(2);
  auto dgrid = torch::empty_like(grid);
  auto keys = torch::empty({N * S * 4}, grid.options().dtype(torch::kInt64));
  auto wts = torch::empty({N * S * 4}, grid.options());
  const bh::GridLayout L{C, H * W, S, cl};
  BH_DISPATCH(input.scalar_type(), "grid_sample_backward_dgrid_cpu", [&] {
    using A = at::opmath_type<scalar_t>;
    const scalar_t* pi = input.data_ptr<scalar_t>();
    const scalar_t* pd = dy.data_ptr<scalar_t>();
    const A* pg = grid.data_ptr<A>();
    A* pdg = dgrid.data_ptr<A>();
    int64_t* pk = keys.data_ptr<int64_t>();
    A* pw = wts.data_ptr<A>();
    at::parallel_for(0, N * S, 256, [&](int64_t lo, int64_t hi) {
      for (int64_t q = lo; q < hi; ++q)
        bh::grid_sample_dgrid_point<scalar_t, A>(pd, pi, pg, pdg, pk, pw, L, H, W, N * H * W, q);
    });
  });
  return {dgrid, keys, wts};
}

// dy_nsc: dy as (N, S, C) contiguous. One task per (n, texel, channel), channel fastest.
torch::Tensor grid_sample_backward_gather_cpu(torch::Tensor dy_nsc, torch::Tensor order, torch::Tensor start, torch::Tensor wts,
                                              int64_t N, int64_t C, int64_t H, int64_t W, bool cl) {
  const int64_t HW = H * W;
  auto din = torch::empty({N, C, H, W}, dy_nsc.options().memory_format(grid_format(cl)));
  const bh::GridLayout L{C, HW, 0, cl};
  BH_DISPATCH(dy_nsc.scalar_type(), "grid_sample_backward_gather_cpu", [&] {
    using A = at::opmath_type<scalar_t>;
    const scalar_t* pd = dy_nsc.data_ptr<scalar_t>();
    const int64_t* po = order.data_ptr<int64_t>();
    const int64_t* ps = start.data_ptr<int64_t>();
    const A* pw = wts.data_ptr<A>();
    scalar_t* pdi = din.data_ptr<scalar_t>();
    at::parallel_for(0, N * HW * C, 1024, [&](int64_t lo, int64_t hi) {
      for (int64_t i = lo; i < hi; ++i) {
        const int64_t c = i % C, t = (i / C) % HW, n = i / (C * HW);
        pdi[L.plane(n, c, t)] = bh::grid_sample_dinput_texel<scalar_t, A>(pd, po, ps, pw, C, HW, n, c, t);
      }
    });
  });
  return din;
}

}  // namespace

// ---- dispatch (CPU here, CUDA when compiled in) ----

torch::Tensor bias_act_forward(torch::Tensor x, torch::Tensor b, int64_t dim, int64_t act, double alpha, double gain, double clamp) {
  x = x.contiguous(); b = b.contiguous().to(x.scalar_type());
  TORCH_CHECK(b.numel() == 0 || b.numel() == x.size(dim), "bias_act: bias must match x.shape[dim]");
  int64_t inner = inner_size(x, dim);
#ifdef BH_WITH_CUDA
  if (x.is_cuda()) return bias_act_forward_cuda(x, b, inner, act, alpha, gain, clamp);
#endif
  TORCH_CHECK(x.device().is_cpu(), "bias_act: this build has no CUDA kernels");
  return bias_act_forward_cpu(x, b, inner, act, alpha, gain, clamp);
}

// from_y: `x` is the forward's output y (linear/relu/lrelu/softplus; `b` unused), see ops_common.h.
torch::Tensor bias_act_backward(torch::Tensor dy, torch::Tensor x, torch::Tensor b, int64_t dim, int64_t act, double alpha, double gain, double clamp,
                                bool from_y) {
  TORCH_CHECK(!from_y || act == bh::LINEAR || act == bh::RELU || act == bh::LRELU || act == bh::SOFTPLUS,
              "bias_act_backward: from_y needs linear, relu, lrelu or softplus");
  TORCH_CHECK(!from_y || gain > 0, "bias_act_backward: from_y needs gain > 0");
  x = x.contiguous(); dy = dy.contiguous().to(x.scalar_type()); b = b.contiguous().to(x.scalar_type());
  int64_t inner = inner_size(x, dim);
#ifdef BH_WITH_CUDA
  if (x.is_cuda()) return bias_act_backward_cuda(dy, x, b, inner, act, alpha, gain, clamp, from_y);
#endif
  TORCH_CHECK(x.device().is_cpu(), "bias_act: this build has no CUDA kernels");
  return bias_act_backward_cpu(dy, x, b, inner, act, alpha, gain, clamp, from_y);
}

// `general` forces the general per-pixel loop (tests compare it with the fixed-size fast path).
torch::Tensor upfirdn2d_impl(torch::Tensor x, torch::Tensor f, int64_t upx, int64_t upy, int64_t downx, int64_t downy,
                             int64_t padx0, int64_t padx1, int64_t pady0, int64_t pady1, bool flip, double gain,
                             bool general) {
  TORCH_CHECK(x.dim() == 4 && f.dim() == 2, "upfirdn2d: x must be NCHW and f 2-D");
  TORCH_CHECK(upx >= 1 && upy >= 1 && downx >= 1 && downy >= 1, "upfirdn2d: up and down must be >= 1");
  x = x.contiguous();
  f = f.to(x.device(), torch::kFloat32).contiguous();
#ifdef BH_WITH_CUDA
  if (x.is_cuda()) return upfirdn2d_cuda(x, f, upx, upy, downx, downy, padx0, padx1, pady0, pady1, flip, gain, general);
#endif
  TORCH_CHECK(x.device().is_cpu(), "upfirdn2d: this build has no CUDA kernels");
  return upfirdn2d_cpu(x, f, upx, upy, downx, downy, padx0, padx1, pady0, pady1, flip, gain, general);
}

torch::Tensor upfirdn2d(torch::Tensor x, torch::Tensor f, int64_t upx, int64_t upy, int64_t downx, int64_t downy,
                        int64_t padx0, int64_t padx1, int64_t pady0, int64_t pady1, bool flip, double gain) {
  return upfirdn2d_impl(x, f, upx, upy, downx, downy, padx0, padx1, pady0, pady1, flip, gain, false);
}

torch::Tensor upfirdn2d_general(torch::Tensor x, torch::Tensor f, int64_t upx, int64_t upy, int64_t downx, int64_t downy,
                                int64_t padx0, int64_t padx1, int64_t pady0, int64_t pady1, bool flip, double gain) {
  return upfirdn2d_impl(x, f, upx, upy, downx, downy, padx0, padx1, pady0, pady1, flip, gain, true);
}

// The planes' layout picks the kernels: channels-last input (and not plain contiguous too, as when C or
// H*W is 1, where both layouts are the same memory) runs the channels-last kernels and gives channels-last
// output and d input; anything else is made contiguous NCHW.
bool grid_channels_last(const torch::Tensor& input) {
  return !input.is_contiguous() && input.is_contiguous(at::MemoryFormat::ChannelsLast);
}

// The grid is read in the accumulation type of the input (float for half/bfloat16): sampling
// positions keep their precision under mixed precision.
torch::Tensor grid_sample_forward(torch::Tensor input, torch::Tensor grid) {
  TORCH_CHECK(input.dim() == 4 && grid.dim() == 4 && grid.size(3) == 2, "grid_sample: NCHW input, NHW2 grid");
  TORCH_CHECK(grid.size(0) == input.size(0), "grid_sample: input and grid batch sizes differ");
  const bool cl = grid_channels_last(input);
  input = input.contiguous(grid_format(cl)); grid = grid.to(opmath_dtype(input.scalar_type())).contiguous();
#ifdef BH_WITH_CUDA
  if (input.is_cuda()) return grid_sample_forward_cuda(input, grid, cl);
#endif
  TORCH_CHECK(input.device().is_cpu(), "grid_sample: this build has no CUDA kernels");
  return grid_sample_forward_cpu(input, grid, cl);
}

// mode 0 "direct": per-sample scatter (atomics on CUDA into a float/double buffer; race-free per
//   batch item on the CPU).
// mode 1 "gather": no atomics. Each sample's 4 corner keys (plane, texel) are sorted, segment starts
//   found by binary search, and every (n, c, texel) sums its own segment. Fixed sizes throughout,
//   so nothing waits on the host.
// Returns (d input in input's dtype and layout, d grid in the accumulation dtype).
std::vector<torch::Tensor> grid_sample_backward(torch::Tensor dy, torch::Tensor input, torch::Tensor grid, int64_t mode) {
  TORCH_CHECK(mode == 0 || mode == 1, "grid_sample_backward: mode must be 0 (direct) or 1 (gather)");
  const bool cl = grid_channels_last(input);
  input = input.contiguous(grid_format(cl)); grid = grid.to(opmath_dtype(input.scalar_type())).contiguous();
  dy = dy.to(input.scalar_type()).contiguous(grid_format(cl));  // dy has the output's shape (N, C, Ho, Wo)
  const bool cuda = input.is_cuda();
#ifndef BH_WITH_CUDA
  TORCH_CHECK(!cuda, "grid_sample: this build has no CUDA kernels");
#endif
  if (mode == 0) {
#ifdef BH_WITH_CUDA
    if (cuda) return grid_sample_backward_atomic_cuda(dy, input, grid, cl);
#endif
    return grid_sample_backward_direct_cpu(dy, input, grid, cl);
  }
  const int64_t N = input.size(0), C = input.size(1), H = input.size(2), W = input.size(3);
  std::vector<torch::Tensor> dk;
#ifdef BH_WITH_CUDA
  if (cuda) dk = grid_sample_backward_dgrid_cuda(dy, input, grid, cl);
#endif
  if (!cuda) dk = grid_sample_backward_dgrid_cpu(dy, input, grid, cl);
  // keys lie in [0, N*H*W]: sorted as int32 where they fit (a radix sort then makes half the passes)
  auto keys = N * H * W < INT32_MAX ? dk[1].to(torch::kInt32) : dk[1];
  auto sorted = keys.sort();  // (sorted keys, order); outside corners carry key N*H*W and sort last
  auto bounds = torch::arange(N * H * W + 1, keys.options());
  auto start = torch::searchsorted(std::get<0>(sorted), bounds);
  // (N, S, C): coalesced per texel; a view, no copy, when dy is channels-last
  auto dy_nsc = dy.reshape({N, C, -1}).transpose(1, 2).contiguous();
  torch::Tensor din;
#ifdef BH_WITH_CUDA
  if (cuda) din = grid_sample_backward_gather_cuda(dy_nsc, std::get<1>(sorted), start, dk[2], N, C, H, W, cl);
#endif
  if (!cuda) din = grid_sample_backward_gather_cpu(dy_nsc, std::get<1>(sorted), start, dk[2], N, C, H, W, cl);
  return {din, dk[0]};
}

// conv2d forward through ATen's own convolution (its backward is written in Python so it stays
// differentiable twice; see conv2d_gradfix.py). Works on whichever device ATen was built for.
torch::Tensor conv2d_forward(torch::Tensor x, torch::Tensor w, c10::optional<torch::Tensor> b,
                             std::vector<int64_t> stride, std::vector<int64_t> padding, int64_t groups) {
  return at::conv2d(x, w, b, stride, padding, {1, 1}, groups);
}

bool has_cuda_kernels() {
#ifdef BH_WITH_CUDA
  return true;
#else
  return false;
#endif
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("bias_act_forward", &bias_act_forward);
  m.def("bias_act_backward", &bias_act_backward);
  m.def("upfirdn2d", &upfirdn2d);
  m.def("upfirdn2d_general", &upfirdn2d_general);
  m.def("grid_sample_forward", &grid_sample_forward);
  m.def("grid_sample_backward", &grid_sample_backward);
  m.def("conv2d_forward", &conv2d_forward);
  m.def("has_cuda_kernels", &has_cuda_kernels);
}
