// Multi-scale deformable attention on the CPU, forward and backward.
//
// Layout: value (N, S, M, D) keeps the D channels of one head at one position
// contiguous, so every bilinear sample is four contiguous D-length rows and the
// channel loops vectorize. The hot loops are compiled twice (AVX2+FMA and
// baseline x86-64) and picked at load time, since extensions cannot assume the
// host CPU.
//
// Parallel decomposition:
//   forward   one task per (n, q) range: each output row (n, q, m, :) has a
//             single writer.
//   backward  one task per (n, m): the task owns grad_value[n, :, m, :] and
//             every grad_sampling_locations / grad_attention_weights entry of
//             that head, and walks the queries in order, so the result is
//             deterministic (no atomics, no thread-count dependent order).
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <cmath>
#include <type_traits>
#include <vector>

#include "cpu_clones.h"
#include "ms_deform_attn.h"

namespace ddetr {
namespace {

struct Sizes {
  int64_t batch, positions, heads, channels, queries, levels, points;
};

Sizes sizes_of(const at::Tensor& value, const at::Tensor& sampling_locations) {
  return {value.size(0),
          value.size(1),
          value.size(2),
          value.size(3),
          sampling_locations.size(1),
          sampling_locations.size(3),
          sampling_locations.size(4)};
}

// One bilinear sample at pixel (x, y) of a level: the four corners
// (y0x0, y0x1, y1x0, y1x1) as value positions, -1 where the corner is outside
// the level (zero padding), and the fractional offsets.
template <typename scalar_t>
struct Bilinear {
  int64_t position[4];
  scalar_t fx, fy;
};

// Returns false when the sample touches no pixel of the level and so adds
// nothing to the output or any gradient. The range test also rejects NaN and
// huge values before the float-to-int conversion. Positions stay inside S
// because check_levels() verified every level lies within it.
template <typename scalar_t>
inline bool locate(scalar_t loc_x, scalar_t loc_y, int64_t height, int64_t width, int64_t start,
                   Bilinear<scalar_t>& sample) {
  const scalar_t x = loc_x * static_cast<scalar_t>(width) - scalar_t(0.5);
  const scalar_t y = loc_y * static_cast<scalar_t>(height) - scalar_t(0.5);
  if (!(x > scalar_t(-2) && x < static_cast<scalar_t>(width) + 1 && y > scalar_t(-2) &&
        y < static_cast<scalar_t>(height) + 1)) {
    return false;
  }
  const scalar_t x_floor = std::floor(x), y_floor = std::floor(y);
  const int64_t x0 = static_cast<int64_t>(x_floor), y0 = static_cast<int64_t>(y_floor);
  sample.fx = x - x_floor;
  sample.fy = y - y_floor;
  bool any = false;
  for (int corner = 0; corner < 4; ++corner) {
    const int64_t cx = x0 + (corner & 1), cy = y0 + (corner >> 1);
    const bool inside = cx >= 0 && cx < width && cy >= 0 && cy < height;
    sample.position[corner] = inside ? start + cy * width + cx : -1;
    any = any || inside;
  }
  return any;
}

// kChannels > 0 fixes D at compile time (fully unrolled channel loops for the
// common head sizes); 0 reads it from `s`.
template <typename scalar_t, int kChannels>
DDETR_CPU_CLONES void forward_rows(const scalar_t* value, const int64_t* spatial_shapes,
                                   const int64_t* level_start_index,
                                   const scalar_t* sampling_locations,
                                   const scalar_t* attention_weights, scalar_t* output,
                                   Sizes s, int64_t row_begin, int64_t row_end) {
  const int64_t D = kChannels > 0 ? kChannels : s.channels, M = s.heads, row_stride = M * D;
  std::vector<scalar_t> zeros(D, scalar_t(0));
  for (int64_t row = row_begin; row < row_end; ++row) {  // row = n * Lq + q
    const int64_t n = row / s.queries;
    for (int64_t m = 0; m < M; ++m) {
      scalar_t* __restrict out = output + (row * M + m) * D;
      for (int64_t d = 0; d < D; ++d) out[d] = scalar_t(0);
      const scalar_t* head_value = value + n * s.positions * row_stride + m * D;
      const int64_t sample_base = (row * M + m) * s.levels * s.points;
      for (int64_t l = 0; l < s.levels; ++l) {
        const int64_t height = spatial_shapes[2 * l], width = spatial_shapes[2 * l + 1];
        for (int64_t p = 0; p < s.points; ++p) {
          const int64_t sample_index = sample_base + l * s.points + p;
          Bilinear<scalar_t> sample;
          if (!locate(sampling_locations[2 * sample_index], sampling_locations[2 * sample_index + 1],
                      height, width, level_start_index[l], sample)) {
            continue;
          }
          const scalar_t a = attention_weights[sample_index];
          const scalar_t gx = sample.fx, gy = sample.fy;
          const scalar_t w00 = a * (1 - gx) * (1 - gy), w01 = a * gx * (1 - gy);
          const scalar_t w10 = a * (1 - gx) * gy, w11 = a * gx * gy;
          const scalar_t* corner[4];
          for (int c = 0; c < 4; ++c) {
            corner[c] = sample.position[c] < 0 ? zeros.data()
                                               : head_value + sample.position[c] * row_stride;
          }
          const scalar_t* __restrict v00 = corner[0];
          const scalar_t* __restrict v01 = corner[1];
          const scalar_t* __restrict v10 = corner[2];
          const scalar_t* __restrict v11 = corner[3];
#pragma omp simd
          for (int64_t d = 0; d < D; ++d) {
            out[d] += w00 * v00[d] + w01 * v01[d] + w10 * v10[d] + w11 * v11[d];
          }
        }
      }
    }
  }
}

template <typename scalar_t, int kChannels>
DDETR_CPU_CLONES void backward_heads(const scalar_t* value, const int64_t* spatial_shapes,
                                     const int64_t* level_start_index,
                                     const scalar_t* sampling_locations,
                                     const scalar_t* attention_weights, const scalar_t* grad_output,
                                     scalar_t* grad_value, scalar_t* grad_sampling_locations,
                                     scalar_t* grad_attention_weights, Sizes s,
                                     int64_t task_begin, int64_t task_end) {
  const int64_t D = kChannels > 0 ? kChannels : s.channels, M = s.heads, row_stride = M * D;
  // Reads of outside corners come from `zeros`; their gradient goes to a
  // per-corner scratch row that is never read back.
  std::vector<scalar_t> buffers(5 * D, scalar_t(0));
  const scalar_t* zeros = buffers.data();
  for (int64_t task = task_begin; task < task_end; ++task) {  // task = n * M + m
    const int64_t n = task / M, m = task % M;
    const scalar_t* head_value = value + n * s.positions * row_stride + m * D;
    scalar_t* head_grad_value = grad_value + n * s.positions * row_stride + m * D;
    for (int64_t q = 0; q < s.queries; ++q) {
      const int64_t row = n * s.queries + q;
      const scalar_t* __restrict go = grad_output + (row * M + m) * D;
      const int64_t sample_base = (row * M + m) * s.levels * s.points;
      for (int64_t l = 0; l < s.levels; ++l) {
        const int64_t height = spatial_shapes[2 * l], width = spatial_shapes[2 * l + 1];
        for (int64_t p = 0; p < s.points; ++p) {
          const int64_t sample_index = sample_base + l * s.points + p;
          Bilinear<scalar_t> sample;
          if (!locate(sampling_locations[2 * sample_index], sampling_locations[2 * sample_index + 1],
                      height, width, level_start_index[l], sample)) {
            continue;
          }
          const scalar_t a = attention_weights[sample_index];
          const scalar_t fx = sample.fx, fy = sample.fy;
          const scalar_t b00 = (1 - fx) * (1 - fy), b01 = fx * (1 - fy);
          const scalar_t b10 = (1 - fx) * fy, b11 = fx * fy;
          const scalar_t* corner[4];
          scalar_t* grad_corner[4];
          for (int c = 0; c < 4; ++c) {
            const bool outside = sample.position[c] < 0;
            corner[c] = outside ? zeros : head_value + sample.position[c] * row_stride;
            grad_corner[c] = outside ? buffers.data() + (c + 1) * D
                                     : head_grad_value + sample.position[c] * row_stride;
          }
          const scalar_t* __restrict v00 = corner[0];
          const scalar_t* __restrict v01 = corner[1];
          const scalar_t* __restrict v10 = corner[2];
          const scalar_t* __restrict v11 = corner[3];
          scalar_t* __restrict g00 = grad_corner[0];
          scalar_t* __restrict g01 = grad_corner[1];
          scalar_t* __restrict g10 = grad_corner[2];
          scalar_t* __restrict g11 = grad_corner[3];
          const scalar_t a00 = a * b00, a01 = a * b01, a10 = a * b10, a11 = a * b11;
          // Everything the sample needs from grad_output is its dot product
          // with each corner: the attention and location gradients are fixed
          // combinations of those four numbers.
          scalar_t dot00 = 0, dot01 = 0, dot10 = 0, dot11 = 0;
          // The reductions vectorize only when reassociation is allowed explicitly.
#pragma omp simd reduction(+ : dot00, dot01, dot10, dot11)
          for (int64_t d = 0; d < D; ++d) {
            const scalar_t g = go[d];
            dot00 += g * v00[d];
            dot01 += g * v01[d];
            dot10 += g * v10[d];
            dot11 += g * v11[d];
            g00[d] += a00 * g;
            g01[d] += a01 * g;
            g10[d] += a10 * g;
            g11[d] += a11 * g;
          }
          const scalar_t grad_a = b00 * dot00 + b01 * dot01 + b10 * dot10 + b11 * dot11;
          const scalar_t grad_x = (1 - fy) * (dot01 - dot00) + fy * (dot11 - dot10);
          const scalar_t grad_y = (1 - fx) * (dot10 - dot00) + fx * (dot11 - dot01);
          grad_attention_weights[sample_index] = grad_a;
          grad_sampling_locations[2 * sample_index] = a * grad_x * static_cast<scalar_t>(width);
          grad_sampling_locations[2 * sample_index + 1] = a * grad_y * static_cast<scalar_t>(height);
        }
      }
    }
  }
}

// Every level must lie inside the S value positions; this is what lets the
// sampling loops index without per-corner bounds checks.
void check_levels(const at::Tensor& spatial_shapes, const at::Tensor& level_start_index,
                  int64_t positions) {
  const int64_t* shapes = spatial_shapes.data_ptr<int64_t>();
  const int64_t* starts = level_start_index.data_ptr<int64_t>();
  for (int64_t l = 0; l < spatial_shapes.size(0); ++l) {
    const int64_t height = shapes[2 * l], width = shapes[2 * l + 1], start = starts[l];
    TORCH_CHECK(height > 0 && width > 0 && start >= 0 && start + height * width <= positions,
                "ms_deform_attn: level ", l, " of shape (", height, ", ", width,
                ") starting at ", start, " does not fit in the ", positions,
                " value positions");
  }
}

void check_cpu(const at::Tensor& value, const at::Tensor& spatial_shapes,
               const at::Tensor& level_start_index, const at::Tensor& sampling_locations,
               const at::Tensor& attention_weights) {
  check_ms_deform_attn_inputs(value, spatial_shapes, level_start_index, sampling_locations,
                              attention_weights);
  TORCH_CHECK(value.device().is_cpu(), "ms_deform_attn (CPU kernel): inputs must be on the CPU");
  TORCH_CHECK(value.scalar_type() == at::kFloat || value.scalar_type() == at::kDouble,
              "ms_deform_attn (CPU kernel): float32 or float64 expected, got ",
              value.scalar_type());
  check_levels(spatial_shapes.contiguous(), level_start_index.contiguous(), value.size(1));
}

// Calls body.template operator()<kChannels>() with D fixed for common head sizes.
template <typename Body>
void dispatch_channels(int64_t channels, const Body& body) {
  switch (channels) {
    case 32: body(std::integral_constant<int, 32>()); break;
    case 64: body(std::integral_constant<int, 64>()); break;
    default: body(std::integral_constant<int, 0>()); break;
  }
}

}  // namespace

at::Tensor ms_deform_attn_forward_cpu(const at::Tensor& value, const at::Tensor& spatial_shapes,
                                      const at::Tensor& level_start_index,
                                      const at::Tensor& sampling_locations,
                                      const at::Tensor& attention_weights, int64_t /*im2col_step*/) {
  check_cpu(value, spatial_shapes, level_start_index, sampling_locations, attention_weights);
  const Sizes s = sizes_of(value, sampling_locations);
  auto output = at::empty({s.batch, s.queries, s.heads * s.channels}, value.options());
  if (output.numel() == 0) return output;
  const auto value_c = value.contiguous(), shapes_c = spatial_shapes.contiguous();
  const auto starts_c = level_start_index.contiguous();
  const auto locations_c = sampling_locations.contiguous(), weights_c = attention_weights.contiguous();
  // Enough samples per task to amortize scheduling (~4k samples).
  const int64_t grain = std::max<int64_t>(1, 4096 / std::max<int64_t>(1, s.heads * s.levels * s.points));
  AT_DISPATCH_FLOATING_TYPES(value.scalar_type(), "ms_deform_attn_forward_cpu", [&] {
    dispatch_channels(s.channels, [&](auto channels) {
    at::parallel_for(0, s.batch * s.queries, grain, [&](int64_t begin, int64_t end) {
      forward_rows<scalar_t, decltype(channels)::value>(value_c.data_ptr<scalar_t>(), shapes_c.data_ptr<int64_t>(),
                             starts_c.data_ptr<int64_t>(), locations_c.data_ptr<scalar_t>(),
                             weights_c.data_ptr<scalar_t>(), output.data_ptr<scalar_t>(), s, begin,
                             end);
    });
    });
  });
  return output;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> ms_deform_attn_backward_cpu(
    const at::Tensor& value, const at::Tensor& spatial_shapes, const at::Tensor& level_start_index,
    const at::Tensor& sampling_locations, const at::Tensor& attention_weights,
    const at::Tensor& grad_output, int64_t /*im2col_step*/) {
  check_cpu(value, spatial_shapes, level_start_index, sampling_locations, attention_weights);
  const Sizes s = sizes_of(value, sampling_locations);
  TORCH_CHECK(grad_output.sizes() == at::IntArrayRef({s.batch, s.queries, s.heads * s.channels}),
              "ms_deform_attn_backward: grad_output must be (N, Lq, M*D) = (", s.batch, ", ",
              s.queries, ", ", s.heads * s.channels, "), got ", grad_output.sizes());
  TORCH_CHECK(grad_output.scalar_type() == value.scalar_type(),
              "ms_deform_attn_backward: grad_output must be ", value.scalar_type(), ", got ",
              grad_output.scalar_type());
  auto grad_value = at::zeros(value.sizes(), value.options());
  auto grad_locations = at::zeros(sampling_locations.sizes(), sampling_locations.options());
  auto grad_weights = at::zeros(attention_weights.sizes(), attention_weights.options());
  if (s.queries == 0 || value.numel() == 0) return {grad_value, grad_locations, grad_weights};
  const auto value_c = value.contiguous(), shapes_c = spatial_shapes.contiguous();
  const auto starts_c = level_start_index.contiguous();
  const auto locations_c = sampling_locations.contiguous(), weights_c = attention_weights.contiguous();
  const auto grad_output_c = grad_output.contiguous();
  AT_DISPATCH_FLOATING_TYPES(value.scalar_type(), "ms_deform_attn_backward_cpu", [&] {
    dispatch_channels(s.channels, [&](auto channels) {
    at::parallel_for(0, s.batch * s.heads, 1, [&](int64_t begin, int64_t end) {
      backward_heads<scalar_t, decltype(channels)::value>(value_c.data_ptr<scalar_t>(), shapes_c.data_ptr<int64_t>(),
                               starts_c.data_ptr<int64_t>(), locations_c.data_ptr<scalar_t>(),
                               weights_c.data_ptr<scalar_t>(), grad_output_c.data_ptr<scalar_t>(),
                               grad_value.data_ptr<scalar_t>(), grad_locations.data_ptr<scalar_t>(),
                               grad_weights.data_ptr<scalar_t>(), s, begin, end);
    });
    });
  });
  return {grad_value, grad_locations, grad_weights};
}

}  // namespace ddetr
