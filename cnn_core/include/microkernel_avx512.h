/* AVX-512 micro-kernels (same contract as microkernel_ref.h).
 * f32: 8 x 32 tile, f64: 8 x 16 tile; two vectors of B per row of C, 16 accumulators.
 * Compiled for AVX-512 through the target attribute only; called only when the CPU has it. */
#ifndef CNN_MICROKERNEL_AVX512_H
#define CNN_MICROKERNEL_AVX512_H

#include <stdint.h>
#include <immintrin.h>
#include "blocksizes.h"

#define CNN_AVX512_TARGET __attribute__((target("avx512f,avx512dq,avx512vl,avx2,fma")))

/* V: vector type, SFX: intrinsic suffix (ps/pd), W: lanes. */
#define CNN_DEFINE_AVX512_UKR(T, N, V, SFX, W, MR)                                          \
CNN_AVX512_TARGET                                                                           \
static void cnn_ukr_avx512_##N(int64_t k, const T *restrict a, const T *restrict b,       \
                               int64_t ldb, T *restrict c, int64_t rs_c, T alpha, T beta) {             \
    V acc0[MR], acc1[MR];                                                                   \
    _Pragma("GCC unroll 8")                                                                 \
    for (int i = 0; i < MR; i++) {                                                          \
        acc0[i] = _mm512_setzero_##SFX();                                                   \
        acc1[i] = _mm512_setzero_##SFX();                                                   \
    }                                                                                       \
    _Pragma("GCC unroll 2")                                                                 \
    for (int64_t p = 0; p < k; p++) {                                                       \
        const V b0 = _mm512_loadu_##SFX(b);                                                  \
        const V b1 = _mm512_loadu_##SFX(b + W);                                              \
        _Pragma("GCC unroll 8")                                                             \
        for (int i = 0; i < MR; i++) {                                                      \
            const V ai = _mm512_set1_##SFX(a[i]);                                           \
            acc0[i] = _mm512_fmadd_##SFX(ai, b0, acc0[i]);                                  \
            acc1[i] = _mm512_fmadd_##SFX(ai, b1, acc1[i]);                                  \
        }                                                                                   \
        a += MR;                                                                            \
        b += ldb;                                                                         \
    }                                                                                       \
    const V va = _mm512_set1_##SFX(alpha);                                                  \
    const V vb = _mm512_set1_##SFX(beta);                                                   \
    _Pragma("GCC unroll 8")                                                                 \
    for (int i = 0; i < MR; i++) {                                                          \
        T *ci = c + i * rs_c;                                                               \
        V r0 = _mm512_mul_##SFX(va, acc0[i]);                                               \
        V r1 = _mm512_mul_##SFX(va, acc1[i]);                                               \
        if (beta != 0) {                                                                    \
            r0 = _mm512_add_##SFX(r0, _mm512_mul_##SFX(vb, _mm512_loadu_##SFX(ci)));         \
            r1 = _mm512_add_##SFX(r1, _mm512_mul_##SFX(vb, _mm512_loadu_##SFX(ci + W)));     \
        }                                                                                   \
        _mm512_storeu_##SFX(ci, r0);                                                        \
        _mm512_storeu_##SFX(ci + W, r1);                                                    \
    }                                                                                       \
}

CNN_DEFINE_AVX512_UKR(float, f32, __m512, ps, 16, CNN_AVX512_F32_MR)
CNN_DEFINE_AVX512_UKR(double, f64, __m512d, pd, 8, CNN_AVX512_F64_MR)

#endif
