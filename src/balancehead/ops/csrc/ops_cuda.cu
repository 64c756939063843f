// CUDA kernels for balancehead.ops: one thread per output element, math shared with the CPU
// path through ops_common.h. Compiled only into the "balancehead_ops_cuda" extension.
// Every kernel takes double, float, half and bfloat16 and accumulates in at::opmath_type (float
// for the 16-bit types), so mixed-precision models run these kernels rather than the references.
#include <torch/extension.h>
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <algorithm>
#include <cstdint>
#include "ops_common.h"

#define BH_DISPATCH(TYPE, NAME, ...) \
  AT_DISPATCH_FLOATING_TYPES_AND2(at::ScalarType::Half, at::ScalarType::BFloat16, TYPE, NAME, __VA_ARGS__)

namespace {
constexpr int kThreads = 256;
inline unsigned blocks_for(int64_t n) { return (unsigned)((n + kThreads - 1) / kThreads); }
inline cudaStream_t stream() { return c10::cuda::getCurrentCUDAStream(); }
// Calls fn(int32_t{}) when n elements (plus a block) fit 32-bit indices, else fn(int64_t{}).
template <typename Fn>
void with_index_type(int64_t n, Fn&& fn) {
  if (n + kThreads < INT32_MAX) fn(int32_t{}); else fn(int64_t{});
}

// I: the index type, int32 whenever the tensor allows (the channel lookup's division is then 32-bit, as in
// EG3D's plugin; a 64-bit division costs several times more on the GPU than the memory traffic per element).
template <typename T, typename A, typename I>
__global__ void bias_act_fwd_kernel(const T* __restrict__ x, const T* __restrict__ b, T* __restrict__ y, I n,
                                    I inner, I C, int64_t act, A alpha, A gain, A clamp) {
  const I i = (I)blockIdx.x * (I)blockDim.x + (I)threadIdx.x;
  if (i >= n) return;
  A bi = C ? static_cast<A>(b[(i / inner) % C]) : A(0);
  y[i] = static_cast<T>(bh::bias_act_point<A>(static_cast<A>(x[i]), bi, act, alpha, gain, clamp));
}

template <typename T, typename A, typename I>
__global__ void bias_act_bwd_kernel(const T* __restrict__ dy, const T* __restrict__ x, const T* __restrict__ b,
                                    T* __restrict__ dx, I n, I inner, I C, int64_t act, A alpha,
                                    A gain, A clamp, bool from_y) {
  const I i = (I)blockIdx.x * (I)blockDim.x + (I)threadIdx.x;
  if (i >= n) return;
  if (from_y) {  // x holds the forward's output y
    dx[i] = static_cast<T>(bh::bias_act_grad_from_y_point<A>(static_cast<A>(dy[i]), static_cast<A>(x[i]), act, alpha,
                                                             gain, clamp));
    return;
  }
  A bi = C ? static_cast<A>(b[(i / inner) % C]) : A(0);
  dx[i] = static_cast<T>(bh::bias_act_grad_point<A>(static_cast<A>(dy[i]), static_cast<A>(x[i]), bi, act, alpha, gain, clamp));
}

template <typename T, typename A>
__global__ void upfirdn2d_kernel(const T* __restrict__ x, const float* __restrict__ f, T* __restrict__ y, int64_t planes,
                                 int64_t H, int64_t W, int64_t oh, int64_t ow, int64_t fh, int64_t fw, int64_t upx,
                                 int64_t upy, int64_t downx, int64_t downy, int64_t padx0, int64_t pady0, bool flip,
                                 A gain) {
  int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= planes * oh * ow) return;
  int64_t p = i / (oh * ow), oy = (i / ow) % oh, ox = i % ow;
  y[i] = static_cast<T>(bh::upfirdn2d_point<T, A>(x + p * H * W, H, W, f, fh, fw, upx, upy, downx, downy, padx0, pady0,
                                                  flip, gain, oy, ox));
}

