/* Direct convolution (AVX2, float32): the GEMM micro-kernel (microkernel_tile.h) with its A
 * panel read straight from the image instead of from im2col columns packed into panels.
 *
 * A tile is ROWS consecutive output pixels of one output row x 8 * VECS filters. Tap t of the
 * tile's pixel i is x[i * pixel_step + off[t]]: x points at the first pixel's window in an
 * image with its padding already in place, so there are no bounds to test. The weights are
 * read in place, rows ldw apart (w: taps x filters). Taps run in order from zero with one FMA
 * chain per output, then the bias is added and ReLU or the identity applied in registers
 * before the only store: the operations of im2col + GEMM (one K block) + the dense epilogue,
 * so the outputs have their bits, without writing or packing the columns.
 *
 * Compiled for AVX2 through the target attribute only; called only when the CPU has it. */
#ifndef CNN_CONV_DIRECT_H
#define CNN_CONV_DIRECT_H

#include <stdint.h>
#include <immintrin.h>
#include "activation_math.h"

#if defined(__x86_64__) && defined(__GNUC__)
#define CNN_CONV_DIRECT_TARGET __attribute__((target("avx2,fma")))

#define CNN_CONV_DIRECT_TILE(ROWS, VECS)                                                      \
CNN_CONV_DIRECT_TARGET                                                                        \
static void cnn_conv_tile_r##ROWS##_v##VECS##_avx2_f32(                                       \
        int64_t taps, const float *restrict x, int64_t pixel_step, const int64_t *off,        \
        const float *restrict w, int64_t ldw, const float *bias, int relu,                    \
        float *c, int64_t rs_c, float *z, int64_t rs_z) {                                     \
    __m256 acc[ROWS][VECS];                                                                   \
    _Pragma("GCC unroll 8")                                                                   \
    for (int i = 0; i < ROWS; i++)                                                            \
        _Pragma("GCC unroll 2")                                                               \
        for (int v = 0; v < VECS; v++) acc[i][v] = _mm256_setzero_ps();                       \
    for (int64_t t = 0; t < taps; t++) {                                                      \
        __m256 b[VECS];                                                                       \
        _Pragma("GCC unroll 2")                                                               \
        for (int v = 0; v < VECS; v++) b[v] = _mm256_loadu_ps(w + v * 8);                     \
        const float *xt = x + off[t];                                                         \
        _Pragma("GCC unroll 8")                                                               \
        for (int i = 0; i < ROWS; i++) {                                                      \
            const __m256 ai = _mm256_broadcast_ss(xt + i * pixel_step);                       \
            _Pragma("GCC unroll 2")                                                           \
            for (int v = 0; v < VECS; v++) acc[i][v] = _mm256_fmadd_ps(ai, b[v], acc[i][v]);  \
        }                                                                                     \
        w += ldw;                                                                             \
    }                                                                                         \
    const __m256 zero = _mm256_setzero_ps();                                                  \
    _Pragma("GCC unroll 8")                                                                   \
    for (int i = 0; i < ROWS; i++)                                                            \
        _Pragma("GCC unroll 2")                                                               \
        for (int v = 0; v < VECS; v++) {                                                      \
            __m256 r = acc[i][v];                                                             \
            if (bias != NULL) r = _mm256_add_ps(r, _mm256_loadu_ps(bias + v * 8));            \
            if (z != NULL) _mm256_storeu_ps(z + i * rs_z + v * 8, r);                         \
            if (relu) r = _mm256_and_ps(r, _mm256_cmp_ps(r, zero, _CMP_GT_OQ));               \
            _mm256_storeu_ps(c + i * rs_c + v * 8, r);                                        \
        }                                                                                     \
}

