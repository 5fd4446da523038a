// Schema registration for the `ddetr` torch.library namespace and the Python
// module `ddetr_plugin._C` that reports how the extension was built.
//
// Autograd and the fake (meta) implementation are registered from Python in
// ddetr_plugin/ops/ms_deform_attn.py; the per-device kernels register
// themselves with TORCH_LIBRARY_IMPL (cpu/ always, cuda/ when compiled).
#include <pybind11/pybind11.h>
#include <torch/library.h>

#include "ms_deform_attn.h"

namespace ddetr {

void check_ms_deform_attn_inputs(const at::Tensor& value, const at::Tensor& spatial_shapes,
                                 const at::Tensor& level_start_index,
                                 const at::Tensor& sampling_locations,
                                 const at::Tensor& attention_weights) {
  TORCH_CHECK(value.dim() == 4, "ms_deform_attn: value must be (N, S, M, D), got ",
              value.sizes());
  TORCH_CHECK(spatial_shapes.dim() == 2 && spatial_shapes.size(1) == 2,
              "ms_deform_attn: spatial_shapes must be (L, 2), got ", spatial_shapes.sizes());
  TORCH_CHECK(spatial_shapes.scalar_type() == at::kLong,
              "ms_deform_attn: spatial_shapes must be int64, got ", spatial_shapes.scalar_type());
  TORCH_CHECK(level_start_index.dim() == 1 && level_start_index.size(0) == spatial_shapes.size(0),
              "ms_deform_attn: level_start_index must be (L,) with L = ", spatial_shapes.size(0),
              ", got ", level_start_index.sizes());
  TORCH_CHECK(level_start_index.scalar_type() == at::kLong,
              "ms_deform_attn: level_start_index must be int64, got ",
              level_start_index.scalar_type());
  const int64_t n = value.size(0), m = value.size(2), l = spatial_shapes.size(0);
  TORCH_CHECK(sampling_locations.dim() == 6 && sampling_locations.size(0) == n &&
                  sampling_locations.size(2) == m && sampling_locations.size(3) == l &&
                  sampling_locations.size(5) == 2,
              "ms_deform_attn: sampling_locations must be (N, Lq, M, L, P, 2) = (", n, ", Lq, ", m,
              ", ", l, ", P, 2), got ", sampling_locations.sizes());
  const int64_t lq = sampling_locations.size(1), p = sampling_locations.size(4);
  TORCH_CHECK(attention_weights.dim() == 5 && attention_weights.size(0) == n &&
                  attention_weights.size(1) == lq && attention_weights.size(2) == m &&
                  attention_weights.size(3) == l && attention_weights.size(4) == p,
              "ms_deform_attn: attention_weights must be (N, Lq, M, L, P) = (", n, ", ", lq, ", ",
              m, ", ", l, ", ", p, "), got ", attention_weights.sizes());
  TORCH_CHECK(sampling_locations.scalar_type() == value.scalar_type() &&
                  attention_weights.scalar_type() == value.scalar_type(),
              "ms_deform_attn: value, sampling_locations and attention_weights must share a dtype, "
              "got ", value.scalar_type(), ", ", sampling_locations.scalar_type(), ", ",
              attention_weights.scalar_type());
  const auto device = value.device();
  for (const at::Tensor* t : {&spatial_shapes, &level_start_index, &sampling_locations,
                              &attention_weights}) {
    TORCH_CHECK(t->device() == device, "ms_deform_attn: all inputs must be on ", device,
                ", got a tensor on ", t->device());
  }
}

}  // namespace ddetr

TORCH_LIBRARY(ddetr, m) {
  m.def(
      "ms_deform_attn_forward(Tensor value, Tensor spatial_shapes, Tensor level_start_index, "
      "Tensor sampling_locations, Tensor attention_weights, int im2col_step) -> Tensor");
  m.def(
      "ms_deform_attn_backward(Tensor value, Tensor spatial_shapes, Tensor level_start_index, "
      "Tensor sampling_locations, Tensor attention_weights, Tensor grad_output, int im2col_step) "
      "-> (Tensor, Tensor, Tensor)");
  // input * keep / (1 - p) with keep a pure function of (seed, element index); CPU only
  // (cpu/seeded_dropout_cpu.cpp). Its backward is itself applied to the gradient.
  m.def("seeded_dropout(Tensor input, float p, int seed) -> Tensor");
}

TORCH_LIBRARY_IMPL(ddetr, CPU, m) {
  m.impl("ms_deform_attn_forward", &ddetr::ms_deform_attn_forward_cpu);
  m.impl("ms_deform_attn_backward", &ddetr::ms_deform_attn_backward_cpu);
}

#ifndef DDETR_CUDA_ARCHS
#define DDETR_CUDA_ARCHS ""
#endif

PYBIND11_MODULE(TORCH_EXTENSION_NAME, module) {
  module.doc() = "ddetr_plugin native kernels (multi-scale deformable attention)";
#ifdef DDETR_WITH_CUDA
  module.attr("with_cuda") = true;
#else
  module.attr("with_cuda") = false;
#endif
  module.attr("cuda_archs") = DDETR_CUDA_ARCHS;
}