// Fast path: thread (x, y) of block (bx, by, bz) computes output pixel (ox, oy) of planes bz, bz + gridDim.z, ...
// A warp covers 32 neighbouring pixels of one row (coalesced stores, neighbouring loads that the cache
// shares); the 4x4 filter sits in shared memory; no integer division anywhere.
template <typename T, typename A, int UP, int DOWN>
__global__ void upfirdn2d_fixed_kernel(const T* __restrict__ x, const float* __restrict__ f, T* __restrict__ y,
                                       int planes, int H, int W, int oh, int ow, int padx0, int pady0, bool flip,
                                       A gain) {
  __shared__ float sf[16];
  const int t = threadIdx.y * blockDim.x + threadIdx.x;
  if (t < 16) sf[t] = f[t];
  __syncthreads();
  const int ox = blockIdx.x * blockDim.x + threadIdx.x, oy = blockIdx.y * blockDim.y + threadIdx.y;
  if (ox >= ow || oy >= oh) return;
  for (int p = blockIdx.z; p < planes; p += gridDim.z)
    y[((int64_t)p * oh + oy) * ow + ox] = static_cast<T>(
        bh::upfirdn2d_point_fixed<T, A, UP, DOWN, 4, 4>(x + (int64_t)p * H * W, H, W, sf, padx0, pady0, flip, gain, oy, ox));
}

// NCHW: one thread per sample, looping over the channels (neighbouring threads = neighbouring samples).
template <typename T, typename A>
__global__ void grid_fwd_kernel(const T* __restrict__ in, const A* __restrict__ grid, T* __restrict__ out, int64_t NS,
                                bh::GridLayout L, int64_t H, int64_t W) {
  int64_t q = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (q >= NS) return;
  bh::grid_sample_forward_point<T, A>(in, grid, out, L, H, W, q);
}

// Channels-last: one warp per sample (block 32 x kWarpSamples), its lanes over the channels, so each
// corner is one coalesced read and the sample's output one coalesced write. Sample s of plane stack n
// comes from (blockIdx.x, threadIdx.y) and blockIdx.y (looping past 65535 stacks): no division per lane.
constexpr int kWarpSamples = 8;

inline dim3 cl_grid(int64_t N, int64_t S) {
  return dim3((unsigned)((S + kWarpSamples - 1) / kWarpSamples), (unsigned)std::min<int64_t>(N, 65535));
}

template <typename T, typename A>
__global__ void grid_fwd_cl_kernel(const T* __restrict__ in, const A* __restrict__ grid, T* __restrict__ out, int64_t N,
                                   bh::GridLayout L, int64_t H, int64_t W) {
  const int64_t s = (int64_t)blockIdx.x * blockDim.y + threadIdx.y;
  if (s >= L.S) return;
  for (int64_t n = blockIdx.y; n < N; n += gridDim.y) {
    const int64_t q = n * L.S + s;
    int64_t idx[4]; A w[4];
    bh::bilinear_corners<A>(grid[2 * q], grid[2 * q + 1], H, W, idx, w, (A*)nullptr, (A*)nullptr);
    for (int64_t c = threadIdx.x; c < L.C; c += 32)
      out[L.sample(n, c, s)] = static_cast<T>(bh::grid_sample_value<T, A>(in, L, n, c, idx, w));
  }
}

// Channels-last backward, one warp per sample: d grid is summed over the lanes' channels with shuffles
// (the whole warp shares q, so every lane reaches them); d input is either added with coalesced atomics
// into an A buffer (ATOMIC, "direct") or left to the gather, for which lane 0 writes the corner keys.
template <typename T, typename A, bool ATOMIC>
__global__ void grid_bwd_cl_kernel(const T* __restrict__ dy, const T* __restrict__ in, const A* __restrict__ grid,
                                   A* __restrict__ din, A* __restrict__ dgrid, int64_t* __restrict__ keys,
                                   A* __restrict__ wts, int64_t N, bh::GridLayout L, int64_t H, int64_t W,
                                   int64_t sentinel) {
  const int64_t s = (int64_t)blockIdx.x * blockDim.y + threadIdx.y;
  if (s >= L.S) return;
  for (int64_t n = blockIdx.y; n < N; n += gridDim.y) {
    const int64_t q = n * L.S + s;
    int64_t idx[4]; A w[4], wx[4], wy[4];
    bh::bilinear_corners<A>(grid[2 * q], grid[2 * q + 1], H, W, idx, w, wx, wy);
    A gx = A(0), gy = A(0);
    for (int64_t c = threadIdx.x; c < L.C; c += 32) {
      const A g = static_cast<A>(dy[L.sample(n, c, s)]);
      bh::grid_sample_dgrid_channel<T, A>(in, L, n, c, g, idx, wx, wy, gx, gy);
      if (ATOMIC)
        for (int k = 0; k < 4; ++k) if (idx[k] >= 0) atomicAdd(din + L.plane(n, c, idx[k]), w[k] * g);
    }
    for (int off = 16; off > 0; off >>= 1) {
      gx += __shfl_down_sync(0xffffffffu, gx, off);
      gy += __shfl_down_sync(0xffffffffu, gy, off);
    }
    if (threadIdx.x == 0) {
      dgrid[2 * q] = gx;
      dgrid[2 * q + 1] = gy;
      if (!ATOMIC)
        for (int k = 0; k < 4; ++k) {
          keys[4 * q + k] = idx[k] >= 0 ? n * L.HW + idx[k] : sentinel;
          wts[4 * q + k] = w[k];
        }
    }
  }
}

