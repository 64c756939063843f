// Per-element math shared by the CPU (ops_cpu.cpp) and CUDA (ops_cuda.cu) kernels.
// Every function computes ONE output element, so the two backends only differ in how they loop.
// Conventions match the PyTorch references in balancehead/ops/*.py exactly.
#pragma once
#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define BH_HD __host__ __device__ __forceinline__
#else
#define BH_HD inline
#endif

namespace bh {

// Activation codes (keep in sync with balancehead/ops/bias_act.py ACTIVATIONS).
enum Act : int64_t { LINEAR = 0, RELU = 1, LRELU = 2, TANH = 3, SIGMOID = 4, SOFTPLUS = 5 };

template <typename T>
BH_HD T act_forward(T z, int64_t act, T alpha) {
  switch (act) {
    case RELU: return z > T(0) ? z : T(0);
    case LRELU: return z > T(0) ? z : z * alpha;
    case TANH: return tanh(z);
    case SIGMOID: return T(1) / (T(1) + exp(-z));
    case SOFTPLUS: return z > T(20) ? z : log1p(exp(z));
    default: return z;
  }
}

// d act(z) / dz
template <typename T>
BH_HD T act_derivative(T z, int64_t act, T alpha) {
  switch (act) {
    case RELU: return z > T(0) ? T(1) : T(0);
    case LRELU: return z > T(0) ? T(1) : alpha;
    case TANH: { T t = tanh(z); return T(1) - t * t; }
    case SIGMOID: { T s = T(1) / (T(1) + exp(-z)); return s * (T(1) - s); }
    case SOFTPLUS: return z > T(20) ? T(1) : T(1) / (T(1) + exp(-z));
    default: return T(1);
  }
}

// y = clamp(act(x + b) * gain, -clamp, clamp); clamp < 0 disables clamping.
template <typename T>
BH_HD T bias_act_point(T x, T b, int64_t act, T alpha, T gain, T clamp) {
  T y = act_forward(x + b, act, alpha) * gain;
  if (clamp >= T(0)) y = y > clamp ? clamp : (y < -clamp ? -clamp : y);
  return y;
}

// dL/dx given dL/dy; zero where the clamp was active (torch.clamp passes the boundary itself).
template <typename T>
BH_HD T bias_act_grad_point(T dy, T x, T b, int64_t act, T alpha, T gain, T clamp) {
  T z = x + b;
  if (clamp >= T(0)) {
    T y = act_forward(z, act, alpha) * gain;
    if (y > clamp || y < -clamp) return T(0);
  }
  return dy * gain * act_derivative(z, act, alpha);
}

// One output pixel (oy, ox) of upfirdn2d on one HxW plane `x`:
// zero-insertion upsample, pad (negative = crop), correlate with the (optionally flipped) filter, stride.
template <typename T>
BH_HD T upfirdn2d_point(const T* x, int64_t H, int64_t W, const float* f, int64_t fh, int64_t fw,
                        int64_t upx, int64_t upy, int64_t downx, int64_t downy,
                        int64_t padx0, int64_t pady0, bool flip, T gain, int64_t oy, int64_t ox) {
  T acc = T(0);
  for (int64_t ky = 0; ky < fh; ++ky) {
    int64_t uy = oy * downy + ky - pady0;
    if (uy < 0 || uy >= H * upy || uy % upy != 0) continue;
    int64_t iy = uy / upy;
    for (int64_t kx = 0; kx < fw; ++kx) {
      int64_t ux = ox * downx + kx - padx0;
      if (ux < 0 || ux >= W * upx || ux % upx != 0) continue;
      int64_t ix = ux / upx;
      float w = flip ? f[ky * fw + kx] : f[(fh - 1 - ky) * fw + (fw - 1 - kx)];
      acc += x[iy * W + ix] * T(w);
    }
  }
  return acc * gain;
}

// Bilinear sampling, zero padding, align_corners=False (the convention of the plane features).
// Fills the 4 corner indices (or -1 when outside) and weights for normalised coords (gx, gy).
template <typename T>
BH_HD void bilinear_corners(T gx, T gy, int64_t H, int64_t W, int64_t idx[4], T wgt[4], T* dwdx, T* dwdy) {
  T ix = ((gx + T(1)) * T(W) - T(1)) / T(2);
  T iy = ((gy + T(1)) * T(H) - T(1)) / T(2);
  int64_t x0 = (int64_t)floor(ix), y0 = (int64_t)floor(iy);
  T tx = ix - T(x0), ty = iy - T(y0);
  int64_t xs[4] = {x0, x0 + 1, x0, x0 + 1};
  int64_t ys[4] = {y0, y0, y0 + 1, y0 + 1};
  T w[4] = {(T(1) - tx) * (T(1) - ty), tx * (T(1) - ty), (T(1) - tx) * ty, tx * ty};
  // derivatives of each weight w.r.t. ix and iy
  T wx[4] = {-(T(1) - ty), (T(1) - ty), -ty, ty};
  T wy[4] = {-(T(1) - tx), -tx, (T(1) - tx), tx};
  for (int k = 0; k < 4; ++k) {
    bool inside = xs[k] >= 0 && xs[k] < W && ys[k] >= 0 && ys[k] < H;
    idx[k] = inside ? ys[k] * W + xs[k] : -1;
    wgt[k] = w[k];
    if (dwdx) dwdx[k] = wx[k] * T(W) / T(2);
    if (dwdy) dwdy[k] = wy[k] * T(H) / T(2);
  }
}

}  // namespace bh