/* The weight gradient's tile: ROWS taps x 8 * VECS filters of the sum, over one image's
 * output pixels in row-major order, of x[the pixel's window + off[t]] * dz[pixel, f]: one FMA
 * chain per weight and image, stored to c (first image of a partial) or added to it (the
 * image's sum: summed per image, as the GEMM sums per K block). x: the image's first window;
 * output row p's windows start p * row_step further, pixel q's q * pixel_step; dz: the
 * image's gradient, rows ldz apart, at the tile's first filter; c: rows (taps) ldc apart.
 * RELU: dz holds dL/da and dz = dL/da where a > 0, else 0 (ra: a, laid out as dz), which is
 * the ReLU backward pass's AND mask: the same dz bits, without writing dz. */
#define CNN_CONV_DW_TILE(ROWS, VECS, RELU)                                                    \
CNN_CONV_DIRECT_TARGET                                                                        \
static void cnn_conv_dw_tile_r##ROWS##_v##VECS##_m##RELU##_avx2_f32(                          \
        int64_t out_h, int64_t out_w, const float *restrict x, int64_t row_step,              \
        int64_t pixel_step, const int64_t *off, const float *restrict dz,                     \
        const float *restrict ra, int64_t ldz, float *c, int64_t ldc, int first) {            \
    __m256 acc[ROWS][VECS];                                                                   \
    int64_t o[ROWS];                                                                          \
    const __m256 zero = _mm256_setzero_ps();                                                  \
    _Pragma("GCC unroll 8")                                                                   \
    for (int i = 0; i < ROWS; i++) {                                                          \
        o[i] = off[i];                                                                        \
        _Pragma("GCC unroll 2")                                                               \
        for (int v = 0; v < VECS; v++) acc[i][v] = _mm256_setzero_ps();                       \
    }                                                                                         \
    for (int64_t p = 0; p < out_h; p++) {                                                     \
        const float *xq = x + p * row_step;                                                   \
        for (int64_t q = 0; q < out_w; q++) {                                                 \
            __m256 b[VECS];                                                                   \
            _Pragma("GCC unroll 2")                                                           \
            for (int v = 0; v < VECS; v++) {                                                  \
                b[v] = _mm256_loadu_ps(dz + v * 8);                                           \
                if (RELU)                                                                     \
                    b[v] = _mm256_and_ps(b[v], _mm256_cmp_ps(_mm256_loadu_ps(ra + v * 8),     \
                                                             zero, _CMP_GT_OQ));              \
            }                                                                                 \
            _Pragma("GCC unroll 8")                                                           \
            for (int i = 0; i < ROWS; i++) {                                                  \
                const __m256 ai = _mm256_broadcast_ss(xq + o[i]);                             \
                _Pragma("GCC unroll 2")                                                       \
                for (int v = 0; v < VECS; v++)                                                \
                    acc[i][v] = _mm256_fmadd_ps(ai, b[v], acc[i][v]);                         \
            }                                                                                 \
            dz += ldz;                                                                        \
            if (RELU) ra += ldz;                                                              \
            xq += pixel_step;                                                                 \
        }                                                                                     \
    }                                                                                         \
    _Pragma("GCC unroll 8")                                                                   \
    for (int i = 0; i < ROWS; i++)                                                            \
        _Pragma("GCC unroll 2")                                                               \
        for (int v = 0; v < VECS; v++) {                                                      \
            float *ci = c + i * ldc + v * 8;                                                  \
            _mm256_storeu_ps(ci, first ? acc[i][v]                                            \
                                       : _mm256_add_ps(_mm256_loadu_ps(ci), acc[i][v]));      \
        }                                                                                     \
}

/* db (8 filters): the sum of an image's dz rows, in pixel order (RELU: masked as above). */
CNN_CONV_DIRECT_TARGET
static void cnn_conv_db8_avx2_f32(int64_t pixels, const float *dz, const float *ra,
                                  int64_t ldz, float *db, int first) {
    const __m256 zero = _mm256_setzero_ps();
    __m256 sum = _mm256_setzero_ps();
    for (int64_t pixel = 0; pixel < pixels; pixel++) {
        __m256 d = _mm256_loadu_ps(dz + pixel * ldz);
        if (ra != NULL)
            d = _mm256_and_ps(d, _mm256_cmp_ps(_mm256_loadu_ps(ra + pixel * ldz), zero,
                                               _CMP_GT_OQ));
        sum = _mm256_add_ps(sum, d);
    }
    _mm256_storeu_ps(db, first ? sum : _mm256_add_ps(_mm256_loadu_ps(db), sum));
}

