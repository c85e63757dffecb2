/* AVX2 + FMA micro-kernels (same contract as microkernel_ref.h).
 * f32: 6 x 16 tile, f64: 6 x 8 tile; two vectors of B per row of C, 12 accumulators;
 * plus variants for the first 1..5 rows of a tile (CNN_AVX2_*_MR must be 6), variants that
 * read B in place and copy it packed (copyb, for the first tile of a column) and a GEMV.
 * Compiled for AVX2 through the target attribute only; called only when the CPU has it. */
#ifndef CNN_MICROKERNEL_AVX2_H
#define CNN_MICROKERNEL_AVX2_H

#include <stdint.h>
#include <immintrin.h>
#include "blocksizes.h"
#include "microkernel_tile.h"

#define CNN_AVX2_TARGET __attribute__((target("avx2,fma")))

#define CNN_AVX2_ROWS_VARIANT(T, N, V, SFX, W, MR, ROWS)                                     \
CNN_AVX2_TARGET                                                                              \
static void cnn_ukr_avx2_##N##_rows##ROWS(int64_t k, const T *restrict a,                    \
        const T *restrict b, int64_t ldb, T *restrict c, int64_t rs_c, T alpha, T beta) {    \
    CNN_SIMD_TILE_BODY(_mm256, T, V, SFX, W, MR, ROWS, CNN_TILE_B_KEEP)                      \
}

#define CNN_AVX2_COPYB_VARIANT(T, N, V, SFX, W, MR, ROWS)                                    \
CNN_AVX2_TARGET                                                                              \
static void cnn_ukr_avx2_##N##_copyb_rows##ROWS(int64_t k, const T *restrict a,              \
        const T *restrict b, int64_t ldb, T *restrict b_copy, T *restrict c, int64_t rs_c,   \
        T alpha, T beta) {                                                                   \
    CNN_SIMD_TILE_BODY(_mm256, T, V, SFX, W, MR, ROWS, CNN_TILE_B_COPY)                      \
}

#define CNN_DEFINE_AVX2_UKR(T, N, V, SFX, W, MR)                                             \
CNN_AVX2_TARGET                                                                              \
static void cnn_ukr_avx2_##N(int64_t k, const T *restrict a, const T *restrict b,            \
        int64_t ldb, T *restrict c, int64_t rs_c, T alpha, T beta) {                         \
    CNN_SIMD_TILE_BODY(_mm256, T, V, SFX, W, MR, MR, CNN_TILE_B_KEEP)                        \
}                                                                                            \
CNN_AVX2_ROWS_VARIANT(T, N, V, SFX, W, MR, 1)                                                \
CNN_AVX2_COPYB_VARIANT(T, N, V, SFX, W, MR, 1)                                               \
CNN_AVX2_ROWS_VARIANT(T, N, V, SFX, W, MR, 2)                                                \
CNN_AVX2_COPYB_VARIANT(T, N, V, SFX, W, MR, 2)                                               \
CNN_AVX2_ROWS_VARIANT(T, N, V, SFX, W, MR, 3)                                                \
CNN_AVX2_COPYB_VARIANT(T, N, V, SFX, W, MR, 3)                                               \
CNN_AVX2_ROWS_VARIANT(T, N, V, SFX, W, MR, 4)                                                \
CNN_AVX2_COPYB_VARIANT(T, N, V, SFX, W, MR, 4)                                               \
CNN_AVX2_ROWS_VARIANT(T, N, V, SFX, W, MR, 5)                                                \
CNN_AVX2_COPYB_VARIANT(T, N, V, SFX, W, MR, 5)                                               \
CNN_AVX2_COPYB_VARIANT(T, N, V, SFX, W, MR, 6)                                               \
/* The first m < MR rows of a tile only: the batch's last rows and single samples do not     \
 * pay for the MR - m zero rows of the packed panel. */                                      \
