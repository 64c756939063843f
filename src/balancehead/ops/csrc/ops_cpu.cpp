// CPU kernels for balancehead.ops, plus the Python bindings of the extension.
// When compiled together with ops_cuda.cu (BH_WITH_CUDA defined), CUDA tensors are routed to it.
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include "ops_common.h"

#ifdef BH_WITH_CUDA
torch::Tensor bias_act_forward_cuda(torch::Tensor x, torch::Tensor b, int64_t inner, int64_t act, double alpha, double gain, double clamp);
torch::Tensor bias_act_backward_cuda(torch::Tensor dy, torch::Tensor x, torch::Tensor b, int64_t inner, int64_t act, double alpha, double gain, double clamp);
torch::Tensor upfirdn2d_cuda(torch::Tensor x, torch::Tensor f, int64_t upx, int64_t upy, int64_t downx, int64_t downy,
                             int64_t padx0, int64_t padx1, int64_t pady0, int64_t pady1, bool flip, double gain);
torch::Tensor grid_sample_forward_cuda(torch::Tensor input, torch::Tensor grid);
std::vector<torch::Tensor> grid_sample_backward_cuda(torch::Tensor dy, torch::Tensor input, torch::Tensor grid);
#endif

namespace {

int64_t inner_size(const torch::Tensor& x, int64_t dim) {
  int64_t n = 1;
  for (int64_t d = dim + 1; d < x.dim(); ++d) n *= x.size(d);
  return n;
}

torch::Tensor bias_act_forward_cpu(torch::Tensor x, torch::Tensor b, int64_t inner, int64_t act, double alpha, double gain, double clamp) {
  auto y = torch::empty_like(x);
  const int64_t n = x.numel(), C = b.numel();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "bias_act_forward_cpu", [&] {
    const scalar_t* px = x.data_ptr<scalar_t>();
    const scalar_t* pb = C ? b.data_ptr<scalar_t>() : nullptr;
    scalar_t* py = y.data_ptr<scalar_t>();
    at::parallel_for(0, n, 4096, [&](int64_t lo, int64_t hi) {
      for (int64_t i = lo; i < hi; ++i) {
        scalar_t bi = C ? pb[(i / inner) % C] : scalar_t(0);
        py[i] = bh::bias_act_point<scalar_t>(px[i], bi, act, alpha, gain, clamp);
      }
    });
  });
  return y;
}

torch::Tensor bias_act_backward_cpu(torch::Tensor dy, torch::Tensor x, torch::Tensor b, int64_t inner, int64_t act, double alpha, double gain, double clamp) {
  auto dx = torch::empty_like(x);
  const int64_t n = x.numel(), C = b.numel();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "bias_act_backward_cpu", [&] {
    const scalar_t* px = x.data_ptr<scalar_t>();
    const scalar_t* pd = dy.data_ptr<scalar_t>();
    const scalar_t* pb = C ? b.data_ptr<scalar_t>() : nullptr;
    scalar_t* pdx = dx.data_ptr<scalar_t>();
    at::parallel_for(0, n, 4096, [&](int64_t lo, int64_t hi) {
      for (int64_t i = lo; i < hi; ++i) {
        scalar_t bi = C ? pb[(i / inner) % C] : scalar_t(0);
        pdx[i] = bh::bias_act_grad_point<scalar_t>(pd[i], px[i], bi, act, alpha, gain, clamp);
      }
    });
  });
  return dx;
}

torch::Tensor upfirdn2d_cpu(torch::Tensor x, torch::Tensor f, int64_t upx, int64_t upy, int64_t downx, int64_t downy,
                            int64_t padx0, int64_t padx1, int64_t pady0, int64_t pady1, bool flip, double gain) {
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  const int64_t fh = f.size(0), fw = f.size(1);
  const int64_t oh = (H * upy + pady0 + pady1 - fh) / downy + 1;
  const int64_t ow = (W * upx + padx0 + padx1 - fw) / downx + 1;
  TORCH_CHECK(oh > 0 && ow > 0, "upfirdn2d: empty output");
  auto y = torch::empty({N, C, oh, ow}, x.options());
  const float* pf = f.data_ptr<float>();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "upfirdn2d_cpu", [&] {
    const scalar_t* px = x.data_ptr<scalar_t>();
    scalar_t* py = y.data_ptr<scalar_t>();
    at::parallel_for(0, N * C, 1, [&](int64_t lo, int64_t hi) {
      for (int64_t p = lo; p < hi; ++p)
        for (int64_t oy = 0; oy < oh; ++oy)
          for (int64_t ox = 0; ox < ow; ++ox)
            py[(p * oh + oy) * ow + ox] = bh::upfirdn2d_point<scalar_t>(
                px + p * H * W, H, W, pf, fh, fw, upx, upy, downx, downy, padx0, pady0, flip, scalar_t(gain), oy, ox);
    });
  });
  return y;
}

torch::Tensor grid_sample_forward_cpu(torch::Tensor input, torch::Tensor grid) {
  const int64_t N = input.size(0), C = input.size(1), H = input.size(2), W = input.size(3);
  const int64_t Ho = grid.size(1), Wo = grid.size(2);
  auto out = torch::zeros({N, C, Ho, Wo}, input.options());
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "grid_sample_forward_cpu", [&] {
    const scalar_t* pi = input.data_ptr<scalar_t>();
    const scalar_t* pg = grid.data_ptr<scalar_t>();
    scalar_t* po = out.data_ptr<scalar_t>();
    at::parallel_for(0, N * Ho * Wo, 256, [&](int64_t lo, int64_t hi) {
      for (int64_t q = lo; q < hi; ++q) {
        int64_t n = q / (Ho * Wo), s = q % (Ho * Wo);
        int64_t idx[4]; scalar_t w[4];
        bh::bilinear_corners<scalar_t>(pg[2 * q], pg[2 * q + 1], H, W, idx, w, nullptr, nullptr);
        for (int64_t c = 0; c < C; ++c) {
          const scalar_t* plane = pi + (n * C + c) * H * W;
          scalar_t acc = 0;
          for (int k = 0; k < 4; ++k) if (idx[k] >= 0) acc += w[k] * plane[idx[k]];
          po[(n * C + c) * Ho * Wo + s] = acc;
        }
      }
    });
  });
  return out;
}

