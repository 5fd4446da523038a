// Baseline CUDA kernels of multi-scale deformable attention, for tools/benchmark_op.py only (not
// part of the package build). They follow the parallel design of the official Deformable DETR op,
// the GPU baseline csrc/cuda/ms_deform_attn_cuda.cu is timed against; shapes and sampling
// semantics are those of csrc/ms_deform_attn.h.
//
// forward:  one thread per output element (n, q, m, c). It loops over levels and points, samples
//           value[n, :, m, c] bilinearly at each location (four scalar loads) and accumulates the
//           attention-weighted samples.
// backward: one thread per (n, q, m, c). It scatters its share of grad_value to the four corners
//           with atomicAdd and holds, per (level, point), its channel's term of the location and
//           attention weight gradients. Those gradients are sums over the D channel threads of a
//           row: the threads store their terms in shared memory, the row reduces them and its
//           first thread writes one value per (n, q, m, l, p). As in the official op, the first
//           thread sums serially for D <= 32 or D not a power of two, and a tree reduces
//           power-of-two D >= 64. When D exceeds a block, each thread atomically adds its term to
//           global memory instead.
//
// Departures from the official code. Blocks of 256 threads: the official forward uses 1024 and
// its backward one row of D threads per block (32 threads for D = 32, which caps occupancy at
// half a Hopper SM's threads); here a backward block holds 256 / D rows and D > 256 takes the
// atomic path (official: D > 1024). No im2col_step batching: a loop of launches over batch
// slices that leaves the per-thread work unchanged. Half and bfloat16 inputs, with float32
// arithmetic and a float32 grad_value buffer cast at the end (the official op takes float32 and
// float64 only).
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <limits>
#include <tuple>