// Direct backward: d grid gathered per sample, d input scattered with atomics into an A buffer.
template <typename T, typename A>
__global__ void grid_bwd_atomic_kernel(const T* __restrict__ dy, const T* __restrict__ in, const A* __restrict__ grid,
                                       A* __restrict__ din, A* __restrict__ dgrid, int64_t NS, bh::GridLayout L,
                                       int64_t H, int64_t W) {
  int64_t q = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (q >= NS) return;
  bh::grid_sample_direct_point<T, A>(dy, in, grid, dgrid, L, H, W, q,
                                     [&](int64_t i, A v) { atomicAdd(din + i, v); });
}

template <typename T, typename A>
__global__ void grid_bwd_dgrid_kernel(const T* __restrict__ dy, const T* __restrict__ in, const A* __restrict__ grid,
                                      A* __restrict__ dgrid, int64_t* __restrict__ keys, A* __restrict__ wts,
                                      int64_t NS, bh::GridLayout L, int64_t H, int64_t W, int64_t sentinel) {
  int64_t q = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (q >= NS) return;
  bh::grid_sample_dgrid_point<T, A>(dy, in, grid, dgrid, keys, wts, L, H, W, sentinel, q);
}

// One thread per (n, texel, channel), channel fastest: the threads of one texel share its segment's
// order/weight reads and read one contiguous row of dy (N, S, C) per corner; in channels-last their
// writes are one contiguous row too.
template <typename T, typename A>
__global__ void grid_bwd_gather_kernel(const T* __restrict__ dy_nsc, const int64_t* __restrict__ order,
                                       const int64_t* __restrict__ start, const A* __restrict__ wts, T* __restrict__ din,
                                       int64_t total, bh::GridLayout L) {
  int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= total) return;
  const int64_t c = i % L.C, t = (i / L.C) % L.HW, n = i / (L.C * L.HW);
  din[L.plane(n, c, t)] = bh::grid_sample_dinput_texel<T, A>(dy_nsc, order, start, wts, L.C, L.HW, n, c, t);
}
}  // namespace