static void cnn_ukr_avx2_##N##_rows(int m, int64_t k, const T *a, const T *b,                \
        int64_t ldb, T *c, int64_t rs_c, T alpha, T beta) {                                  \
    switch (m) {                                                                             \
    case 1: cnn_ukr_avx2_##N##_rows1(k, a, b, ldb, c, rs_c, alpha, beta); return;            \
    case 2: cnn_ukr_avx2_##N##_rows2(k, a, b, ldb, c, rs_c, alpha, beta); return;            \
    case 3: cnn_ukr_avx2_##N##_rows3(k, a, b, ldb, c, rs_c, alpha, beta); return;            \
    case 4: cnn_ukr_avx2_##N##_rows4(k, a, b, ldb, c, rs_c, alpha, beta); return;            \
    default: cnn_ukr_avx2_##N##_rows5(k, a, b, ldb, c, rs_c, alpha, beta); return;           \
    }                                                                                        \
}                                                                                            \
/* m <= MR rows of a tile, B read in place (ldb apart) and copied, packed, to b_copy. */     \
static void cnn_ukr_avx2_##N##_copyb(int m, int64_t k, const T *a, const T *b,               \
        int64_t ldb, T *b_copy, T *c, int64_t rs_c, T alpha, T beta) {                       \
    switch (m) {                                                                             \
    case 1: cnn_ukr_avx2_##N##_copyb_rows1(k, a, b, ldb, b_copy, c, rs_c, alpha, beta); return; \
    case 2: cnn_ukr_avx2_##N##_copyb_rows2(k, a, b, ldb, b_copy, c, rs_c, alpha, beta); return; \
    case 3: cnn_ukr_avx2_##N##_copyb_rows3(k, a, b, ldb, b_copy, c, rs_c, alpha, beta); return; \
    case 4: cnn_ukr_avx2_##N##_copyb_rows4(k, a, b, ldb, b_copy, c, rs_c, alpha, beta); return; \
    case 5: cnn_ukr_avx2_##N##_copyb_rows5(k, a, b, ldb, b_copy, c, rs_c, alpha, beta); return; \
    default: cnn_ukr_avx2_##N##_copyb_rows6(k, a, b, ldb, b_copy, c, rs_c, alpha, beta); return; \
    }                                                                                        \
}

#if CNN_AVX2_F32_MR != 6 || CNN_AVX2_F64_MR != 6
#error "the AVX2 row variants assume MR == 6"
#endif
CNN_DEFINE_AVX2_UKR(float, f32, __m256, ps, 8, CNN_AVX2_F32_MR)
CNN_DEFINE_AVX2_UKR(double, f64, __m256d, pd, 4, CNN_AVX2_F64_MR)

