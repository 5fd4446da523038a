// CUDA kernels of multi-scale deformable attention (see ms_deform_attn.h for shapes and
// semantics: per level, grid_sample(bilinear, zeros padding, align_corners=False)).
//
// Parallel decomposition. One *group* of G lanes (G a power of two <= 32, so a group never
// straddles a warp) handles one (n, q, m) triple, i.e. one row of D output channels. Each lane
// owns VEC consecutive channels (VEC = 4, 2 or 1, the widest that divides D and keeps accesses
// aligned and at most 16 bytes) and strides by G * VEC when D is wider than the group. G is the
// smallest power of two that covers D / VEC, so for the common D = 32 in fp32 eight lanes read
// one 128-byte line per bilinear corner with float4 loads.
//
// Why: the location, attention weight and bilinear footprint of a sampling point are the same
// for all D channels, so they are computed once per lane from broadcast loads instead of once
// per channel, and the per-channel work is vectorized. In the backward pass the gradients of a
// sampling point's location and attention weight are sums over the D channels: each lane sums
// its channels in registers, the group reduces with warp shuffles, and lane 0 writes the result
// once (no atomics, no shared memory). Only grad_value, scattered to bilinear corners shared by
// many queries, needs atomicAdd (vector atomics on sm_90); for half/bfloat16 it accumulates in
// a float32 buffer that is cast at the end.
//
// All arithmetic uses at::opmath_type<T> (float for half/bfloat16/float, double for double).
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <tuple>
#include <type_traits>

#include "ms_deform_attn.h"

