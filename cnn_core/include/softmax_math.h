/* The exp-and-sum pass of a softmax row, shared by softmax, log_softmax and the fused
 * softmax cross-entropies:
 *
 *   out[j] = exp(x[j] - shift) (when out is not NULL), returns sum_j exp(x[j] - shift).
 *
 * float32 uses cnn_expf (exp_math.h), eight lanes at a time on AVX2 CPUs; float64 uses libm's
 * exp. The sum is kept in float64 in eight partial sums, lane k taking j = k (mod 8) in
 * increasing j, combined pairwise, then the n % 8 last terms in order: a fixed order that
 * does not depend on the CPU path or the thread count. */
#ifndef CNN_SOFTMAX_MATH_H
#define CNN_SOFTMAX_MATH_H

#include <stdint.h>
#include <math.h>
#include "exp_math.h"
#include "cpu_dispatch.h"

#define CNN_EXP_SUM_COMBINE(acc) \
    (((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7])))

#define CNN_DEFINE_EXP_SUM_SCALAR(T, N, EXP)                                                 \
static double cnn_exp_sum_row_scalar_##N(const T *x, T shift, T *out, int64_t n) {           \
    double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};                                                \
    int64_t j = 0;                                                                           \
    for (; j + 8 <= n; j += 8)                                                               \
        for (int k = 0; k < 8; k++) {                                                        \
            const T e = EXP(x[j + k] - shift);                                               \
            if (out != NULL) out[j + k] = e;                                                 \
            acc[k] += (double)e;                                                             \
        }                                                                                    \
    double total = CNN_EXP_SUM_COMBINE(acc);                                                 \
    for (; j < n; j++) {                                                                     \
        const T e = EXP(x[j] - shift);                                                       \
        if (out != NULL) out[j] = e;                                                         \
        total += (double)e;                                                                  \
    }                                                                                        \
    return total;                                                                            \
}

CNN_DEFINE_EXP_SUM_SCALAR(float, f32, cnn_expf)
CNN_DEFINE_EXP_SUM_SCALAR(double, f64, exp)

#if CNN_EXP_HAVE_AVX2
/* The scalar f32 loop, eight j at a time: lanes 0-3 and 4-7 of each block in two vectors of
 * four float64 partial sums. */
__attribute__((target("avx2,fma")))
static double cnn_exp_sum_row_avx2_f32(const float *x, float shift, float *out, int64_t n) {
    const __m256 s = _mm256_set1_ps(shift);
    __m256d acc_lo = _mm256_setzero_pd(), acc_hi = _mm256_setzero_pd();
    int64_t j = 0;
    for (; j + 8 <= n; j += 8) {
        const __m256 e = cnn_exp8_avx2(_mm256_sub_ps(_mm256_loadu_ps(x + j), s));
        if (out != NULL) _mm256_storeu_ps(out + j, e);
        acc_lo = _mm256_add_pd(acc_lo, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
        acc_hi = _mm256_add_pd(acc_hi, _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
    }
    double acc[8];
    _mm256_storeu_pd(acc, acc_lo);
    _mm256_storeu_pd(acc + 4, acc_hi);
    double total = CNN_EXP_SUM_COMBINE(acc);
    for (; j < n; j++) {
        const float e = cnn_expf(x[j] - shift);
        if (out != NULL) out[j] = e;
        total += (double)e;
    }
    return total;
}
#endif

/* Set once by cnn_exp_sum_init() when the module loads (both paths give the same bits). */
static int cnn_exp_sum_use_avx2 = 0;

static void cnn_exp_sum_init(void) {
    cnn_exp_sum_use_avx2 = CNN_EXP_HAVE_AVX2 && cnn_cpu_best_kernel() >= CNN_KERNEL_AVX2;
}

static inline double cnn_exp_sum_row_f32(const float *x, float shift, float *out, int64_t n) {
#if CNN_EXP_HAVE_AVX2
    if (cnn_exp_sum_use_avx2) return cnn_exp_sum_row_avx2_f32(x, shift, out, n);
#endif
    return cnn_exp_sum_row_scalar_f32(x, shift, out, n);
}

static inline double cnn_exp_sum_row_f64(const double *x, double shift, double *out, int64_t n) {
    return cnn_exp_sum_row_scalar_f64(x, shift, out, n);
}

#endif