/* Lane masks for the last, partial vector of a row: lane i is on when i < left. */
CNN_AVX2_TARGET static inline __m256i cnn_avx2_mask_f32(int64_t left) {
    const int32_t l = left < 0 ? 0 : left > 8 ? 8 : (int32_t)left;
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(l), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
CNN_AVX2_TARGET static inline __m256i cnn_avx2_mask_f64(int64_t left) {
    const int64_t l = left < 0 ? 0 : left > 4 ? 4 : left;
    return _mm256_cmpgt_epi64(_mm256_set1_epi64x(l), _mm256_setr_epi64x(0, 1, 2, 3));
}

/* One row of C (GEMV, a single sample): c[0..n) = alpha * sum_p a[p * inc_a] * b[p * ldb + j]
 * (+ beta * c). The per-element FMA order is the tile kernels' (p increasing, from zero), so a
 * sample's outputs have the same bits alone as inside a batch; eight independent vectors of
 * columns keep the FMA units busy where a 1-row tile would wait on one dependency chain. */
#define CNN_DEFINE_AVX2_GEMV(T, N, V, SFX, W)                                               \
CNN_AVX2_TARGET                                                                             \
static void cnn_gemv_avx2_##N(int64_t k, const T *restrict a, int64_t inc_a,                \
                              const T *restrict b, int64_t ldb, int64_t n,                  \
                              T *restrict c, T alpha, T beta) {                             \
    const V va = _mm256_set1_##SFX(alpha);                                                  \
    const V vb = _mm256_set1_##SFX(beta);                                                   \
    for (int64_t j0 = 0; j0 < n; j0 += 8 * W) {                                             \
        V acc[8];                                                                           \
        __m256i mask[8];                                                                    \
        _Pragma("GCC unroll 8")                                                             \
        for (int v = 0; v < 8; v++) {                                                       \
            mask[v] = cnn_avx2_mask_##N(n - j0 - v * W);                                    \
            acc[v] = _mm256_setzero_##SFX();                                                \
        }                                                                                   \
        const T *bp = b + j0;                                                               \
        if (n - j0 >= 8 * W) {                                                              \
            for (int64_t p = 0; p < k; p++) {                                               \
                const V ap = _mm256_set1_##SFX(a[p * inc_a]);                               \
                _Pragma("GCC unroll 8")                                                     \
                for (int v = 0; v < 8; v++)                                                 \
                    acc[v] = _mm256_fmadd_##SFX(ap, _mm256_loadu_##SFX(bp + v * W), acc[v]); \
                bp += ldb;                                                                  \
            }                                                                               \
        } else {                                                                            \
            for (int64_t p = 0; p < k; p++) {                                               \
                const V ap = _mm256_set1_##SFX(a[p * inc_a]);                               \
                _Pragma("GCC unroll 8")                                                     \
                for (int v = 0; v < 8; v++)                                                 \
                    acc[v] = _mm256_fmadd_##SFX(                                            \
                        ap, _mm256_maskload_##SFX(bp + v * W, mask[v]), acc[v]);            \
                bp += ldb;                                                                  \
            }                                                                               \
        }                                                                                   \
        _Pragma("GCC unroll 8")                                                             \
        for (int v = 0; v < 8; v++) {                                                       \
            T *cv = c + j0 + v * W;                                                         \
            V r = _mm256_mul_##SFX(va, acc[v]);                                             \
            if (beta != 0)                                                                  \
                r = _mm256_add_##SFX(r, _mm256_mul_##SFX(vb,                                \
                                                         _mm256_maskload_##SFX(cv, mask[v]))); \
            _mm256_maskstore_##SFX(cv, mask[v], r);                                         \
        }                                                                                   \
    }                                                                                       \
}

CNN_DEFINE_AVX2_GEMV(float, f32, __m256, ps, 8)
CNN_DEFINE_AVX2_GEMV(double, f64, __m256d, pd, 4)

/* Packs m <= ROWS (6 or 8) source rows, each contiguous in k, into k-major order:
 * dst[k * ld + i] = A[i * rs_a + k] for i < m, 0 for m <= i < ROWS. Eight k at a time through
 * an 8 x 8 register transpose, where the scalar loop would store one float at a time. Used
 * for A panels (ld = MR = ROWS) and, eight columns at a time, for transposed B panels
 * (ld = NR). */
/* The in-lane half of an 8 x 8 transpose: u[c] holds rows 0-3 of column c (low half) and of
 * column c + 4 (high half), u[4 + c] rows 4-7 of the same columns. */
CNN_AVX2_TARGET static inline void cnn_avx2_transpose8_inlane_ps(const __m256 r[8],
                                                                  __m256 u[8]) {
    const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
    const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
    const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
    const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
    u[0] = _mm256_shuffle_ps(t0, t2, 0x44);
    u[1] = _mm256_shuffle_ps(t0, t2, 0xEE);
    u[2] = _mm256_shuffle_ps(t1, t3, 0x44);
    u[3] = _mm256_shuffle_ps(t1, t3, 0xEE);
    u[4] = _mm256_shuffle_ps(t4, t6, 0x44);
    u[5] = _mm256_shuffle_ps(t4, t6, 0xEE);
    u[6] = _mm256_shuffle_ps(t5, t7, 0x44);
    u[7] = _mm256_shuffle_ps(t5, t7, 0xEE);
}

