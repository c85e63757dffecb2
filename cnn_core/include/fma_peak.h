/* The float32 FLOP peak of one core, measured: a loop of independent fused multiply-adds
 * and nothing else, on the widest vectors this CPU has. Benchmarks divide by it ("the model
 * trains at 64% of peak"); measuring it in the same run as them keeps the ratio honest on a
 * machine whose clock drifts.
 *
 * CHAINS accumulators: an FMA's result is ready after 4-5 cycles and a core issues two per
 * cycle, so at least 10 chains must be in flight; AVX2 has 16 registers (12 chains + 2
 * operands), AVX-512 32 (24 + 2). Each chain is acc = acc * (1 - 2^-23) + 1e-7, which
 * converges to ~0.84: the values stay normal (no slow path) however long it runs. Every lane
 * of every chain is summed into the result, so the compiler cannot drop any of them. */
#ifndef CNN_FMA_PEAK_H
#define CNN_FMA_PEAK_H

#include <stddef.h>
#include <stdint.h>
#include "cpu_dispatch.h"
#include "openmp_compat.h"
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#endif

#define CNN_PEAK_MUL 0.99999988f /* 1 - 2^-23 */
#define CNN_PEAK_ADD 1e-7f

#define CNN_PEAK_BODY(PFX, V, CHAINS)                                                       \
    V acc[CHAINS];                                                                          \
    const V mul = PFX##_set1_ps(CNN_PEAK_MUL), add = PFX##_set1_ps(CNN_PEAK_ADD);           \
    _Pragma("GCC unroll 32")                                                                \
    for (int c = 0; c < CHAINS; c++) acc[c] = PFX##_set1_ps((float)c);                      \
    for (int64_t i = 0; i < iters; i++) {                                                   \
        _Pragma("GCC unroll 32")                                                            \
        for (int c = 0; c < CHAINS; c++) acc[c] = PFX##_fmadd_ps(acc[c], mul, add);         \
    }                                                                                       \
    V sum = acc[0];                                                                         \
    _Pragma("GCC unroll 32")                                                                \
    for (int c = 1; c < CHAINS; c++) sum = PFX##_add_ps(sum, acc[c]);                       \
    float lanes[sizeof(V) / sizeof(float)], total = 0;                                      \
    PFX##_storeu_ps(lanes, sum);                                                            \
    for (size_t l = 0; l < sizeof(V) / sizeof(float); l++) total += lanes[l];               \
    return total;

#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("avx512f"))) static float cnn_fma_loop_avx512(int64_t iters) {
    CNN_PEAK_BODY(_mm512, __m512, 24)
}
__attribute__((target("avx2,fma"))) static float cnn_fma_loop_avx2(int64_t iters) {
    CNN_PEAK_BODY(_mm256, __m256, 12)
}
#endif

/* Plain C: 12 chains of 8 lanes, a multiply and an add each (the build never contracts them
 * into FMAs), which the compiler may vectorise; this is the peak of such code, not of FMAs. */
static float cnn_fma_loop_ref(int64_t iters) {
    float acc[12][8];
    for (int c = 0; c < 12; c++)
        for (int l = 0; l < 8; l++) acc[c][l] = (float)c;
    for (int64_t i = 0; i < iters; i++)
        for (int c = 0; c < 12; c++)
            for (int l = 0; l < 8; l++) acc[c][l] = acc[c][l] * CNN_PEAK_MUL + CNN_PEAK_ADD;
    float sum = 0;
    for (int c = 0; c < 12; c++)
        for (int l = 0; l < 8; l++) sum += acc[c][l];
    return sum;
}

/* Runs `iters` iterations of the loop of kernel family `level` (CNN_KERNEL_*, at most what
 * the CPU has) and returns its sum, which the caller must use. *flops receives the floating
 * point operations done (an FMA counts 2). */
static float cnn_fma_peak_run(int level, int64_t iters, double *flops) {
#if defined(__x86_64__) && defined(__GNUC__)
    if (level == CNN_KERNEL_AVX512) {
        *flops = 2.0 * 16 * 24 * (double)iters;
        return cnn_fma_loop_avx512(iters);
    }
    if (level == CNN_KERNEL_AVX2) {
        *flops = 2.0 * 8 * 12 * (double)iters;
        return cnn_fma_loop_avx2(iters);
    }
#endif
    (void)level;
    *flops = 2.0 * 8 * 12 * (double)iters;
    return cnn_fma_loop_ref(iters);
}

/* nt threads run the loop at once, each `iters` iterations; *flops receives the total. */
static float cnn_fma_peak_parallel(int level, int64_t iters, int nt, double *flops) {
    float sink = 0;
    int team = 1;
    double one = 0;
    _Pragma("omp parallel num_threads(nt) if (nt > 1) reduction(+ : sink)")
    {
        double f;
        sink += cnn_fma_peak_run(level, iters, &f);
        if (omp_get_thread_num() == 0) {
            team = omp_get_num_threads();
            one = f;
        }
    }
    *flops = one * team;
    return sink;
}

#endif
