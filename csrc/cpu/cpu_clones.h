// Hot CPU loops are compiled twice, for x86-64-v3 (AVX2 + FMA) and baseline x86-64, and the
// copy to run is picked at load time: an extension cannot assume the CPU it will run on.
#pragma once

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define DDETR_CPU_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define DDETR_CPU_CLONES
#endif