CNN_AVX2_TARGET static inline void cnn_avx2_transpose8_ps(__m256 r[8]) {
    __m256 u[8];
    cnn_avx2_transpose8_inlane_ps(r, u);
    _Pragma("GCC unroll 4")
    for (int c = 0; c < 4; c++) {
        r[c] = _mm256_permute2f128_ps(u[c], u[4 + c], 0x20);
        r[4 + c] = _mm256_permute2f128_ps(u[c], u[4 + c], 0x31);
    }
}

#define CNN_DEFINE_AVX2_PACK_T_ROWS(ROWS)                                                   \
CNN_AVX2_TARGET                                                                             \
static void cnn_pack_t_rows##ROWS##_avx2_f32(const float *restrict A, int64_t rs_a, int m,  \
                                             int64_t kc, int64_t ld, float *restrict dst) { \
    int64_t k = 0;                                                                          \
    for (; k + 8 <= kc; k += 8) {                                                           \
        __m256 r[8];                                                                        \
        _Pragma("GCC unroll 8")                                                             \
        for (int i = 0; i < 8; i++)                                                         \
            r[i] = i < m ? _mm256_loadu_ps(A + i * rs_a + k) : _mm256_setzero_ps();         \
        cnn_avx2_transpose8_ps(r);                                                          \
        _Pragma("GCC unroll 8")                                                             \
        for (int j = 0; j < 8; j++)                                                         \
            _mm256_storeu_ps(dst + (k + j) * ld, r[j]);                                     \
    }                                                                                       \
    for (; k < kc; k++)                                                                     \
        for (int i = 0; i < ROWS; i++) dst[k * ld + i] = i < m ? A[i * rs_a + k] : 0.0f;   \
}

CNN_DEFINE_AVX2_PACK_T_ROWS(8)

/* The 6-row panel (ld = 6) without the 8 x 8 transpose's last step: its cross-lane permutes
 * are 8 micro-ops each on CPUs with 128-bit vector units (Zen 1). After the in-lane shuffles
 * u[c] holds rows 0-3 of columns k + c (low half) and k + c + 4 (high half), u[4 + c] rows
 * 4-7 of the same: each k's 6 floats are a 4-float and a 2-float store of halves. Never writes
 * past the row (a neighbour may own it). */
CNN_AVX2_TARGET
static void cnn_pack_t_rows6_avx2_f32(const float *restrict A, int64_t rs_a, int m,
                                      int64_t kc, int64_t ld, float *restrict dst) {
    int64_t k = 0;
    for (; k + 8 <= kc; k += 8) {
        __m256 r[8], u[8];
        _Pragma("GCC unroll 8")
        for (int i = 0; i < 8; i++)
            r[i] = i < m ? _mm256_loadu_ps(A + i * rs_a + k) : _mm256_setzero_ps();
        cnn_avx2_transpose8_inlane_ps(r, u);
        _Pragma("GCC unroll 4")
        for (int c = 0; c < 4; c++) {
            float *lo = dst + (k + c) * ld, *hi = dst + (k + c + 4) * ld;
            _mm_storeu_ps(lo, _mm256_castps256_ps128(u[c]));
            _mm_storel_pi((__m64 *)(lo + 4), _mm256_castps256_ps128(u[4 + c]));
            _mm_storeu_ps(hi, _mm256_extractf128_ps(u[c], 1));
            _mm_storel_pi((__m64 *)(hi + 4), _mm256_extractf128_ps(u[4 + c], 1));
        }
    }
    for (; k < kc; k++)
        for (int i = 0; i < 6; i++) dst[k * ld + i] = i < m ? A[i * rs_a + k] : 0.0f;
}

#endif
