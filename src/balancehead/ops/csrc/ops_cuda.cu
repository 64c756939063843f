// CUDA kernels for balancehead.ops: one thread per output element, math shared with the CPU
// path through ops_common.h. Compiled only into the "balancehead_ops_cuda" extension.
#include <torch/extension.h>
#include <c10/cuda/CUDAStream.h>
#include "ops_common.h"

namespace {
constexpr int kThreads = 256;
inline int blocks_for(int64_t n) { return (int)((n + kThreads - 1) / kThreads); }

template <typename T>
__global__ void bias_act_fwd_kernel(const T* x, const T* b, T* y, int64_t n, int64_t inner, int64_t C,
                                    int64_t act, T alpha, T gain, T clamp) {
  int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  T bi = C ? b[(i / inner) % C] : T(0);
  y[i] = bh::bias_act_point<T>(x[i], bi, act, alpha, gain, clamp);
}

template <typename T>
__global__ void bias_act_bwd_kernel(const T* dy, const T* x, const T* b, T* dx, int64_t n, int64_t inner, int64_t C,
                                    int64_t act, T alpha, T gain, T clamp) {
  int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  T bi = C ? b[(i / inner) % C] : T(0);
  dx[i] = bh::bias_act_grad_point<T>(dy[i], x[i], bi, act, alpha, gain, clamp);
}

template <typename T>
__global__ void upfirdn2d_kernel(const T* x, const float* f, T* y, int64_t planes, int64_t H, int64_t W,
                                 int64_t oh, int64_t ow, int64_t fh, int64_t fw, int64_t upx, int64_t upy,
                                 int64_t downx, int64_t downy, int64_t padx0, int64_t pady0, bool flip, T gain) {
  int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= planes * oh * ow) return;
  int64_t p = i / (oh * ow), oy = (i / ow) % oh, ox = i % ow;
  y[i] = bh::upfirdn2d_point<T>(x + p * H * W, H, W, f, fh, fw, upx, upy, downx, downy, padx0, pady0, flip, gain, oy, ox);
}

template <typename T>
__global__ void grid_fwd_kernel(const T* in, const T* grid, T* out, int64_t N, int64_t C, int64_t H, int64_t W, int64_t S) {
  int64_t q = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (q >= N * S) return;
  int64_t n = q / S, s = q % S;
  int64_t idx[4]; T w[4];
  bh::bilinear_corners<T>(grid[2 * q], grid[2 * q + 1], H, W, idx, w, (T*)nullptr, (T*)nullptr);
  for (int64_t c = 0; c < C; ++c) {
    const T* plane = in + (n * C + c) * H * W;
    T acc = 0;
    for (int k = 0; k < 4; ++k) if (idx[k] >= 0) acc += w[k] * plane[idx[k]];
    out[(n * C + c) * S + s] = acc;
  }
}

template <typename T>
__global__ void grid_bwd_kernel(const T* dy, const T* in, const T* grid, T* din, T* dgrid,
                                int64_t N, int64_t C, int64_t H, int64_t W, int64_t S) {
  int64_t q = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (q >= N * S) return;
  int64_t n = q / S, s = q % S;
  int64_t idx[4]; T w[4], wx[4], wy[4];
  bh::bilinear_corners<T>(grid[2 * q], grid[2 * q + 1], H, W, idx, w, wx, wy);
  T gx = 0, gy = 0;
  for (int64_t c = 0; c < C; ++c) {
    T g = dy[(n * C + c) * S + s];
    const T* plane = in + (n * C + c) * H * W;
    T* dplane = din + (n * C + c) * H * W;
    for (int k = 0; k < 4; ++k) if (idx[k] >= 0) {
      atomicAdd(dplane + idx[k], w[k] * g);
      gx += wx[k] * plane[idx[k]] * g;
      gy += wy[k] * plane[idx[k]] * g;
    }
  }
  dgrid[2 * q] = gx;
  dgrid[2 * q + 1] = gy;
}
}  // namespace

