/* AVX-512 micro-kernels (same contract as microkernel_ref.h).
 * f32: 8 x 32 tile, f64: 8 x 16 tile; two vectors of B per row of C, 16 accumulators;
 * plus variants for the first 1..7 rows of a tile (CNN_AVX512_*_MR must be 8) and variants
 * that read B in place and copy it packed (copyb, for the first tile of a column).
 * Compiled for AVX-512 through the target attribute only; called only when the CPU has it. */
#ifndef CNN_MICROKERNEL_AVX512_H
#define CNN_MICROKERNEL_AVX512_H

#include <stdint.h>
#include <immintrin.h>
#include "blocksizes.h"
#include "microkernel_tile.h"

/* Overridable: tests/cnn_core/avx512_emulation compiles these kernels against an AVX2
 * emulation of the _mm512 intrinsics, so their code runs on CPUs without AVX-512. */
#ifndef CNN_AVX512_TARGET
#define CNN_AVX512_TARGET __attribute__((target("avx512f,avx512dq,avx512vl,avx2,fma")))
#endif

#define CNN_AVX512_ROWS_VARIANT(T, N, V, SFX, W, MR, ROWS)                                   \
CNN_AVX512_TARGET                                                                            \
static void cnn_ukr_avx512_##N##_rows##ROWS(int64_t k, const T *restrict a,                  \
        const T *restrict b, int64_t ldb, T *restrict c, int64_t rs_c, T alpha, T beta) {    \
    CNN_SIMD_TILE_BODY(_mm512, T, V, SFX, W, MR, ROWS, CNN_TILE_B_KEEP)                      \
}

#define CNN_AVX512_COPYB_VARIANT(T, N, V, SFX, W, MR, ROWS)                                  \
CNN_AVX512_TARGET                                                                            \
static void cnn_ukr_avx512_##N##_copyb_rows##ROWS(int64_t k, const T *restrict a,            \
        const T *restrict b, int64_t ldb, T *restrict b_copy, T *restrict c, int64_t rs_c,   \
        T alpha, T beta) {                                                                   \
    CNN_SIMD_TILE_BODY(_mm512, T, V, SFX, W, MR, ROWS, CNN_TILE_B_COPY)                      \
}

#define CNN_DEFINE_AVX512_UKR(T, N, V, SFX, W, MR)                                           \
CNN_AVX512_TARGET                                                                            \
static void cnn_ukr_avx512_##N(int64_t k, const T *restrict a, const T *restrict b,          \
        int64_t ldb, T *restrict c, int64_t rs_c, T alpha, T beta) {                         \
    CNN_SIMD_TILE_BODY(_mm512, T, V, SFX, W, MR, MR, CNN_TILE_B_KEEP)                        \
}                                                                                            \
CNN_AVX512_ROWS_VARIANT(T, N, V, SFX, W, MR, 1)                                              \
CNN_AVX512_COPYB_VARIANT(T, N, V, SFX, W, MR, 1)                                             \
CNN_AVX512_ROWS_VARIANT(T, N, V, SFX, W, MR, 2)                                              \
CNN_AVX512_COPYB_VARIANT(T, N, V, SFX, W, MR, 2)                                             \
CNN_AVX512_ROWS_VARIANT(T, N, V, SFX, W, MR, 3)                                              \
CNN_AVX512_COPYB_VARIANT(T, N, V, SFX, W, MR, 3)                                             \
CNN_AVX512_ROWS_VARIANT(T, N, V, SFX, W, MR, 4)                                              \
CNN_AVX512_COPYB_VARIANT(T, N, V, SFX, W, MR, 4)                                             \
CNN_AVX512_ROWS_VARIANT(T, N, V, SFX, W, MR, 5)                                              \
CNN_AVX512_COPYB_VARIANT(T, N, V, SFX, W, MR, 5)                                             \
CNN_AVX512_ROWS_VARIANT(T, N, V, SFX, W, MR, 6)                                              \
CNN_AVX512_COPYB_VARIANT(T, N, V, SFX, W, MR, 6)                                             \
CNN_AVX512_ROWS_VARIANT(T, N, V, SFX, W, MR, 7)                                              \
CNN_AVX512_COPYB_VARIANT(T, N, V, SFX, W, MR, 7)                                             \
CNN_AVX512_COPYB_VARIANT(T, N, V, SFX, W, MR, 8)                                             \
/* The first m < MR rows of a tile only: the batch's last rows and single samples do not     \
 * pay for the MR - m zero rows of the packed panel. */                                      \
