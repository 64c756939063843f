// Per-element math shared by the CPU (ops_cpu.cpp) and CUDA (ops_cuda.cu) kernels.
// Every function computes ONE output element, so the two backends only differ in how they loop.
// Conventions match the PyTorch references in balancehead/ops/*.py exactly.
//
// Types: `T` is the storage type (double, float, half, bfloat16), `A` the accumulation type
// (at::opmath_type<T>: float for float/half/bfloat16, double for double). Loads convert T -> A,
// all arithmetic runs in A, and only the final store converts back to T.
#pragma once
#include <cmath>
#include <cstdint>
#include <type_traits>

#if defined(__CUDACC__)
#define BH_HD __host__ __device__ __forceinline__
#define BH_UNROLL _Pragma("unroll")
#else
#define BH_HD inline
#define BH_UNROLL _Pragma("GCC unroll 4")
#endif

namespace bh {

// Activation codes (keep in sync with balancehead/ops/bias_act.py ACTIVATIONS).
enum Act : int64_t { LINEAR = 0, RELU = 1, LRELU = 2, TANH = 3, SIGMOID = 4, SOFTPLUS = 5 };

template <typename A>
BH_HD A act_forward(A z, int64_t act, A alpha) {
  switch (act) {
    case RELU: return z > A(0) ? z : A(0);
    case LRELU: return z > A(0) ? z : z * alpha;
    case TANH: return tanh(z);
    case SIGMOID: return A(1) / (A(1) + exp(-z));
    case SOFTPLUS: return z > A(20) ? z : log1p(exp(z));
    default: return z;
  }
}

// d act(z) / dz
template <typename A>
BH_HD A act_derivative(A z, int64_t act, A alpha) {
  switch (act) {
    case RELU: return z > A(0) ? A(1) : A(0);
    case LRELU: return z > A(0) ? A(1) : alpha;
    case TANH: { A t = tanh(z); return A(1) - t * t; }
    case SIGMOID: { A s = A(1) / (A(1) + exp(-z)); return s * (A(1) - s); }
    case SOFTPLUS: return z > A(20) ? A(1) : A(1) / (A(1) + exp(-z));
    default: return A(1);
  }
}

// y = clamp(act(x + b) * gain, -clamp, clamp); clamp < 0 disables clamping.
template <typename A>
BH_HD A bias_act_point(A x, A b, int64_t act, A alpha, A gain, A clamp) {
  A y = act_forward(x + b, act, alpha) * gain;
  if (clamp >= A(0)) y = y > clamp ? clamp : (y < -clamp ? -clamp : y);
  return y;
}

// dL/dx given dL/dy; zero where the clamp was active (torch.clamp passes the boundary itself).
template <typename A>
BH_HD A bias_act_grad_point(A dy, A x, A b, int64_t act, A alpha, A gain, A clamp) {
  A z = x + b;
  if (clamp >= A(0)) {
    A y = act_forward(z, act, alpha) * gain;
    if (y > clamp || y < -clamp) return A(0);
  }
  return dy * gain * act_derivative(z, act, alpha);
}

// dL/dx from the output y = clamp(act(x + b) * gain) alone, for the activations whose derivative the
// output determines (linear, relu, lrelu, softplus; gain > 0): the forward then keeps y -- which the next
// layer keeps anyway -- instead of x (EG3D's bias_act plugin does the same for the first three). The
// clamp blocks where |y| reached it, so a pre-clamp value of exactly +-clamp is blocked here and passed
// by the x-based rule above. softplus: sigmoid(z) = 1 - exp(-softplus(z)) = -expm1(-y / gain).
template <typename A>
BH_HD A bias_act_grad_from_y_point(A dy, A y, int64_t act, A alpha, A gain, A clamp) {
  if (clamp >= A(0) && !(y < clamp && y > -clamp)) return A(0);
  A d = A(1);
  if (act == RELU) d = y > A(0) ? A(1) : A(0);
  if (act == LRELU) d = y > A(0) ? A(1) : alpha;
  if (act == SOFTPLUS) d = -expm1(-y / gain);
  return dy * gain * d;
}

BH_HD int64_t pos_mod(int64_t a, int64_t m) { return ((a % m) + m) % m; }

// One output pixel (oy, ox) of upfirdn2d on one HxW plane `x`:
// zero-insertion upsample, pad (negative = crop), correlate with the (optionally flipped) filter, stride.
// Only the taps that land on a non-inserted sample are visited (every `up`-th tap, phase chosen per
// output pixel), so upsampling by 2 costs a quarter of the naive loop.
template <typename T, typename A>
BH_HD A upfirdn2d_point(const T* x, int64_t H, int64_t W, const float* f, int64_t fh, int64_t fw,
                        int64_t upx, int64_t upy, int64_t downx, int64_t downy,
                        int64_t padx0, int64_t pady0, bool flip, A gain, int64_t oy, int64_t ox) {
  A acc = A(0);
  const int64_t by = oy * downy - pady0, bx = ox * downx - padx0;  // position in the upsampled grid = b + k
  for (int64_t ky = pos_mod(-by, upy); ky < fh; ky += upy) {
    const int64_t uy = by + ky;
    if (uy < 0 || uy >= H * upy) continue;
    const T* row = x + (uy / upy) * W;
    for (int64_t kx = pos_mod(-bx, upx); kx < fw; kx += upx) {
      const int64_t ux = bx + kx;
      if (ux < 0 || ux >= W * upx) continue;
      const float w = flip ? f[ky * fw + kx] : f[(fh - 1 - ky) * fw + (fw - 1 - kx)];
      acc += static_cast<A>(row[ux / upx]) * A(w);
    }
  }
  return acc * gain;
}

// The same output pixel for the resampling every model layer uses -- a 4x4 filter with (up, down) one of
// (1, 1), (2, 1), (1, 2), and their adjoints are again among these -- with UP, DOWN and the filter size
// known at compile time and 32-bit indices: the loops unroll and no integer division is left (the
// general function above does two 64-bit divisions per tap). Same taps, same order, same float
// operations as upfirdn2d_point, so the results are identical.
template <typename T, typename A, int UP, int FH, int FW, bool CHECK>
BH_HD A upfirdn2d_taps_fixed(const T* x, int H, int W, const float* f, bool flip, int by, int bx) {
  A acc = A(0);
  const int ky0 = ((-by) % UP + UP) % UP, kx0 = ((-bx) % UP + UP) % UP;
BH_UNROLL
  for (int jy = 0; jy < (FH + UP - 1) / UP; ++jy) {
    const int ky = ky0 + jy * UP;
    const int uy = by + ky;
    if (ky >= FH || (CHECK && (uy < 0 || uy >= H * UP))) continue;
    const T* row = x + (int64_t)(uy / UP) * W;
BH_UNROLL
    for (int jx = 0; jx < (FW + UP - 1) / UP; ++jx) {
      const int kx = kx0 + jx * UP;
      const int ux = bx + kx;
      if (kx >= FW || (CHECK && (ux < 0 || ux >= W * UP))) continue;
      const float w = flip ? f[ky * FW + kx] : f[(FH - 1 - ky) * FW + (FW - 1 - kx)];
      acc += static_cast<A>(row[ux / UP]) * A(w);
    }
  }
  return acc;
}

template <typename T, typename A, int UP, int DOWN, int FH, int FW>
BH_HD A upfirdn2d_point_fixed(const T* x, int H, int W, const float* f, int padx0, int pady0, bool flip, A gain,
                              int oy, int ox) {
  const int by = oy * DOWN - pady0, bx = ox * DOWN - padx0;
  // a footprint wholly inside the (upsampled) input -- every pixel but a border of ~2 -- skips the bounds
  // tests; the taps and their order are the same either way
  const bool inside = by >= 0 && by + FH <= H * UP && bx >= 0 && bx + FW <= W * UP;
  const A acc = inside ? upfirdn2d_taps_fixed<T, A, UP, FH, FW, false>(x, H, W, f, flip, by, bx)
                       : upfirdn2d_taps_fixed<T, A, UP, FH, FW, true>(x, H, W, f, flip, by, bx);
  return acc * gain;
}

// Calls fn(std::integral_constant<int, UP>{}, std::integral_constant<int, DOWN>{}) and returns true when
// upfirdn2d_point_fixed covers the call (4x4 filter, equal factors per axis, a supported (up, down),
// every index within 32 bits); returns false, calling nothing, otherwise.
template <typename Fn>
inline bool upfirdn2d_fixed_dispatch(int64_t upx, int64_t upy, int64_t downx, int64_t downy, int64_t fh, int64_t fw,
                                     int64_t padx0, int64_t pady0, int64_t in_numel, int64_t out_numel, int64_t H,
                                     int64_t W, Fn&& fn) {
  const int64_t limit = int64_t(1) << 30;  // headroom: by = oy * DOWN - pad and uy = by + ky stay in int
  if (fh != 4 || fw != 4 || upx != upy || downx != downy || in_numel >= 2 * limit || out_numel >= 2 * limit ||
      H * upy >= limit || W * upx >= limit || padx0 >= limit || padx0 <= -limit || pady0 >= limit || pady0 <= -limit)
    return false;
  if (upx == 1 && downx == 1) { fn(std::integral_constant<int, 1>{}, std::integral_constant<int, 1>{}); return true; }
  if (upx == 2 && downx == 1) { fn(std::integral_constant<int, 2>{}, std::integral_constant<int, 1>{}); return true; }
  if (upx == 1 && downx == 2) { fn(std::integral_constant<int, 1>{}, std::integral_constant<int, 2>{}); return true; }
  return false;
}

// Bilinear sampling, zero padding, align_corners=False (the convention of the plane features).
// Fills the 4 corner indices (or -1 when outside) and weights for normalised coords (gx, gy),
// and, when asked, the derivatives of each weight w.r.t. gx and gy.
template <typename A>
BH_HD void bilinear_corners(A gx, A gy, int64_t H, int64_t W, int64_t idx[4], A wgt[4], A* dwdx, A* dwdy) {
  A ix = ((gx + A(1)) * A(W) - A(1)) / A(2);
  A iy = ((gy + A(1)) * A(H) - A(1)) / A(2);
  A fx = floor(ix), fy = floor(iy);
  // far outside (or NaN): no corner is inside; avoids overflow in the integer conversion
  if (!(fx > A(-2) && fx < A(W) && fy > A(-2) && fy < A(H))) {
    for (int k = 0; k < 4; ++k) { idx[k] = -1; wgt[k] = A(0); if (dwdx) dwdx[k] = A(0); if (dwdy) dwdy[k] = A(0); }
    return;
  }
  int64_t x0 = (int64_t)fx, y0 = (int64_t)fy;
  A tx = ix - fx, ty = iy - fy;
  int64_t xs[4] = {x0, x0 + 1, x0, x0 + 1};
  int64_t ys[4] = {y0, y0, y0 + 1, y0 + 1};
  A w[4] = {(A(1) - tx) * (A(1) - ty), tx * (A(1) - ty), (A(1) - tx) * ty, tx * ty};
  A wx[4] = {-(A(1) - ty), (A(1) - ty), -ty, ty};
  A wy[4] = {-(A(1) - tx), -tx, (A(1) - tx), tx};
  for (int k = 0; k < 4; ++k) {
    bool inside = xs[k] >= 0 && xs[k] < W && ys[k] >= 0 && ys[k] < H;
    idx[k] = inside ? ys[k] * W + xs[k] : -1;
    wgt[k] = w[k];
    if (dwdx) dwdx[k] = wx[k] * A(W) / A(2);
    if (dwdy) dwdy[k] = wy[k] * A(H) / A(2);
  }
}

// Where the planes' element (n, c, texel) and the samples' element (n, c, s) live: NCHW (a channel is a
// whole plane) or channels-last (NHWC: the C channels of one texel, or of one sample, are adjacent). In
// channels-last a sample's 4 corners are 4 runs of C values -- 4 cache lines for 32 float channels where
// NCHW touches 4 * C -- and its output is one run, already the (N, S, C) layout the decoder reads.
struct GridLayout {
  int64_t C, HW, S;
  bool cl;
  BH_HD int64_t plane(int64_t n, int64_t c, int64_t t) const { return cl ? (n * HW + t) * C + c : (n * C + c) * HW + t; }
  BH_HD int64_t sample(int64_t n, int64_t c, int64_t s) const { return cl ? (n * S + s) * C + c : (n * C + c) * S + s; }
};

// One channel of one sample: the 4 corners in order (the sum's order is the same in every layout and
// on every device, so the layouts give identical values).
template <typename T, typename A>
BH_HD A grid_sample_value(const T* in, const GridLayout& L, int64_t n, int64_t c, const int64_t idx[4], const A w[4]) {
  A acc = A(0);
  for (int k = 0; k < 4; ++k) if (idx[k] >= 0) acc += w[k] * static_cast<A>(in[L.plane(n, c, idx[k])]);
  return acc;
}

// Forward of one sample q = n * S + s for all C channels of the plane stack `in` -> `out`.
template <typename T, typename A>
BH_HD void grid_sample_forward_point(const T* in, const A* grid, T* out, const GridLayout& L, int64_t H, int64_t W,
                                     int64_t q) {
  const int64_t n = q / L.S, s = q % L.S;
  int64_t idx[4]; A w[4];
  bilinear_corners<A>(grid[2 * q], grid[2 * q + 1], H, W, idx, w, (A*)nullptr, (A*)nullptr);
  for (int64_t c = 0; c < L.C; ++c) out[L.sample(n, c, s)] = static_cast<T>(grid_sample_value<T, A>(in, L, n, c, idx, w));
}

// One channel's share of d grid for a sample with corners idx / weight derivatives wx, wy: accumulates
// into gx, gy (the caller sums over channels).
template <typename T, typename A>
BH_HD void grid_sample_dgrid_channel(const T* in, const GridLayout& L, int64_t n, int64_t c, A g, const int64_t idx[4],
                                     const A wx[4], const A wy[4], A& gx, A& gy) {
  for (int k = 0; k < 4; ++k) if (idx[k] >= 0) {
    const A v = static_cast<A>(in[L.plane(n, c, idx[k])]) * g;
    gx += wx[k] * v;
    gy += wy[k] * v;
  }
}

// d grid of one sample q (a gather over its 4 corners and C channels: no atomics), plus the corner
// keys (n * H*W + texel, or `sentinel` outside) and weights that the texel-gather backward sorts by.
template <typename T, typename A>
BH_HD void grid_sample_dgrid_point(const T* dy, const T* in, const A* grid, A* dgrid, int64_t* keys, A* wts,
                                   const GridLayout& L, int64_t H, int64_t W, int64_t sentinel, int64_t q) {
  const int64_t n = q / L.S, s = q % L.S;
  int64_t idx[4]; A w[4], wx[4], wy[4];
  bilinear_corners<A>(grid[2 * q], grid[2 * q + 1], H, W, idx, w, wx, wy);
  A gx = A(0), gy = A(0);
  for (int64_t c = 0; c < L.C; ++c)
    grid_sample_dgrid_channel<T, A>(in, L, n, c, static_cast<A>(dy[L.sample(n, c, s)]), idx, wx, wy, gx, gy);
  dgrid[2 * q] = gx;
  dgrid[2 * q + 1] = gy;
  if (keys) for (int k = 0; k < 4; ++k) {
    keys[4 * q + k] = idx[k] >= 0 ? n * L.HW + idx[k] : sentinel;
    wts[4 * q + k] = w[k];
  }
}

// The direct backward of one sample q: d grid as grid_sample_dgrid_point (same sums, same order), and
// each corner's share of d input handed to add(index into d input, value) -- a plain += on the CPU (one
// task per plane stack), an atomicAdd on CUDA.
template <typename T, typename A, typename Add>
BH_HD void grid_sample_direct_point(const T* dy, const T* in, const A* grid, A* dgrid, const GridLayout& L, int64_t H,
                                    int64_t W, int64_t q, Add&& add) {
  const int64_t n = q / L.S, s = q % L.S;
  int64_t idx[4]; A w[4], wx[4], wy[4];
  bilinear_corners<A>(grid[2 * q], grid[2 * q + 1], H, W, idx, w, wx, wy);
  A gx = A(0), gy = A(0);
  for (int64_t c = 0; c < L.C; ++c) {
    const A g = static_cast<A>(dy[L.sample(n, c, s)]);
    grid_sample_dgrid_channel<T, A>(in, L, n, c, g, idx, wx, wy, gx, gy);
    for (int k = 0; k < 4; ++k) if (idx[k] >= 0) add(L.plane(n, c, idx[k]), w[k] * g);
  }
  dgrid[2 * q] = gx;
  dgrid[2 * q + 1] = gy;
}

// d input of one texel (n, c, t), gathered from the sorted corner list: entries
// [start[n*HW + t], start[n*HW + t + 1]) of `order` are the corners (4 * q + k) that hit texel t.
// `dy_nsc` is dy in channels-last layout (N, S, C): the C threads of one texel read one contiguous row.
template <typename T, typename A>
BH_HD T grid_sample_dinput_texel(const T* dy_nsc, const int64_t* order, const int64_t* start, const A* wts,
                                 int64_t C, int64_t HW, int64_t n, int64_t c, int64_t t) {
  A acc = A(0);
  const int64_t key = n * HW + t;
  for (int64_t j = start[key]; j < start[key + 1]; ++j) {
    const int64_t e = order[j];
    acc += wts[e] * static_cast<A>(dy_nsc[(e >> 2) * C + c]);
  }
  return static_cast<T>(acc);
}

}  // namespace bh