torch::Tensor bias_act_forward_cuda(torch::Tensor x, torch::Tensor b, int64_t inner, int64_t act, double alpha, double gain, double clamp) {
  const c10::cuda::CUDAGuard guard(x.device());
  auto y = torch::empty_like(x);
  int64_t n = x.numel(), C = b.numel();
  if (n == 0) return y;
  BH_DISPATCH(x.scalar_type(), "bias_act_forward_cuda", [&] {
    using A = at::opmath_type<scalar_t>;
    with_index_type(n, [&](auto index) {
      using I = decltype(index);
      bias_act_fwd_kernel<scalar_t, A, I><<<blocks_for(n), kThreads, 0, stream()>>>(
          x.data_ptr<scalar_t>(), C ? b.data_ptr<scalar_t>() : nullptr, y.data_ptr<scalar_t>(), (I)n, (I)inner, (I)C,
          act, A(alpha), A(gain), A(clamp));
    });
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return y;
}

torch::Tensor bias_act_backward_cuda(torch::Tensor dy, torch::Tensor x, torch::Tensor b, int64_t inner, int64_t act, double alpha, double gain, double clamp,
                                     bool from_y) {
  const c10::cuda::CUDAGuard guard(x.device());
  auto dx = torch::empty_like(x);
  int64_t n = x.numel(), C = b.numel();
  if (n == 0) return dx;
  BH_DISPATCH(x.scalar_type(), "bias_act_backward_cuda", [&] {
    using A = at::opmath_type<scalar_t>;
    with_index_type(n, [&](auto index) {
      using I = decltype(index);
      bias_act_bwd_kernel<scalar_t, A, I><<<blocks_for(n), kThreads, 0, stream()>>>(
          dy.data_ptr<scalar_t>(), x.data_ptr<scalar_t>(), C ? b.data_ptr<scalar_t>() : nullptr,
          dx.data_ptr<scalar_t>(), (I)n, (I)inner, (I)C, act, A(alpha), A(gain), A(clamp), from_y);
    });
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return dx;
}

torch::Tensor upfirdn2d_cuda(torch::Tensor x, torch::Tensor f, int64_t upx, int64_t upy, int64_t downx, int64_t downy,
                             int64_t padx0, int64_t padx1, int64_t pady0, int64_t pady1, bool flip, double gain,
                             bool general) {
  const c10::cuda::CUDAGuard guard(x.device());
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  const int64_t fh = f.size(0), fw = f.size(1);
  const int64_t oh = (H * upy + pady0 + pady1 - fh) / downy + 1;
  const int64_t ow = (W * upx + padx0 + padx1 - fw) / downx + 1;
  TORCH_CHECK(oh > 0 && ow > 0, "upfirdn2d: empty output");
  auto y = torch::empty({N, C, oh, ow}, x.options());
  int64_t n = N * C * oh * ow;
  if (n == 0) return y;
  BH_DISPATCH(x.scalar_type(), "upfirdn2d_cuda", [&] {
    using A = at::opmath_type<scalar_t>;
    const bool fixed = !general && oh <= 8 * 65535 && bh::upfirdn2d_fixed_dispatch(
        upx, upy, downx, downy, fh, fw, padx0, pady0, x.numel(), n, H, W, [&](auto up, auto down) {
          constexpr int UP = decltype(up)::value, DOWN = decltype(down)::value;
          const dim3 block(32, 8);
          const dim3 grid((unsigned)((ow + 31) / 32), (unsigned)((oh + 7) / 8), (unsigned)std::min<int64_t>(N * C, 65535));
          upfirdn2d_fixed_kernel<scalar_t, A, UP, DOWN><<<grid, block, 0, stream()>>>(
              x.data_ptr<scalar_t>(), f.data_ptr<float>(), y.data_ptr<scalar_t>(), (int)(N * C), (int)H, (int)W,
              (int)oh, (int)ow, (int)padx0, (int)pady0, flip, A(gain));
        });
    if (fixed) return;
    upfirdn2d_kernel<scalar_t, A><<<blocks_for(n), kThreads, 0, stream()>>>(
        x.data_ptr<scalar_t>(), f.data_ptr<float>(), y.data_ptr<scalar_t>(), N * C, H, W, oh, ow, fh, fw,
        upx, upy, downx, downy, padx0, pady0, flip, A(gain));
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return y;
}

// `cl`: the input (and so the output, d input) is channels-last; see bh::GridLayout.
torch::Tensor grid_sample_forward_cuda(torch::Tensor input, torch::Tensor grid, bool cl) {
  const c10::cuda::CUDAGuard guard(input.device());
  const int64_t N = input.size(0), C = input.size(1), H = input.size(2), W = input.size(3);
  const int64_t S = grid.size(1) * grid.size(2), NS = N * S;
  auto out = torch::empty({N, C, grid.size(1), grid.size(2)},
                          input.options().memory_format(cl ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous));
  if (NS * C == 0) return out;
  const bh::GridLayout L{C, H * W, S, cl};
  BH_DISPATCH(input.scalar_type(), "grid_sample_forward_cuda", [&] {
    using A = at::opmath_type<scalar_t>;
    if (cl)
      grid_fwd_cl_kernel<scalar_t, A><<<cl_grid(N, S), dim3(32, kWarpSamples), 0, stream()>>>(
          input.data_ptr<scalar_t>(), grid.data_ptr<A>(), out.data_ptr<scalar_t>(), N, L, H, W);
    else
      grid_fwd_kernel<scalar_t, A><<<blocks_for(NS), kThreads, 0, stream()>>>(
          input.data_ptr<scalar_t>(), grid.data_ptr<A>(), out.data_ptr<scalar_t>(), NS, L, H, W);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

std::vector<torch::Tensor> grid_sample_backward_atomic_cuda(torch::Tensor dy, torch::Tensor input, torch::Tensor grid, bool cl) {
  const c10::cuda::CUDAGuard guard(input.device());
  const int64_t N = input.size(0), C = input.size(1), H = input.size(2), W = input.size(3);
  const int64_t S = grid.size(1) * grid.size(2), NS = N * S;
  // grid is already in the accumulation dtype
  // (torch::zeros ignores a memory format in its options; empty honours it)
  auto acc = torch::empty(input.sizes(),
                          grid.options().memory_format(cl ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous)).zero_();
  auto dgrid = torch::zeros_like(grid);
  const bh::GridLayout L{C, H * W, S, cl};
  if (NS > 0) {
    BH_DISPATCH(input.scalar_type(), "grid_sample_backward_atomic_cuda", [&] {
      using A = at::opmath_type<scalar_t>;
      if (cl)
        grid_bwd_cl_kernel<scalar_t, A, true><<<cl_grid(N, S), dim3(32, kWarpSamples), 0, stream()>>>(
            dy.data_ptr<scalar_t>(), input.data_ptr<scalar_t>(), grid.data_ptr<A>(), acc.data_ptr<A>(),
            dgrid.data_ptr<A>(), nullptr, nullptr, N, L, H, W, 0);
      else
        grid_bwd_atomic_kernel<scalar_t, A><<<blocks_for(NS), kThreads, 0, stream()>>>(
            dy.data_ptr<scalar_t>(), input.data_ptr<scalar_t>(), grid.data_ptr<A>(), acc.data_ptr<A>(),
            dgrid.data_ptr<A>(), NS, L, H, W);
    });
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  return {acc.to(input.scalar_type()), dgrid};
}

std::vector<torch::Tensor> grid_sample_backward_dgrid_cuda(torch::Tensor dy, torch::Tensor input, torch::Tensor grid, bool cl) {
  const c10::cuda::CUDAGuard guard(input.device());
  const int64_t N = input.size(0), C = input.size(1), H = input.size(2), W = input.size(3);
  const int64_t S = grid.size(1) * grid.size(2), NS = N * S;
  auto dgrid = torch::empty_like(grid);
  auto keys = torch::empty({NS * 4}, grid.options().dtype(torch::kInt64));
  auto wts = torch::empty({NS * 4}, grid.options());
  const bh::GridLayout L{C, H * W, S, cl};
  if (NS > 0) {
    BH_DISPATCH(input.scalar_type(), "grid_sample_backward_dgrid_cuda", [&] {
      using A = at::opmath_type<scalar_t>;
      if (cl)
        grid_bwd_cl_kernel<scalar_t, A, false><<<cl_grid(N, S), dim3(32, kWarpSamples), 0, stream()>>>(
            dy.data_ptr<scalar_t>(), input.data_ptr<scalar_t>(), grid.data_ptr<A>(), nullptr, dgrid.data_ptr<A>(),
            keys.data_ptr<int64_t>(), wts.data_ptr<A>(), N, L, H, W, N * H * W);
      else
        grid_bwd_dgrid_kernel<scalar_t, A><<<blocks_for(NS), kThreads, 0, stream()>>>(
            dy.data_ptr<scalar_t>(), input.data_ptr<scalar_t>(), grid.data_ptr<A>(), dgrid.data_ptr<A>(),
            keys.data_ptr<int64_t>(), wts.data_ptr<A>(), NS, L, H, W, N * H * W);
    });
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  return {dgrid, keys, wts};
}

torch::Tensor grid_sample_backward_gather_cuda(torch::Tensor dy_nsc, torch::Tensor order, torch::Tensor start, torch::Tensor wts,
                                               int64_t N, int64_t C, int64_t H, int64_t W, bool cl) {
  const c10::cuda::CUDAGuard guard(dy_nsc.device());
  const int64_t HW = H * W, total = N * C * HW;
  auto din = torch::empty({N, C, H, W},
                          dy_nsc.options().memory_format(cl ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous));
  if (total == 0) return din;
  const bh::GridLayout L{C, HW, 0, cl};
  BH_DISPATCH(dy_nsc.scalar_type(), "grid_sample_backward_gather_cuda", [&] {
    using A = at::opmath_type<scalar_t>;
    grid_bwd_gather_kernel<scalar_t, A><<<blocks_for(total), kThreads, 0, stream()>>>(
        dy_nsc.data_ptr<scalar_t>(), order.data_ptr<int64_t>(), start.data_ptr<int64_t>(), wts.data_ptr<A>(),
        din.data_ptr<scalar_t>(), total, L);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return din;
}
