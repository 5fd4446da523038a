// Dropout whose mask is a pure function of (seed, element index), on the CPU.
//
// torch's CPU dropout draws one Bernoulli sample per element from a sequential
// generator and then multiplies by the saved mask: at the encoder's sizes
// (10^7 elements) that is ~100 ms per call on two cores, an eighth of a ResNet-50
// Deformable DETR training step. Here element i is kept when a 32-bit lane of
// splitmix64(seed + (i / 2) * golden ratio) is at least p * 2^32, so a call is
// one parallel pass, any thread count gives the same mask, and backward needs no
// saved mask: it is the same op applied to the gradient with the same seed.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty_like.h>
#include <torch/library.h>

#include <cmath>
#include <cstdint>

namespace ddetr {
namespace {

constexpr uint64_t kGolden = 0x9e3779b97f4a7c15ULL;

// splitmix64's output function: a bijective 64-bit mix with good avalanche.
inline uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

template <typename scalar_t>
void seeded_dropout_kernel(const scalar_t* input, scalar_t* output, int64_t numel, uint64_t seed,
                           uint32_t threshold, double scale) {
  using opmath_t = at::opmath_type<scalar_t>;
  const opmath_t keep_scale = static_cast<opmath_t>(scale);
  const int64_t pairs = (numel + 1) / 2;
  at::parallel_for(0, pairs, 2048, [&](int64_t begin, int64_t end) {
    for (int64_t pair = begin; pair < end; ++pair) {
      const uint64_t bits = mix64(seed + static_cast<uint64_t>(pair) * kGolden);
      const uint32_t lanes[2] = {static_cast<uint32_t>(bits), static_cast<uint32_t>(bits >> 32)};
      const int64_t first = pair * 2;
      const int64_t count = first + 1 < numel ? 2 : 1;
      for (int64_t k = 0; k < count; ++k) {
        const opmath_t value = static_cast<opmath_t>(input[first + k]);
        output[first + k] = static_cast<scalar_t>(lanes[k] >= threshold ? value * keep_scale : opmath_t(0));
      }
    }
  });
}

at::Tensor seeded_dropout_cpu(const at::Tensor& input, double p, int64_t seed) {
  TORCH_CHECK(p >= 0.0 && p < 1.0, "seeded_dropout: p must be in [0, 1), got ", p);
  TORCH_CHECK(at::isFloatingType(input.scalar_type()),
              "seeded_dropout: input must be a floating point tensor, got ", input.scalar_type());
  const at::Tensor contiguous = input.contiguous();
  at::Tensor output = at::empty_like(contiguous);
  // Drop probability p quantised to 2^-32; p < 1 keeps the threshold below 2^32.
  const uint32_t threshold = static_cast<uint32_t>(std::min(std::llround(p * 4294967296.0), 4294967295LL));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "seeded_dropout_cpu", [&] {
    seeded_dropout_kernel<scalar_t>(contiguous.const_data_ptr<scalar_t>(), output.mutable_data_ptr<scalar_t>(),
                                    contiguous.numel(), static_cast<uint64_t>(seed), threshold, 1.0 / (1.0 - p));
  });
  return output;
}

}  // namespace
}  // namespace ddetr

TORCH_LIBRARY_IMPL(ddetr, CPU, m) {
  m.impl("seeded_dropout", &ddetr::seeded_dropout_cpu);
}