static void cnn_ukr_avx512_##N##_rows(int m, int64_t k, const T *a, const T *b,              \
        int64_t ldb, T *c, int64_t rs_c, T alpha, T beta) {                                  \
    switch (m) {                                                                             \
    case 1: cnn_ukr_avx512_##N##_rows1(k, a, b, ldb, c, rs_c, alpha, beta); return;          \
    case 2: cnn_ukr_avx512_##N##_rows2(k, a, b, ldb, c, rs_c, alpha, beta); return;          \
    case 3: cnn_ukr_avx512_##N##_rows3(k, a, b, ldb, c, rs_c, alpha, beta); return;          \
    case 4: cnn_ukr_avx512_##N##_rows4(k, a, b, ldb, c, rs_c, alpha, beta); return;          \
    case 5: cnn_ukr_avx512_##N##_rows5(k, a, b, ldb, c, rs_c, alpha, beta); return;          \
    case 6: cnn_ukr_avx512_##N##_rows6(k, a, b, ldb, c, rs_c, alpha, beta); return;          \
    default: cnn_ukr_avx512_##N##_rows7(k, a, b, ldb, c, rs_c, alpha, beta); return;         \
    }                                                                                        \
}                                                                                            \
/* m <= MR rows of a tile, B read in place (ldb apart) and copied, packed, to b_copy. */     \
static void cnn_ukr_avx512_##N##_copyb(int m, int64_t k, const T *a, const T *b,             \
        int64_t ldb, T *b_copy, T *c, int64_t rs_c, T alpha, T beta) {                       \
    switch (m) {                                                                             \
    case 1: cnn_ukr_avx512_##N##_copyb_rows1(k, a, b, ldb, b_copy, c, rs_c, alpha, beta); return; \
    case 2: cnn_ukr_avx512_##N##_copyb_rows2(k, a, b, ldb, b_copy, c, rs_c, alpha, beta); return; \
    case 3: cnn_ukr_avx512_##N##_copyb_rows3(k, a, b, ldb, b_copy, c, rs_c, alpha, beta); return; \
    case 4: cnn_ukr_avx512_##N##_copyb_rows4(k, a, b, ldb, b_copy, c, rs_c, alpha, beta); return; \
    case 5: cnn_ukr_avx512_##N##_copyb_rows5(k, a, b, ldb, b_copy, c, rs_c, alpha, beta); return; \
    case 6: cnn_ukr_avx512_##N##_copyb_rows6(k, a, b, ldb, b_copy, c, rs_c, alpha, beta); return; \
    case 7: cnn_ukr_avx512_##N##_copyb_rows7(k, a, b, ldb, b_copy, c, rs_c, alpha, beta); return; \
    default: cnn_ukr_avx512_##N##_copyb_rows8(k, a, b, ldb, b_copy, c, rs_c, alpha, beta); return; \
    }                                                                                        \
}

CNN_DEFINE_AVX512_UKR(float, f32, __m512, ps, 16, CNN_AVX512_F32_MR)
CNN_DEFINE_AVX512_UKR(double, f64, __m512d, pd, 8, CNN_AVX512_F64_MR)

/* One row of C (GEMV, a single sample): c[0..n) = alpha * sum_p a[p * inc_a] * b[p * ldb + j]
 * (+ beta * c). The per-element FMA order is the tile kernels' (p increasing, from zero), so a
 * sample's outputs have the same bits alone as inside a batch; eight independent vectors of
 * columns keep the FMA units busy where a 1-row tile would wait on one dependency chain. */
#define CNN_DEFINE_AVX512_GEMV(T, N, V, SFX, W, MASK_T, MASK_FN)                            \
CNN_AVX512_TARGET                                                                           \
static void cnn_gemv_avx512_##N(int64_t k, const T *restrict a, int64_t inc_a,              \
                                const T *restrict b, int64_t ldb, int64_t n,                \
                                T *restrict c, T alpha, T beta) {                           \
    const V va = _mm512_set1_##SFX(alpha);                                                  \
    const V vb = _mm512_set1_##SFX(beta);                                                   \
    for (int64_t j0 = 0; j0 < n; j0 += 8 * W) {                                             \
        V acc[8];                                                                           \
        MASK_T mask[8];                                                                     \
        _Pragma("GCC unroll 8")                                                             \
        for (int v = 0; v < 8; v++) {                                                       \
            const int64_t left = n - j0 - v * W;                                            \
            mask[v] = left >= W ? (MASK_T)-1 : left <= 0 ? (MASK_T)0                        \
                                                          : (MASK_T)((1u << left) - 1);     \
            acc[v] = _mm512_setzero_##SFX();                                                \
        }                                                                                   \
        const T *bp = b + j0;                                                               \
        for (int64_t p = 0; p < k; p++) {                                                   \
            const V ap = _mm512_set1_##SFX(a[p * inc_a]);                                   \
            _Pragma("GCC unroll 8")                                                         \
            for (int v = 0; v < 8; v++)                                                     \
                acc[v] = _mm512_fmadd_##SFX(ap, _mm512_maskz_loadu_##SFX(mask[v], bp + v * W), \
                                            acc[v]);                                        \
            bp += ldb;                                                                      \
        }                                                                                   \
        _Pragma("GCC unroll 8")                                                             \
        for (int v = 0; v < 8; v++) {                                                       \
            T *cv = c + j0 + v * W;                                                         \
            V r = _mm512_mul_##SFX(va, acc[v]);                                             \
            if (beta != 0)                                                                  \
                r = _mm512_add_##SFX(r, _mm512_mul_##SFX(vb,                                \
                                                         _mm512_maskz_loadu_##SFX(mask[v], cv))); \
            _mm512_mask_storeu_##SFX(cv, mask[v], r);                                       \
        }                                                                                   \
    }                                                                                       \
}

CNN_DEFINE_AVX512_GEMV(float, f32, __m512, ps, 16, __mmask16, 0)
CNN_DEFINE_AVX512_GEMV(double, f64, __m512d, pd, 8, __mmask8, 0)

#endif