#define CNN_CONV_DW_TILES(VECS, RELU)                                                         \
    CNN_CONV_DW_TILE(1, VECS, RELU) CNN_CONV_DW_TILE(2, VECS, RELU)                           \
    CNN_CONV_DW_TILE(3, VECS, RELU) CNN_CONV_DW_TILE(4, VECS, RELU)                           \
    CNN_CONV_DW_TILE(5, VECS, RELU) CNN_CONV_DW_TILE(6, VECS, RELU)
#define CNN_CONV_DIRECT_TILES(VECS)                                                           \
    CNN_CONV_DIRECT_TILE(1, VECS) CNN_CONV_DIRECT_TILE(2, VECS) CNN_CONV_DIRECT_TILE(3, VECS) \
    CNN_CONV_DIRECT_TILE(4, VECS) CNN_CONV_DIRECT_TILE(5, VECS) CNN_CONV_DIRECT_TILE(6, VECS) \
    CNN_CONV_DW_TILES(VECS, 0) CNN_CONV_DW_TILES(VECS, 1)
CNN_CONV_DIRECT_TILES(1)
CNN_CONV_DIRECT_TILES(2)

typedef void (*cnn_conv_dw_tile_fn)(int64_t, int64_t, const float *, int64_t, int64_t,
                                    const int64_t *, const float *, const float *, int64_t,
                                    float *, int64_t, int);
