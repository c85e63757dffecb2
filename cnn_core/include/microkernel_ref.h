/* Reference micro-kernel: plain C, any x86-64 (and any other CPU).
 *
 * Every micro-kernel has this contract (BLIS's, with C row-major):
 *   C[MR x NR] = alpha * sum_p a[p*MR + i] * b[p*NR + j]  (+ beta * C when beta != 0)
 *   a: packed A micro-panel, k x MR (MR contiguous per p); b: B micro-panel, k rows of NR
 *   contiguous values, ldb apart (the driver always packs B, so ldb == NR).
 *   c: the tile's top-left element, rows rs_c apart, columns contiguous.
 *   With beta == 0, C is never read (so NaN in an output buffer cannot leak in).
 * The products are summed in increasing p, one accumulator per element of C: the result of an
 * element never depends on which tile or thread computed it. */
#ifndef CNN_MICROKERNEL_REF_H
#define CNN_MICROKERNEL_REF_H

#include <stdint.h>
#include "blocksizes.h"

#define CNN_DEFINE_REF_UKR(T, N, MR, NR)                                                   \
static void cnn_ukr_ref_##N(int64_t k, const T *restrict a, const T *restrict b,         \
                            int64_t ldb, T *restrict c, int64_t rs_c, T alpha, T beta) {               \
    T acc[MR][NR];                                                                         \
    for (int i = 0; i < MR; i++)                                                           \
        for (int j = 0; j < NR; j++) acc[i][j] = 0;                                        \
    for (int64_t p = 0; p < k; p++) {                                                      \
        for (int i = 0; i < MR; i++) {                                                     \
            const T ai = a[p * MR + i];                                                    \
            for (int j = 0; j < NR; j++) acc[i][j] += ai * b[p * ldb + j];                  \
        }                                                                                  \
    }                                                                                      \
    for (int i = 0; i < MR; i++) {                                                         \
        T *ci = c + i * rs_c;                                                              \
        if (beta == 0)                                                                     \
            for (int j = 0; j < NR; j++) ci[j] = alpha * acc[i][j];                        \
        else                                                                               \
            for (int j = 0; j < NR; j++) ci[j] = alpha * acc[i][j] + beta * ci[j];         \
    }                                                                                      \
}

CNN_DEFINE_REF_UKR(float, f32, CNN_REF_F32_MR, CNN_REF_F32_NR)
CNN_DEFINE_REF_UKR(double, f64, CNN_REF_F64_MR, CNN_REF_F64_NR)

#endif