namespace msda_baseline {
namespace {

constexpr int kThreads = 256;

struct Sizes {
  int64_t rows;  // N * Lq * M: row (n, q, m) = (n * Lq + q) * M + m holds D output channels
  int64_t lq_m;  // Lq * M
  int64_t S;     // value positions per batch item
  int M, D, L, P;
};

// Bilinear footprint of pixel (x, y) on an H x W level. Corner k is (x0 + (k & 1), y0 + (k >> 1));
// pos[k] is its position in [0, S), or -1 outside the map (zero padding).
template <typename A>
struct Corners {
  int64_t pos[4];
  A w[4];      // bilinear weight
  A dw_dx[4];  // d w / d x
  A dw_dy[4];  // d w / d y
};

// Fills `c` and returns true when a corner may lie inside the map, i.e. -1 <= x < W and
// -1 <= y < H (false for NaN). The official op tests -1 < x: that differs from grid_sample only
// in the location gradient at exactly x = -1 or y = -1, where a corner of weight 0 lies inside.
template <typename A>
__device__ __forceinline__ bool bilinear_corners(A x, A y, int64_t H, int64_t W, int64_t start,
                                                 Corners<A>& c) {
  if (!(x >= A(-1) && x < static_cast<A>(W) && y >= A(-1) && y < static_cast<A>(H))) return false;
  const A xf = floor(x), yf = floor(y);
  const int64_t x0 = static_cast<int64_t>(xf), y0 = static_cast<int64_t>(yf);
  const A lx = x - xf, ly = y - yf, hx = A(1) - lx, hy = A(1) - ly;
  const A w[4] = {hx * hy, lx * hy, hx * ly, lx * ly};
  const A dw_dx[4] = {-hy, hy, -ly, ly};
  const A dw_dy[4] = {-hx, -lx, hx, lx};
#pragma unroll
  for (int k = 0; k < 4; ++k) {
    const int64_t xi = x0 + (k & 1), yi = y0 + (k >> 1);
    c.pos[k] = xi >= 0 && xi < W && yi >= 0 && yi < H ? start + yi * W + xi : -1;
    c.w[k] = w[k];
    c.dw_dx[k] = dw_dx[k];
    c.dw_dy[k] = dw_dy[k];
  }
  return true;
}

// out[n, q, m * D + c] = sum_{l, p} attn[n, q, m, l, p] * bilinear(value[n, level l, m, c], loc).
template <typename T>
__global__ void __launch_bounds__(kThreads)
    forward_kernel(const T* __restrict__ value,         // (N, S, M, D)
                   const int64_t* __restrict__ shapes,  // (L, 2) rows (H, W)
                   const int64_t* __restrict__ starts,  // (L,)
                   const T* __restrict__ loc,           // (N, Lq, M, L, P, 2)
                   const T* __restrict__ attn,          // (N, Lq, M, L, P)
                   T* __restrict__ out,                 // (N, Lq, M * D)
                   const Sizes sz) {
  using A = at::opmath_type<T>;
  // (n, q, m, c) flattened is also the offset of the thread's output element.
  const int64_t index = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  if (index >= sz.rows * sz.D) return;
  const int64_t row = index / sz.D;
  const int c = static_cast<int>(index % sz.D);
  const int64_t n = row / sz.lq_m;
  const int m = static_cast<int>(row % sz.M);
  const int64_t pos_stride = static_cast<int64_t>(sz.M) * sz.D;
  const T* value_nmc = value + (n * sz.S * sz.M + m) * sz.D + c;  // value[n, 0, m, c]
  const int LP = sz.L * sz.P;
  const T* loc_row = loc + row * LP * 2;
  const T* attn_row = attn + row * LP;

  A acc = 0;
  for (int l = 0; l < sz.L; ++l) {
    const int64_t H = shapes[2 * l], W = shapes[2 * l + 1], start = starts[l];
    for (int i = l * sz.P; i < (l + 1) * sz.P; ++i) {
      const A x = static_cast<A>(loc_row[2 * i]) * static_cast<A>(W) - A(0.5);
      const A y = static_cast<A>(loc_row[2 * i + 1]) * static_cast<A>(H) - A(0.5);
      Corners<A> corners;
      if (!bilinear_corners(x, y, H, W, start, corners)) continue;
      A sample = 0;
#pragma unroll
      for (int k = 0; k < 4; ++k) {
        if (corners.pos[k] >= 0) {
          sample += corners.w[k] * static_cast<A>(value_nmc[corners.pos[k] * pos_stride]);
        }
      }
      acc += static_cast<A>(attn_row[i]) * sample;
    }
  }
  out[index] = static_cast<T>(acc);
}

// Per thread (n, q, m, c) with go = grad_out[n, q, m * D + c] and, per point i = (l, p) with
// attention weight a and corner values v_k = value[corner k, c]:
//   grad_value[corner k, c] += a * w_k * go                            (atomicAdd)
//   grad_attn[n, q, m, i]    = sum_c go * sum_k w_k v_k
//   grad_loc[n, q, m, i, 0]  = sum_c a * W * go * sum_k (d w_k / d x) v_k   (d x / d loc_x = W)
//   grad_loc[n, q, m, i, 1]  = sum_c a * H * go * sum_k (d w_k / d y) v_k
// kSharedReduce: blockDim.x is a multiple of D, so each row's D threads share a block and the sums
// over c go through shared memory; GradT is T. Otherwise each thread atomically adds its term to
// grad_loc / grad_attn, zero-initialised buffers of GradT = float32 (float64 for double).
template <typename T, typename GradT, bool kSharedReduce>
__global__ void __launch_bounds__(kThreads)
    backward_kernel(const T* __restrict__ value,                  // (N, S, M, D)
                    const int64_t* __restrict__ shapes,           // (L, 2) rows (H, W)
                    const int64_t* __restrict__ starts,           // (L,)
                    const T* __restrict__ loc,                    // (N, Lq, M, L, P, 2)
                    const T* __restrict__ attn,                   // (N, Lq, M, L, P)
                    const T* __restrict__ grad_out,               // (N, Lq, M * D)
                    at::opmath_type<T>* __restrict__ grad_value,  // (N, S, M, D)
                    GradT* __restrict__ grad_loc,                 // (N, Lq, M, L, P, 2)
                    GradT* __restrict__ grad_attn,                // (N, Lq, M, L, P)
                    const Sizes sz) {
  using A = at::opmath_type<T>;
  // Three slices of blockDim.x partial sums: d/dx, d/dy, d/da of this thread's channel.
  extern __shared__ __align__(sizeof(double)) unsigned char shared_bytes[];
  A* partial = reinterpret_cast<A*>(shared_bytes);
  const int threads = blockDim.x;
  const int t = threadIdx.x;

  const int64_t index = static_cast<int64_t>(blockIdx.x) * threads + t;
  // Threads past the end stay for the block's __syncthreads; they form whole rows, since the
  // block size and the element count are both multiples of D in the shared-memory path.
  const bool active = index < sz.rows * sz.D;
  const int64_t row = index / sz.D;
  const int c = static_cast<int>(index % sz.D);
  const int64_t n = row / sz.lq_m;
  const int m = static_cast<int>(row % sz.M);
  const int64_t pos_stride = static_cast<int64_t>(sz.M) * sz.D;
  const int64_t value_nmc = (n * sz.S * sz.M + m) * sz.D + c;  // offset of value[n, 0, m, c]
  const int LP = sz.L * sz.P;
  const T* loc_row = loc + row * LP * 2;
  const T* attn_row = attn + row * LP;
  const A go = active ? static_cast<A>(grad_out[index]) : A(0);
  const bool tree_reduce = sz.D >= 64 && (sz.D & (sz.D - 1)) == 0;

  for (int l = 0; l < sz.L; ++l) {
    const int64_t H = shapes[2 * l], W = shapes[2 * l + 1], start = starts[l];
    for (int i = l * sz.P; i < (l + 1) * sz.P; ++i) {
      A gx = 0, gy = 0, ga = 0;
      Corners<A> corners;
      if (active) {
        const A x = static_cast<A>(loc_row[2 * i]) * static_cast<A>(W) - A(0.5);
        const A y = static_cast<A>(loc_row[2 * i + 1]) * static_cast<A>(H) - A(0.5);
        const A a = static_cast<A>(attn_row[i]);
        if (bilinear_corners(x, y, H, W, start, corners)) {
          A sample = 0, sample_dx = 0, sample_dy = 0;
#pragma unroll
          for (int k = 0; k < 4; ++k) {
            if (corners.pos[k] < 0) continue;
            const int64_t offset = value_nmc + corners.pos[k] * pos_stride;
            const A v = static_cast<A>(value[offset]);
            sample += corners.w[k] * v;
            sample_dx += corners.dw_dx[k] * v;
            sample_dy += corners.dw_dy[k] * v;
            atomicAdd(grad_value + offset, a * corners.w[k] * go);
          }
          ga = go * sample;
          gx = a * static_cast<A>(W) * go * sample_dx;
          gy = a * static_cast<A>(H) * go * sample_dy;
        }
      }
      const int64_t out = row * LP + i;  // (n, q, m, l, p) flattened
      if constexpr (kSharedReduce) {
        partial[t] = gx;
        partial[threads + t] = gy;
        partial[2 * threads + t] = ga;
        __syncthreads();
        if (tree_reduce) {
          // Every step ends in a barrier, so the row's first thread then reads only its own
          // slots, which no other thread writes in the next iteration.
          for (int stride = sz.D / 2; stride > 0; stride /= 2) {
            if (c < stride) {
#pragma unroll
              for (int s = 0; s < 3; ++s) {
                partial[s * threads + t] += partial[s * threads + t + stride];
              }
            }
            __syncthreads();
          }
        } else if (c == 0) {
          for (int j = 1; j < sz.D; ++j) {
#pragma unroll
            for (int s = 0; s < 3; ++s) partial[s * threads + t] += partial[s * threads + t + j];
          }
        }
        if (active && c == 0) {
          grad_loc[2 * out] = static_cast<GradT>(partial[t]);
          grad_loc[2 * out + 1] = static_cast<GradT>(partial[threads + t]);
          grad_attn[out] = static_cast<GradT>(partial[2 * threads + t]);
        }
        // The serial sum read the other threads' slots: keep them until it has ended.
        if (!tree_reduce) __syncthreads();
      } else if (active) {
        atomicAdd(grad_loc + 2 * out, gx);
        atomicAdd(grad_loc + 2 * out + 1, gy);
        atomicAdd(grad_attn + out, ga);
      }
    }
  }
}

Sizes make_sizes(const at::Tensor& value, const at::Tensor& sampling_locations) {
  const int64_t N = value.size(0), S = value.size(1), M = value.size(2), D = value.size(3);
  const int64_t Lq = sampling_locations.size(1), L = sampling_locations.size(3),
                P = sampling_locations.size(4);
  constexpr int64_t kIntMax = std::numeric_limits<int>::max();
  TORCH_CHECK(M <= kIntMax && D <= kIntMax && L * P <= kIntMax,
              "msda_baseline: M, D and L * P must fit in int32");
  return Sizes{N * Lq * M,          Lq * M,
               S,                   static_cast<int>(M),
               static_cast<int>(D), static_cast<int>(L),
               static_cast<int>(P)};
}

unsigned blocks_for(int64_t elements, int threads) {
  const int64_t blocks = (elements + threads - 1) / threads;
  TORCH_CHECK(blocks <= std::numeric_limits<int32_t>::max(),
              "msda_baseline: input too large for one CUDA launch");
  return static_cast<unsigned>(blocks);
}

void check_inputs(const at::Tensor& value, const at::Tensor& spatial_shapes,
                  const at::Tensor& level_start_index, const at::Tensor& sampling_locations,
                  const at::Tensor& attention_weights) {
  TORCH_CHECK(value.is_cuda(), "msda_baseline: value must be a CUDA tensor, got ", value.device());
  TORCH_CHECK(value.dim() == 4 && sampling_locations.dim() == 6 && attention_weights.dim() == 5,
              "msda_baseline: expected value (N, S, M, D), sampling_locations (N, Lq, M, L, P, 2) "
              "and attention_weights (N, Lq, M, L, P), got ",
              value.sizes(), ", ", sampling_locations.sizes(), ", ", attention_weights.sizes());
  TORCH_CHECK(spatial_shapes.scalar_type() == at::kLong &&
                  level_start_index.scalar_type() == at::kLong,
              "msda_baseline: spatial_shapes and level_start_index must be int64");
  TORCH_CHECK(sampling_locations.scalar_type() == value.scalar_type() &&
                  attention_weights.scalar_type() == value.scalar_type(),
              "msda_baseline: value, sampling_locations and attention_weights must share a dtype");
}

}  // namespace

// Returns output (N, Lq, M * D).
at::Tensor forward(const at::Tensor& value, const at::Tensor& spatial_shapes,
                   const at::Tensor& level_start_index, const at::Tensor& sampling_locations,
                   const at::Tensor& attention_weights) {
  check_inputs(value, spatial_shapes, level_start_index, sampling_locations, attention_weights);
  const c10::cuda::CUDAGuard guard(value.device());
  const at::Tensor value_c = value.contiguous(), shapes_c = spatial_shapes.contiguous(),
                   starts_c = level_start_index.contiguous(),
                   loc_c = sampling_locations.contiguous(), attn_c = attention_weights.contiguous();
  const Sizes sz = make_sizes(value_c, loc_c);
  const int64_t Lq = loc_c.size(1);
  at::Tensor out = at::empty({value.size(0), Lq, int64_t{sz.M} * sz.D}, value_c.options());
  if (out.numel() == 0) return out;

  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, value_c.scalar_type(),
                                  "msda_baseline_forward", [&] {
    forward_kernel<scalar_t><<<blocks_for(out.numel(), kThreads), kThreads, 0, stream>>>(
        value_c.const_data_ptr<scalar_t>(), shapes_c.const_data_ptr<int64_t>(),
        starts_c.const_data_ptr<int64_t>(), loc_c.const_data_ptr<scalar_t>(),
        attn_c.const_data_ptr<scalar_t>(), out.mutable_data_ptr<scalar_t>(), sz);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

// Returns (grad_value (N, S, M, D), grad_sampling_locations (N, Lq, M, L, P, 2),
// grad_attention_weights (N, Lq, M, L, P)); grad_output is (N, Lq, M * D).
std::tuple<at::Tensor, at::Tensor, at::Tensor> backward(
    const at::Tensor& value, const at::Tensor& spatial_shapes, const at::Tensor& level_start_index,
    const at::Tensor& sampling_locations, const at::Tensor& attention_weights,
    const at::Tensor& grad_output) {
  check_inputs(value, spatial_shapes, level_start_index, sampling_locations, attention_weights);
  TORCH_CHECK(grad_output.scalar_type() == value.scalar_type() &&
                  grad_output.numel() == sampling_locations.size(0) * sampling_locations.size(1) *
                                             value.size(2) * value.size(3),
              "msda_baseline: grad_output must be (N, Lq, M * D) of value's dtype");
  const c10::cuda::CUDAGuard guard(value.device());
  const at::Tensor value_c = value.contiguous(), shapes_c = spatial_shapes.contiguous(),
                   starts_c = level_start_index.contiguous(),
                   loc_c = sampling_locations.contiguous(), attn_c = attention_weights.contiguous(),
                   grad_out_c = grad_output.contiguous();
  const Sizes sz = make_sizes(value_c, loc_c);
  const at::ScalarType dtype = value.scalar_type(), acc_type = at::toOpMathType(dtype);
  const auto acc_options = value_c.options().dtype(acc_type);
  at::Tensor grad_value_acc = at::zeros(value.sizes(), acc_options);

  // The shared-memory reduction needs a row's D threads in one block: the largest multiple of
  // D up to kThreads. Wider rows (and D == 0, whose gradients are zeros) fall back to atomics
  // into zeroed op-math buffers.
  const bool shared_reduce = sz.D > 0 && sz.D <= kThreads;
  const int threads = shared_reduce ? kThreads / sz.D * sz.D : kThreads;
  at::Tensor grad_loc, grad_attn;
  if (shared_reduce) {
    grad_loc = at::empty(sampling_locations.sizes(), value_c.options());
    grad_attn = at::empty(attention_weights.sizes(), value_c.options());
  } else {
    grad_loc = at::zeros(sampling_locations.sizes(), acc_options);
    grad_attn = at::zeros(attention_weights.sizes(), acc_options);
  }

  const int64_t elements = sz.rows * sz.D;
  if (elements > 0 && sz.L * sz.P > 0) {
    const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, dtype, "msda_baseline_backward", [&] {
      using acc_t = at::opmath_type<scalar_t>;
      const size_t shared_bytes = shared_reduce ? 3 * threads * sizeof(acc_t) : 0;
      const auto launch = [&](auto kernel, auto* grad_loc_ptr, auto* grad_attn_ptr) {
        kernel<<<blocks_for(elements, threads), threads, shared_bytes, stream>>>(
            value_c.const_data_ptr<scalar_t>(), shapes_c.const_data_ptr<int64_t>(),
            starts_c.const_data_ptr<int64_t>(), loc_c.const_data_ptr<scalar_t>(),
            attn_c.const_data_ptr<scalar_t>(), grad_out_c.const_data_ptr<scalar_t>(),
            grad_value_acc.mutable_data_ptr<acc_t>(), grad_loc_ptr, grad_attn_ptr, sz);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      };
      if (shared_reduce) {
        launch(backward_kernel<scalar_t, scalar_t, true>, grad_loc.mutable_data_ptr<scalar_t>(),
               grad_attn.mutable_data_ptr<scalar_t>());
      } else {
        launch(backward_kernel<scalar_t, acc_t, false>, grad_loc.mutable_data_ptr<acc_t>(),
               grad_attn.mutable_data_ptr<acc_t>());
      }
    });
  }
  return {grad_value_acc.to(dtype), grad_loc.to(dtype), grad_attn.to(dtype)};
}

}  // namespace msda_baseline
