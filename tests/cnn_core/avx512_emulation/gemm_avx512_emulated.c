/* cnn_core's GEMM driver with its AVX-512 kernel family, that family's kernels compiled
 * against mm512_on_avx2.h: the AVX-512 context (8 x 32 / 8 x 16 tiles, its cache blocks,
 * row variants, copyb kernels, GEMV) exercised on an AVX2 CPU. Built and loaded with ctypes
 * by tests/cnn_core/test_avx512_emulated.py; not part of the package. */
#include <immintrin.h>
#include "mm512_on_avx2.h"
#include "gemm_driver.h"

int emu_gemm_f32(int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t rs_a,
                 int64_t cs_a, const float *B, int64_t rs_b, int64_t cs_b, float beta, float *C,
                 int64_t rs_c, int64_t cs_c, int nthreads) {
    return cnn_gemm_run_f32(&cnn_ctx_avx512_f32, M, N, K, alpha, A, rs_a, cs_a, B, rs_b, cs_b,
                            beta, C, rs_c, cs_c, NULL, nthreads);
}

int emu_gemm_f64(int64_t M, int64_t N, int64_t K, double alpha, const double *A,
                 int64_t rs_a, int64_t cs_a, const double *B, int64_t rs_b, int64_t cs_b,
                 double beta, double *C, int64_t rs_c, int64_t cs_c, int nthreads) {
    return cnn_gemm_run_f64(&cnn_ctx_avx512_f64, M, N, K, alpha, A, rs_a, cs_a, B, rs_b, cs_b,
                            beta, C, rs_c, cs_c, NULL, nthreads);
}

/* Dense forward: c = act(a b + bias), z_out = a b + bias (row-major, contiguous). */
int emu_dense_f32(int64_t M, int64_t N, int64_t K, const float *A, const float *B,
                  const float *bias, float *C, float *z_out, int act, int nthreads) {
    cnn_epilogue_f32 ep = {.bias = bias, .z_out = z_out, .rs_z = N, .act = act};
    return cnn_gemm_run_f32(&cnn_ctx_avx512_f32, M, N, K, 1.0f, A, K, 1, B, N, 1, 0.0f, C, N,
                            1, &ep, nthreads);
}

int emu_tile_f32(int which) { return which == 0 ? CNN_AVX512_F32_MR : CNN_AVX512_F32_NR; }