std::vector<torch::Tensor> grid_sample_backward_cpu(torch::Tensor dy, torch::Tensor input, torch::Tensor grid) {
  const int64_t N = input.size(0), C = input.size(1), H = input.size(2), W = input.size(3);
  const int64_t Ho = grid.size(1), Wo = grid.size(2);
  auto din = torch::zeros_like(input);
  auto dgrid = torch::zeros_like(grid);
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "grid_sample_backward_cpu", [&] {
    const scalar_t* pi = input.data_ptr<scalar_t>();
    const scalar_t* pg = grid.data_ptr<scalar_t>();
    const scalar_t* pd = dy.data_ptr<scalar_t>();
    scalar_t* pdi = din.data_ptr<scalar_t>();
    scalar_t* pdg = dgrid.data_ptr<scalar_t>();
    // One task per batch item: each writes only its own slice of din and dgrid (no races).
    at::parallel_for(0, N, 1, [&](int64_t lo, int64_t hi) {
      for (int64_t n = lo; n < hi; ++n)
        for (int64_t s = 0; s < Ho * Wo; ++s) {
          int64_t q = n * Ho * Wo + s;
          int64_t idx[4]; scalar_t w[4], wx[4], wy[4];
          bh::bilinear_corners<scalar_t>(pg[2 * q], pg[2 * q + 1], H, W, idx, w, wx, wy);
          scalar_t gx = 0, gy = 0;
          for (int64_t c = 0; c < C; ++c) {
            scalar_t g = pd[(n * C + c) * Ho * Wo + s];
            const scalar_t* plane = pi + (n * C + c) * H * W;
            scalar_t* dplane = pdi + (n * C + c) * H * W;
            for (int k = 0; k < 4; ++k) if (idx[k] >= 0) {
              dplane[idx[k]] += w[k] * g;
              gx += wx[k] * plane[idx[k]] * g;
              gy += wy[k] * plane[idx[k]] * g;
            }
          }
          pdg[2 * q] = gx;
          pdg[2 * q + 1] = gy;
        }
    });
  });
  return {din, dgrid};
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

torch::Tensor bias_act_backward(torch::Tensor dy, torch::Tensor x, torch::Tensor b, int64_t dim, int64_t act, double alpha, double gain, double clamp) {
  x = x.contiguous(); dy = dy.contiguous().to(x.scalar_type()); b = b.contiguous().to(x.scalar_type());
  int64_t inner = inner_size(x, dim);
#ifdef BH_WITH_CUDA
  if (x.is_cuda()) return bias_act_backward_cuda(dy, x, b, inner, act, alpha, gain, clamp);
#endif
  TORCH_CHECK(x.device().is_cpu(), "bias_act: this build has no CUDA kernels");
  return bias_act_backward_cpu(dy, x, b, inner, act, alpha, gain, clamp);
}

torch::Tensor upfirdn2d(torch::Tensor x, torch::Tensor f, int64_t upx, int64_t upy, int64_t downx, int64_t downy,
                        int64_t padx0, int64_t padx1, int64_t pady0, int64_t pady1, bool flip, double gain) {
  TORCH_CHECK(x.dim() == 4 && f.dim() == 2, "upfirdn2d: x must be NCHW and f 2-D");
  x = x.contiguous();
  f = f.to(x.device(), torch::kFloat32).contiguous();
#ifdef BH_WITH_CUDA
  if (x.is_cuda()) return upfirdn2d_cuda(x, f, upx, upy, downx, downy, padx0, padx1, pady0, pady1, flip, gain);
#endif
  TORCH_CHECK(x.device().is_cpu(), "upfirdn2d: this build has no CUDA kernels");
  return upfirdn2d_cpu(x, f, upx, upy, downx, downy, padx0, padx1, pady0, pady1, flip, gain);
}

torch::Tensor grid_sample_forward(torch::Tensor input, torch::Tensor grid) {
  TORCH_CHECK(input.dim() == 4 && grid.dim() == 4 && grid.size(3) == 2, "grid_sample: NCHW input, NHW2 grid");
  input = input.contiguous(); grid = grid.contiguous().to(input.scalar_type());
#ifdef BH_WITH_CUDA
  if (input.is_cuda()) return grid_sample_forward_cuda(input, grid);
#endif
  TORCH_CHECK(input.device().is_cpu(), "grid_sample: this build has no CUDA kernels");
  return grid_sample_forward_cpu(input, grid);
}

std::vector<torch::Tensor> grid_sample_backward(torch::Tensor dy, torch::Tensor input, torch::Tensor grid) {
  input = input.contiguous(); grid = grid.contiguous().to(input.scalar_type()); dy = dy.contiguous().to(input.scalar_type());
#ifdef BH_WITH_CUDA
  if (input.is_cuda()) return grid_sample_backward_cuda(dy, input, grid);
#endif
  TORCH_CHECK(input.device().is_cpu(), "grid_sample: this build has no CUDA kernels");
  return grid_sample_backward_cpu(dy, input, grid);
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
  m.def("grid_sample_forward", &grid_sample_forward);
  m.def("grid_sample_backward", &grid_sample_backward);
  m.def("conv2d_forward", &conv2d_forward);
  m.def("has_cuda_kernels", &has_cuda_kernels);
}
