// Python module of the baseline kernels (msda_baseline.cu), built by load_baseline() in
// __init__.py. Kept apart from the .cu so that nvcc never compiles the pybind11 headers.
#include <torch/extension.h>

#include <tuple>

namespace msda_baseline {

// Defined in msda_baseline.cu; shapes as in csrc/ms_deform_attn.h.
at::Tensor forward(const at::Tensor& value, const at::Tensor& spatial_shapes,
                   const at::Tensor& level_start_index, const at::Tensor& sampling_locations,
                   const at::Tensor& attention_weights);

std::tuple<at::Tensor, at::Tensor, at::Tensor> backward(
    const at::Tensor& value, const at::Tensor& spatial_shapes, const at::Tensor& level_start_index,
    const at::Tensor& sampling_locations, const at::Tensor& attention_weights,
    const at::Tensor& grad_output);

}  // namespace msda_baseline

PYBIND11_MODULE(TORCH_EXTENSION_NAME, module) {
  module.doc() = "Baseline multi-scale deformable attention kernels (official op's design)";
  module.def("forward", &msda_baseline::forward,
             "(value, spatial_shapes, level_start_index, sampling_locations, attention_weights) "
             "-> output");
  module.def("backward", &msda_baseline::backward,
             "(value, spatial_shapes, level_start_index, sampling_locations, attention_weights, "
             "grad_output) -> (grad_value, grad_sampling_locations, grad_attention_weights)");
}