namespace ddetr {
namespace {

constexpr int kThreads = 256;        // threads per block, a multiple of every group size
constexpr int kMaxAccessBytes = 16;  // widest vector load/store per lane

// Sizes shared by both kernels. A group index g enumerates (n, q, m) as g = (n * Lq + q) * M + m,
// which is also the row of the (N * Lq * M, D) output and of the (N * Lq * M, L * P) weights.
struct Sizes {
  int64_t groups;  // N * Lq * M
  int64_t lq_m;    // Lq * M
  int64_t S;       // value positions per batch item
  int M, D, L, P;
  int lane_bits;   // log2 of the group size G
};

// VEC consecutive elements, aligned so that one access is a single vector instruction.
template <typename T, int VEC>
struct alignas(sizeof(T) * VEC) Pack {
  T v[VEC];
};

template <int VEC, typename T, typename A>
__device__ __forceinline__ void load_vec(const T* __restrict__ p, A (&out)[VEC]) {
  const Pack<T, VEC> pk = *reinterpret_cast<const Pack<T, VEC>*>(p);
#pragma unroll
  for (int j = 0; j < VEC; ++j) out[j] = static_cast<A>(pk.v[j]);
}

template <int VEC, typename T, typename A>
__device__ __forceinline__ void store_vec(T* __restrict__ p, const A (&in)[VEC]) {
  Pack<T, VEC> pk;
#pragma unroll
  for (int j = 0; j < VEC; ++j) pk.v[j] = static_cast<T>(in[j]);
  *reinterpret_cast<Pack<T, VEC>*>(p) = pk;
}

// p[j] += in[j] atomically, per element; sm_90 has float2/float4 atomics (one instruction).
template <int VEC, typename A>
__device__ __forceinline__ void atomic_add_vec(A* p, const A (&in)[VEC]) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  constexpr bool kVectorAtomic = std::is_same_v<A, float> && VEC > 1;
#else
  constexpr bool kVectorAtomic = false;
#endif
  if constexpr (kVectorAtomic && VEC == 4) {
    atomicAdd(reinterpret_cast<float4*>(p), make_float4(in[0], in[1], in[2], in[3]));
  } else if constexpr (kVectorAtomic && VEC == 2) {
    atomicAdd(reinterpret_cast<float2*>(p), make_float2(in[0], in[1]));
  } else {
#pragma unroll
    for (int j = 0; j < VEC; ++j) atomicAdd(p + j, in[j]);
  }
}

// Sum of v over the G lanes of this thread's group; every lane gets the result. `mask` holds
// exactly the group's lanes, so groups of one warp may diverge (e.g. a tail group returning).
template <typename A>
__device__ __forceinline__ A group_sum(A v, int lanes, unsigned mask) {
  for (int offset = lanes >> 1; offset > 0; offset >>= 1) v += __shfl_xor_sync(mask, v, offset);
  return v;
}

// Bilinear footprint of one sampling point on one level. Corner k is (x0 + (k & 1), y0 + (k >> 1)):
// 0 = nw, 1 = ne, 2 = sw, 3 = se.
template <typename A>
struct Footprint {
  int64_t row[4];  // value position in [0, S) of each corner, or -1 (zero padding)
  A w[4];          // bilinear weight of each corner
  A lx, ly;        // x - x0, y - y0
};

// Fills f for pixel coordinates (x, y) (x = loc_x * W - 0.5). Returns false, leaving f
// unset, when no corner can lie inside the image: x or y outside (-2, W + 1) / (-2, H + 1),
// NaN included. This test precedes the float->int casts, which are therefore always in range.
// Corners outside the image, or (with a malformed level_start_index) outside [0, S), get row -1.
template <typename A>
__device__ __forceinline__ bool make_footprint(A x, A y, int64_t H, int64_t W, int64_t start,
                                               int64_t S, Footprint<A>& f) {
  if (!(x > A(-2) && x < static_cast<A>(W + 1) && y > A(-2) && y < static_cast<A>(H + 1))) {
    return false;
  }
  const A xf = floor(x), yf = floor(y);
  const int64_t x0 = static_cast<int64_t>(xf), y0 = static_cast<int64_t>(yf);
  f.lx = x - xf;
  f.ly = y - yf;
  const A hx = A(1) - f.lx, hy = A(1) - f.ly;
  f.w[0] = hx * hy;
  f.w[1] = f.lx * hy;
  f.w[2] = hx * f.ly;
  f.w[3] = f.lx * f.ly;
#pragma unroll
  for (int k = 0; k < 4; ++k) {
    const int64_t xi = x0 + (k & 1), yi = y0 + (k >> 1);
    int64_t row = -1;
    if (xi >= 0 && xi < W && yi >= 0 && yi < H) {
      row = start + yi * W + xi;
      if (row < 0 || row >= S) row = -1;
    }
    f.row[k] = row;
  }
  return true;
}

// out[g, c] = sum_{l, p} attn[g, l, p] * bilinear(value[n, level l, m, c], loc[g, l, p]).
template <typename T, int VEC>
__global__ void __launch_bounds__(kThreads)
    ms_deform_attn_forward_kernel(const T* __restrict__ value,           // (N, S, M, D)
                                  const int64_t* __restrict__ shapes,    // (L, 2) rows (H, W)
                                  const int64_t* __restrict__ starts,    // (L,)
                                  const T* __restrict__ loc,             // (N, Lq, M, L, P, 2)
                                  const T* __restrict__ attn,            // (N, Lq, M, L, P)
                                  T* __restrict__ out,                   // (N, Lq, M, D)
                                  const Sizes sz) {
  using A = at::opmath_type<T>;
  const int lanes = 1 << sz.lane_bits;
  const int64_t g =
      static_cast<int64_t>(blockIdx.x) * (kThreads >> sz.lane_bits) + (threadIdx.x >> sz.lane_bits);
  if (g >= sz.groups) return;
  const int lane = threadIdx.x & (lanes - 1);

  const int64_t n = g / sz.lq_m;
  const int m = static_cast<int>(g % sz.M);
  const int64_t row_stride = static_cast<int64_t>(sz.M) * sz.D;  // between value positions
  const T* value_nm = value + (n * sz.S * sz.M + m) * sz.D;      // value[n, 0, m, 0]
  const int LP = sz.L * sz.P;
  const T* loc_g = loc + g * LP * 2;
  const T* attn_g = attn + g * LP;

  for (int c = lane * VEC; c < sz.D; c += lanes * VEC) {
    A acc[VEC] = {};
    for (int l = 0; l < sz.L; ++l) {
      const int64_t H = shapes[2 * l], W = shapes[2 * l + 1], start = starts[l];
      for (int i = l * sz.P; i < (l + 1) * sz.P; ++i) {
        const A x = static_cast<A>(loc_g[2 * i]) * static_cast<A>(W) - A(0.5);
        const A y = static_cast<A>(loc_g[2 * i + 1]) * static_cast<A>(H) - A(0.5);
        Footprint<A> f;
        if (!make_footprint(x, y, H, W, start, sz.S, f)) continue;
        const A a = static_cast<A>(attn_g[i]);
#pragma unroll
        for (int k = 0; k < 4; ++k) {
          if (f.row[k] < 0) continue;
          A v[VEC];
          load_vec<VEC>(value_nm + f.row[k] * row_stride + c, v);
          const A wk = a * f.w[k];
#pragma unroll
          for (int j = 0; j < VEC; ++j) acc[j] += wk * v[j];
        }
      }
    }
    store_vec<VEC>(out + g * sz.D + c, acc);
  }
}

// With go = grad_output[g, :] and, per sampling point i = (l, p) with attention weight a_i,
// corner values v_k (length D) and bilinear weights w_k(x, y):
//   grad_value[corner k] += a_i * w_k * go
//   grad_attn[g, i]       = sum_k w_k * <go, v_k>
//   grad_loc[g, i, 0]     = a_i * W * sum_k (d w_k / d x) * <go, v_k>     (d x / d loc_x = W)
//   grad_loc[g, i, 1]     = a_i * H * sum_k (d w_k / d y) * <go, v_k>
// Corners outside the image have v_k = 0 and drop out of every sum, as in grid_sample's backward;
// a corner inside the image counts even with w_k = 0 (at x == -1 the corners of column
// x0 + 1 = 0 have w_k = 0 but d w_k / d x != 0).
// At least 3 blocks per SM: caps registers at ~80 (no spills for any instantiation on sm_80/sm_90)
// where ptxas would otherwise take up to 128 for half/bfloat16 and leave 25% occupancy.
template <typename T, int VEC>
__global__ void __launch_bounds__(kThreads, 3)
    ms_deform_attn_backward_kernel(const T* __restrict__ value,            // (N, S, M, D)
                                   const int64_t* __restrict__ shapes,     // (L, 2) rows (H, W)
                                   const int64_t* __restrict__ starts,     // (L,)
                                   const T* __restrict__ loc,              // (N, Lq, M, L, P, 2)
                                   const T* __restrict__ attn,             // (N, Lq, M, L, P)
                                   const T* __restrict__ grad_out,         // (N, Lq, M, D)
                                   at::opmath_type<T>* __restrict__ grad_value,  // (N, S, M, D)
                                   T* __restrict__ grad_loc,               // (N, Lq, M, L, P, 2)
                                   T* __restrict__ grad_attn,              // (N, Lq, M, L, P)
                                   const Sizes sz) {
  using A = at::opmath_type<T>;
  const int lanes = 1 << sz.lane_bits;
  const int64_t g =
      static_cast<int64_t>(blockIdx.x) * (kThreads >> sz.lane_bits) + (threadIdx.x >> sz.lane_bits);
  if (g >= sz.groups) return;  // whole groups only: the shuffles below stay well defined
  const int lane = threadIdx.x & (lanes - 1);
  const int warp_lane = threadIdx.x & 31;
  const unsigned group_mask =
      lanes == 32 ? 0xffffffffu : ((1u << lanes) - 1u) << (warp_lane & ~(lanes - 1));

  const int64_t n = g / sz.lq_m;
  const int m = static_cast<int>(g % sz.M);
  const int64_t row_stride = static_cast<int64_t>(sz.M) * sz.D;
  const int64_t value_nm = (n * sz.S * sz.M + m) * sz.D;  // offset of value[n, 0, m, 0]
  const int LP = sz.L * sz.P;
  const T* loc_g = loc + g * LP * 2;
  const T* attn_g = attn + g * LP;
  const T* go_g = grad_out + g * sz.D;

  for (int l = 0; l < sz.L; ++l) {
    const int64_t H = shapes[2 * l], W = shapes[2 * l + 1], start = starts[l];
    for (int i = l * sz.P; i < (l + 1) * sz.P; ++i) {
      const A x = static_cast<A>(loc_g[2 * i]) * static_cast<A>(W) - A(0.5);
      const A y = static_cast<A>(loc_g[2 * i + 1]) * static_cast<A>(H) - A(0.5);
      const A a = static_cast<A>(attn_g[i]);
      A gx = 0, gy = 0, ga = 0;  // this lane's channel sums
      Footprint<A> f;
      if (make_footprint(x, y, H, W, start, sz.S, f)) {
        const A hx = A(1) - f.lx, hy = A(1) - f.ly;
        const A dw_dx[4] = {-hy, hy, -f.ly, f.ly};  // d w_k / d x
        const A dw_dy[4] = {-hx, -f.lx, hx, f.lx};  // d w_k / d y
        for (int c = lane * VEC; c < sz.D; c += lanes * VEC) {
          A go[VEC];
          load_vec<VEC>(go_g + c, go);
#pragma unroll
          for (int k = 0; k < 4; ++k) {
            if (f.row[k] < 0) continue;  // zero padding: contributes nothing
            const int64_t offset = value_nm + f.row[k] * row_stride + c;
            A v[VEC];
            load_vec<VEC>(value + offset, v);
            A dot = 0;  // sum_c go_c * v_k,c over this lane's channels
#pragma unroll
            for (int j = 0; j < VEC; ++j) dot += go[j] * v[j];
            ga += f.w[k] * dot;
            gx += dw_dx[k] * dot;
            gy += dw_dy[k] * dot;
            const A wk = a * f.w[k];
            A d[VEC];
#pragma unroll
            for (int j = 0; j < VEC; ++j) d[j] = wk * go[j];
            atomic_add_vec<VEC>(grad_value + offset, d);
          }
        }
      }
      // Every lane of the group reaches this point for every i (the loop bounds are uniform).
      gx = group_sum(gx, lanes, group_mask);
      gy = group_sum(gy, lanes, group_mask);
      ga = group_sum(ga, lanes, group_mask);
      if (lane == 0) {
        grad_loc[(g * LP + i) * 2] = static_cast<T>(a * static_cast<A>(W) * gx);
        grad_loc[(g * LP + i) * 2 + 1] = static_cast<T>(a * static_cast<A>(H) * gy);
        grad_attn[g * LP + i] = static_cast<T>(ga);
      }
    }
  }
}

// Widest VEC (elements per lane) that divides D, keeps one access within kMaxAccessBytes and
// for which every pointer is aligned to VEC elements (inputs may be offset views).
int pick_vec(int64_t D, size_t elem_size, std::initializer_list<const void*> ptrs) {
  for (int vec = std::min<int>(4, kMaxAccessBytes / static_cast<int>(elem_size)); vec > 1; vec /= 2) {
    const bool aligned = std::all_of(ptrs.begin(), ptrs.end(), [&](const void* p) {
      return reinterpret_cast<uintptr_t>(p) % (vec * elem_size) == 0;
    });
    if (D % vec == 0 && aligned) return vec;
  }
  return 1;
}

// Calls f(std::integral_constant<int, VEC>) for the runtime vec; only instantiates the VEC values
// pick_vec can return for T.
template <typename T, typename F>
void with_vec(int vec, F&& f) {
  constexpr int kMaxVec = std::min<int>(4, kMaxAccessBytes / sizeof(T));
  if constexpr (kMaxVec >= 4) {
    if (vec == 4) return f(std::integral_constant<int, 4>{});
  }
  if (vec == 2) return f(std::integral_constant<int, 2>{});
  f(std::integral_constant<int, 1>{});
}

struct LaunchPlan {
  Sizes sz;
  int vec;
  unsigned blocks;
};

LaunchPlan plan_launch(const at::Tensor& value, const at::Tensor& sampling_locations, int vec) {
  LaunchPlan plan;
  plan.vec = vec;
  const int64_t N = value.size(0), S = value.size(1), M = value.size(2), D = value.size(3);
  const int64_t Lq = sampling_locations.size(1), L = sampling_locations.size(3),
                P = sampling_locations.size(4);
  constexpr int64_t kIntMax = std::numeric_limits<int>::max();
  TORCH_CHECK(M <= kIntMax && D <= kIntMax && L * P <= kIntMax,
              "ms_deform_attn: M, D and L * P must fit in int32");
  int lane_bits = 0;  // smallest G = 2^lane_bits <= 32 with G * vec >= D
  while (lane_bits < 5 && (int64_t{1} << lane_bits) * vec < D) ++lane_bits;
  plan.sz = Sizes{N * Lq * M,
                  Lq * M,
                  S,
                  static_cast<int>(M),
                  static_cast<int>(D),
                  static_cast<int>(L),
                  static_cast<int>(P),
                  lane_bits};
  const int64_t groups_per_block = kThreads >> lane_bits;
  const int64_t blocks = (plan.sz.groups + groups_per_block - 1) / groups_per_block;
  TORCH_CHECK(blocks <= std::numeric_limits<int32_t>::max(),
              "ms_deform_attn: input too large for one CUDA launch");
  plan.blocks = static_cast<unsigned>(blocks);
  return plan;
}

void check_cuda(const at::Tensor& value) {
  // check_ms_deform_attn_inputs has already checked that all inputs share value's device.
  TORCH_CHECK(value.is_cuda(), "ms_deform_attn: CUDA kernel called with tensors on ",
              value.device());
}

at::Tensor ms_deform_attn_forward_cuda(const at::Tensor& value, const at::Tensor& spatial_shapes,
                                       const at::Tensor& level_start_index,
                                       const at::Tensor& sampling_locations,
                                       const at::Tensor& attention_weights,
                                       int64_t /*im2col_step: a hint, unused*/) {
  check_ms_deform_attn_inputs(value, spatial_shapes, level_start_index, sampling_locations,
                              attention_weights);
  check_cuda(value);
  const c10::cuda::CUDAGuard guard(value.device());
  const at::Tensor value_c = value.contiguous(), shapes_c = spatial_shapes.contiguous(),
                   starts_c = level_start_index.contiguous(),
                   loc_c = sampling_locations.contiguous(), attn_c = attention_weights.contiguous();

  const int64_t N = value.size(0), M = value.size(2), D = value.size(3);
  const int64_t Lq = sampling_locations.size(1);
  at::Tensor out = at::empty({N, Lq, M * D}, value_c.options());
  if (out.numel() == 0) return out;

  const LaunchPlan plan =
      plan_launch(value_c, loc_c, pick_vec(D, value_c.element_size(), {value_c.data_ptr()}));
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, value_c.scalar_type(), "ms_deform_attn_forward_cuda", [&] {
        with_vec<scalar_t>(plan.vec, [&](auto vec_c) {
          constexpr int VEC = decltype(vec_c)::value;
          ms_deform_attn_forward_kernel<scalar_t, VEC><<<plan.blocks, kThreads, 0, stream>>>(
              value_c.const_data_ptr<scalar_t>(), shapes_c.const_data_ptr<int64_t>(),
              starts_c.const_data_ptr<int64_t>(), loc_c.const_data_ptr<scalar_t>(),
              attn_c.const_data_ptr<scalar_t>(), out.mutable_data_ptr<scalar_t>(), plan.sz);
          C10_CUDA_KERNEL_LAUNCH_CHECK();
        });
      });
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> ms_deform_attn_backward_cuda(
    const at::Tensor& value, const at::Tensor& spatial_shapes, const at::Tensor& level_start_index,
    const at::Tensor& sampling_locations, const at::Tensor& attention_weights,
    const at::Tensor& grad_output, int64_t /*im2col_step: a hint, unused*/) {
  check_ms_deform_attn_inputs(value, spatial_shapes, level_start_index, sampling_locations,
                              attention_weights);
  check_cuda(value);
  const int64_t N = value.size(0), M = value.size(2), D = value.size(3);
  const int64_t Lq = sampling_locations.size(1);
  TORCH_CHECK(grad_output.device() == value.device(), "ms_deform_attn: grad_output must be on ",
              value.device(), ", got ", grad_output.device());
  TORCH_CHECK(grad_output.scalar_type() == value.scalar_type(),
              "ms_deform_attn: grad_output must be ", value.scalar_type(), ", got ",
              grad_output.scalar_type());
  TORCH_CHECK(grad_output.dim() == 3 && grad_output.size(0) == N && grad_output.size(1) == Lq &&
                  grad_output.size(2) == M * D,
              "ms_deform_attn: grad_output must be (N, Lq, M * D) = (", N, ", ", Lq, ", ", M * D,
              "), got ", grad_output.sizes());
  const c10::cuda::CUDAGuard guard(value.device());
  const at::Tensor value_c = value.contiguous(), shapes_c = spatial_shapes.contiguous(),
                   starts_c = level_start_index.contiguous(),
                   loc_c = sampling_locations.contiguous(), attn_c = attention_weights.contiguous(),
                   grad_out_c = grad_output.contiguous();

  // grad_value accumulates atomically in the op-math type (float32 for half/bfloat16).
  const at::ScalarType acc_type = at::toOpMathType(value.scalar_type());
  at::Tensor grad_value_acc = at::zeros(value.sizes(), value_c.options().dtype(acc_type));
  at::Tensor grad_loc = at::empty(sampling_locations.sizes(), loc_c.options());
  at::Tensor grad_attn = at::empty(attention_weights.sizes(), attn_c.options());

  // Every (n, q, m, l, p) gets its gradients written by the kernel, even when D == 0.
  if (attn_c.numel() > 0) {
    const LaunchPlan plan =
        plan_launch(value_c, loc_c,
                    pick_vec(D, value_c.element_size(),
                             {value_c.data_ptr(), grad_out_c.data_ptr()}));
    const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
    AT_DISPATCH_FLOATING_TYPES_AND2(
        at::kHalf, at::kBFloat16, value_c.scalar_type(), "ms_deform_attn_backward_cuda", [&] {
          using acc_t = at::opmath_type<scalar_t>;
          with_vec<scalar_t>(plan.vec, [&](auto vec_c) {
            constexpr int VEC = decltype(vec_c)::value;
            ms_deform_attn_backward_kernel<scalar_t, VEC><<<plan.blocks, kThreads, 0, stream>>>(
                value_c.const_data_ptr<scalar_t>(), shapes_c.const_data_ptr<int64_t>(),
                starts_c.const_data_ptr<int64_t>(), loc_c.const_data_ptr<scalar_t>(),
                attn_c.const_data_ptr<scalar_t>(), grad_out_c.const_data_ptr<scalar_t>(),
                grad_value_acc.mutable_data_ptr<acc_t>(), grad_loc.mutable_data_ptr<scalar_t>(),
                grad_attn.mutable_data_ptr<scalar_t>(), plan.sz);
            C10_CUDA_KERNEL_LAUNCH_CHECK();
          });
        });
  }
  at::Tensor grad_value =
      acc_type == value.scalar_type() ? grad_value_acc : grad_value_acc.to(value.scalar_type());
  return {grad_value, grad_loc, grad_attn};
}

}  // namespace
}  // namespace ddetr

TORCH_LIBRARY_IMPL(ddetr, CUDA, m) {
  m.impl("ms_deform_attn_forward", &ddetr::ms_deform_attn_forward_cuda);
  m.impl("ms_deform_attn_backward", &ddetr::ms_deform_attn_backward_cuda);
}