torch::Tensor bias_act_forward_cuda(torch::Tensor x, torch::Tensor b, int64_t inner, int64_t act, double alpha, double gain, double clamp) {
  auto y = torch::empty_like(x);
  int64_t n = x.numel(), C = b.numel();
  if (n == 0) return y;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "bias_act_forward_cuda", [&] {
    bias_act_fwd_kernel<scalar_t><<<blocks_for(n), kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
        x.data_ptr<scalar_t>(), C ? b.data_ptr<scalar_t>() : nullptr, y.data_ptr<scalar_t>(), n, inner, C, act,
        scalar_t(alpha), scalar_t(gain), scalar_t(clamp));
  });
  return y;
}

torch::Tensor bias_act_backward_cuda(torch::Tensor dy, torch::Tensor x, torch::Tensor b, int64_t inner, int64_t act, double alpha, double gain, double clamp) {
  auto dx = torch::empty_like(x);
  int64_t n = x.numel(), C = b.numel();
  if (n == 0) return dx;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "bias_act_backward_cuda", [&] {
    bias_act_bwd_kernel<scalar_t><<<blocks_for(n), kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
        dy.data_ptr<scalar_t>(), x.data_ptr<scalar_t>(), C ? b.data_ptr<scalar_t>() : nullptr, dx.data_ptr<scalar_t>(),
        n, inner, C, act, scalar_t(alpha), scalar_t(gain), scalar_t(clamp));
  });
  return dx;
}

torch::Tensor upfirdn2d_cuda(torch::Tensor x, torch::Tensor f, int64_t upx, int64_t upy, int64_t downx, int64_t downy,
                             int64_t padx0, int64_t padx1, int64_t pady0, int64_t pady1, bool flip, double gain) {
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  const int64_t fh = f.size(0), fw = f.size(1);
  const int64_t oh = (H * upy + pady0 + pady1 - fh) / downy + 1;
  const int64_t ow = (W * upx + padx0 + padx1 - fw) / downx + 1;
  TORCH_CHECK(oh > 0 && ow > 0, "upfirdn2d: empty output");
  auto y = torch::empty({N, C, oh, ow}, x.options());
  int64_t n = N * C * oh * ow;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "upfirdn2d_cuda", [&] {
    upfirdn2d_kernel<scalar_t><<<blocks_for(n), kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
        x.data_ptr<scalar_t>(), f.data_ptr<float>(), y.data_ptr<scalar_t>(), N * C, H, W, oh, ow, fh, fw,
        upx, upy, downx, downy, padx0, pady0, flip, scalar_t(gain));
  });
  return y;
}

torch::Tensor grid_sample_forward_cuda(torch::Tensor input, torch::Tensor grid) {
  const int64_t N = input.size(0), C = input.size(1), H = input.size(2), W = input.size(3);
  const int64_t S = grid.size(1) * grid.size(2);
  auto out = torch::zeros({N, C, grid.size(1), grid.size(2)}, input.options());
  if (N * S == 0) return out;
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "grid_sample_forward_cuda", [&] {
    grid_fwd_kernel<scalar_t><<<blocks_for(N * S), kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
        input.data_ptr<scalar_t>(), grid.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), N, C, H, W, S);
  });
  return out;
}

std::vector<torch::Tensor> grid_sample_backward_cuda(torch::Tensor dy, torch::Tensor input, torch::Tensor grid) {
  const int64_t N = input.size(0), C = input.size(1), H = input.size(2), W = input.size(3);
  const int64_t S = grid.size(1) * grid.size(2);
  auto din = torch::zeros_like(input);
  auto dgrid = torch::zeros_like(grid);
  if (N * S == 0) return {din, dgrid};
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "grid_sample_backward_cuda", [&] {
    grid_bwd_kernel<scalar_t><<<blocks_for(N * S), kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
        dy.data_ptr<scalar_t>(), input.data_ptr<scalar_t>(), grid.data_ptr<scalar_t>(), din.data_ptr<scalar_t>(),
        dgrid.data_ptr<scalar_t>(), N, C, H, W, S);
  });
  return {din, dgrid};
}
