// Multi-scale deformable attention: kernel entry points shared by the schema
// registration (ms_deform_attn.cpp) and the per-device implementations.
//
// Shapes (N batch, S = sum_l H_l * W_l value positions, M heads, D channels per
// head, Lq queries, L levels, P points per level):
//   value              (N, S, M, D)
//   spatial_shapes     (L, 2)  int64, rows (H_l, W_l)
//   level_start_index  (L,)    int64
//   sampling_locations (N, Lq, M, L, P, 2)  normalized (x, y)
//   attention_weights  (N, Lq, M, L, P)
//   output / grad_output (N, Lq, M * D)
//
// Sampling follows grid_sample(bilinear, zeros padding, align_corners=False):
// pixel x = loc_x * W_l - 0.5. Every kernel guards each read against S, so a
// malformed level_start_index can never read out of bounds.
#pragma once

#include <ATen/core/Tensor.h>

#include <tuple>

namespace ddetr {

// Checks shared by all devices; raise c10::Error with a message naming the
// argument. Value-level checks (level_start_index vs spatial_shapes) are done
// by the Python wrapper before dispatch.
void check_ms_deform_attn_inputs(const at::Tensor& value, const at::Tensor& spatial_shapes,
                                 const at::Tensor& level_start_index,
                                 const at::Tensor& sampling_locations,
                                 const at::Tensor& attention_weights);

at::Tensor ms_deform_attn_forward_cpu(const at::Tensor& value, const at::Tensor& spatial_shapes,
                                      const at::Tensor& level_start_index,
                                      const at::Tensor& sampling_locations,
                                      const at::Tensor& attention_weights, int64_t im2col_step);

// Returns (grad_value, grad_sampling_locations, grad_attention_weights).
std::tuple<at::Tensor, at::Tensor, at::Tensor> ms_deform_attn_backward_cpu(
    const at::Tensor& value, const at::Tensor& spatial_shapes, const at::Tensor& level_start_index,
    const at::Tensor& sampling_locations, const at::Tensor& attention_weights,
    const at::Tensor& grad_output, int64_t im2col_step);

}  // namespace ddetr
