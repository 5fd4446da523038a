// Dropout whose mask is a pure function of (seed, element index), on the CPU.
//
// torch's CPU dropout draws one Bernoulli sample per element from a sequential
// generator and then multiplies by the saved mask: at the encoder's sizes it is a
// sizeable share of a ResNet-50 Deformable DETR training step (docs/benchmarks.md).
// Here element i is kept when a 32-bit hash of i is
// at least p * 2^32, so a call is one parallel, vectorised pass, any thread count
// gives the same mask, and backward needs no saved mask: it is the same op applied
// to the gradient with the same seed.
//
// The hash: splitmix64 turns (seed, i / 2^32) into two 32-bit keys, once per 2^32
// elements; each element is then Chris Wellons' "lowbias32" bijection of
// (i mod 2^32) xor the first key, xor the second key. Only 32-bit multiplies, so
// the loop vectorises with AVX2.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty_like.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "cpu_clones.h"

namespace ddetr {
namespace {

constexpr int64_t kBlock = int64_t{1} << 32;  // elements sharing one pair of keys

inline uint64_t splitmix64(uint64_t z) {
  z += 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// output[k] = input[k] * scale or 0 for the elements k = first..last-1 of one block, whose
// element k has in-block index `k` (the pointers point at the block's start).
template <typename scalar_t>
DDETR_CPU_CLONES void dropout_block_range(const scalar_t* __restrict input, scalar_t* __restrict output,
                                          int64_t first, int64_t last, uint32_t key_in, uint32_t key_out,
                                          uint32_t threshold, at::opmath_type<scalar_t> scale) {
  using opmath_t = at::opmath_type<scalar_t>;
  // Compared as signed (both sides offset by 2^31): GCC vectorises signed but not unsigned
  // 32-bit compares here.
  const int32_t signed_threshold = static_cast<int32_t>(threshold ^ 0x80000000U);
  for (int64_t k = first; k < last; ++k) {
    uint32_t x = static_cast<uint32_t>(k) ^ key_in;
    x ^= x >> 16;
    x *= 0x7feb352dU;
    x ^= x >> 15;
    x *= 0x846ca68bU;
    x ^= x >> 16;
    x ^= key_out;
    const bool keep = static_cast<int32_t>(x ^ 0x80000000U) >= signed_threshold;
    // a product with 0, as torch's dropout: a dropped NaN stays NaN
    output[k] = static_cast<scalar_t>(static_cast<opmath_t>(input[k]) * (keep ? scale : opmath_t(0)));
  }
}

template <typename scalar_t>
void seeded_dropout_kernel(const scalar_t* input, scalar_t* output, int64_t numel, uint64_t seed,
                           uint32_t threshold, double scale) {
  const auto keep_scale = static_cast<at::opmath_type<scalar_t>>(scale);
  at::parallel_for(0, numel, 8192, [&](int64_t begin, int64_t end) {
    while (begin < end) {  // split at block boundaries (only tensors over 2^32 elements have several)
      const int64_t block = begin / kBlock, block_start = block * kBlock;
      const int64_t stop = std::min(end, block_start + kBlock);
      const uint64_t keys = splitmix64(seed ^ splitmix64(static_cast<uint64_t>(block)));
      dropout_block_range<scalar_t>(input + block_start, output + block_start, begin - block_start,
                                    stop - block_start, static_cast<uint32_t>(keys),
                                    static_cast<uint32_t>(keys >> 32), threshold, keep_scale);
      begin = stop;
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