#define CNN_CONV_DW_ROW(VECS, RELU)                                                            \
    {cnn_conv_dw_tile_r1_v##VECS##_m##RELU##_avx2_f32, cnn_conv_dw_tile_r2_v##VECS##_m##RELU##_avx2_f32, \
     cnn_conv_dw_tile_r3_v##VECS##_m##RELU##_avx2_f32, cnn_conv_dw_tile_r4_v##VECS##_m##RELU##_avx2_f32, \
     cnn_conv_dw_tile_r5_v##VECS##_m##RELU##_avx2_f32, cnn_conv_dw_tile_r6_v##VECS##_m##RELU##_avx2_f32}
/* [RELU][VECS - 1][ROWS - 1] */
static const cnn_conv_dw_tile_fn cnn_conv_dw_tiles_avx2_f32[2][2][6] = {
    {CNN_CONV_DW_ROW(1, 0), CNN_CONV_DW_ROW(2, 0)},
    {CNN_CONV_DW_ROW(1, 1), CNN_CONV_DW_ROW(2, 1)},
};

typedef void (*cnn_conv_tile_fn)(int64_t, const float *, int64_t, const int64_t *,
                                 const float *, int64_t, const float *, int, float *, int64_t,
                                 float *, int64_t);
/* [VECS - 1][ROWS - 1] */
static const cnn_conv_tile_fn cnn_conv_tiles_avx2_f32[2][6] = {
    {cnn_conv_tile_r1_v1_avx2_f32, cnn_conv_tile_r2_v1_avx2_f32, cnn_conv_tile_r3_v1_avx2_f32,
     cnn_conv_tile_r4_v1_avx2_f32, cnn_conv_tile_r5_v1_avx2_f32, cnn_conv_tile_r6_v1_avx2_f32},
    {cnn_conv_tile_r1_v2_avx2_f32, cnn_conv_tile_r2_v2_avx2_f32, cnn_conv_tile_r3_v2_avx2_f32,
     cnn_conv_tile_r4_v2_avx2_f32, cnn_conv_tile_r5_v2_avx2_f32, cnn_conv_tile_r6_v2_avx2_f32},
};
#define CNN_CONV_DIRECT_AVAILABLE 1
#else
#define CNN_CONV_DIRECT_AVAILABLE 0
#endif

/* One output row of one image: out_w pixels x filters (filters a multiple of 8), rows of the
 * output rs_c apart... contiguous: pixel q's filters at c + q * filters (z likewise, or NULL).
 * x: the row's first window in the padded image; pixel_step: floats between the windows of
 * neighbouring pixels (stride_w * channels). act: any elementwise CNN_ACT_*; ReLU and the
 * identity are applied in registers, the others on each finished tile while it is in L1. The
 * filter blocks are the outer loop: their weights (taps x 16 floats) stay in L1 along the
 * row. Returns 0, or -1 where there is no AVX2 kernel (the caller never asks then). */
static inline int cnn_conv_direct_row_f32(const float *x, int64_t pixel_step, const int64_t *off,
                                          int64_t taps, const float *w, int64_t filters,
                                          const float *bias, int act, float param, float *c,
                                          float *z, int64_t out_w) {
#if CNN_CONV_DIRECT_AVAILABLE
    const int in_registers = act == CNN_ACT_IDENTITY || act == CNN_ACT_RELU;
    for (int64_t f0 = 0; f0 < filters; f0 += 16) {
        const int vecs = filters - f0 >= 16 ? 2 : 1;
        for (int64_t q0 = 0; q0 < out_w; q0 += 6) {
            const int rows = out_w - q0 >= 6 ? 6 : (int)(out_w - q0);
            float *ct = c + q0 * filters + f0;
            cnn_conv_tiles_avx2_f32[vecs - 1][rows - 1](
                taps, x + q0 * pixel_step, pixel_step, off, w + f0, filters,
                bias == NULL ? NULL : bias + f0, act == CNN_ACT_RELU, ct, filters,
                z == NULL ? NULL : z + q0 * filters + f0, filters);
            if (!in_registers)
                for (int i = 0; i < rows; i++)
                    cnn_act_apply_f32(act, ct + i * filters, ct + i * filters, 8 * vecs, param);
        }
    }
    return 0;
#else
    (void)x; (void)pixel_step; (void)off; (void)taps; (void)w; (void)filters; (void)bias;
    (void)act; (void)param; (void)c; (void)z; (void)out_w;
    return -1;
#endif
}

/* One image's share of the weight gradient: dw (taps x filters, the layout of w) = (first) or
 * += the sum over its output pixels of x-window x dz (see the dW tile), and db (filters) = or
 * += the sum of its dz rows (pixel order, one chain per filter). Filter blocks outermost: the
 * image's dz, read once per block of 6 taps, stays in L2. */
static inline int cnn_conv_direct_dw_image_f32(int64_t out_h, int64_t out_w, const float *x,
                                               int64_t row_step, int64_t pixel_step,
                                               const int64_t *off, int64_t taps,
                                               const float *dz, const float *relu_a,
                                               int64_t filters, float *dw, float *db,
                                               int first) {
#if CNN_CONV_DIRECT_AVAILABLE
    const int relu = relu_a != NULL;
    for (int64_t f0 = 0; f0 < filters; f0 += 16) {
        const int vecs = filters - f0 >= 16 ? 2 : 1;
        for (int64_t t0 = 0; t0 < taps; t0 += 6) {
            const int rows = taps - t0 >= 6 ? 6 : (int)(taps - t0);
            cnn_conv_dw_tiles_avx2_f32[relu][vecs - 1][rows - 1](
                out_h, out_w, x, row_step, pixel_step, off + t0, dz + f0,
                relu ? relu_a + f0 : NULL, filters, dw + t0 * filters + f0, filters, first);
        }
    }
    /* db: this image's sum first, then added, as its weights' sums are */
    for (int64_t f0 = 0; f0 < filters; f0 += 8)
        cnn_conv_db8_avx2_f32(out_h * out_w, dz + f0, relu ? relu_a + f0 : NULL, filters,
                              db + f0, first);
    return 0;
#else
    (void)out_h; (void)out_w; (void)x; (void)row_step; (void)pixel_step; (void)off; (void)taps;
    (void)dz; (void)relu_a; (void)filters; (void)dw; (void)db; (void)first;
    return -1;
#endif
}

#endif
