/* GEMM driver: packing, cache blocking and threading around one micro-kernel (BLIS layout).
 *
 *   C = alpha * A B + beta * C, A: M x K, B: K x N, C: M x N, each with arbitrary
 *   row/column strides (so transposes and views need no copy: they are only strides).
 *
 * Two loop nests, both over the same equal K blocks (<= KB, fixed by the shape):
 * - private (batches: each thread's rows of A fit one L2-sized block, MB_PRIVATE; or small
 *   K, where the shared path would wait at barriers more than it computes): threads pack
 *   their own A rows and B micro-panels and take whole column panels of C (dealt out
 *   dynamically). The first tile of a column reads B in place and packs it on the way (copyb
 *   kernels); the next ones read the packed copy from L1. No packed data is shared; the only
 *   barrier ends each K block. A tall C with a small B (M > N) is dealt out by groups of rows
 *   instead: then each thread packs all of B, the small operand, rather than all of A.
 * - shared (large M), BLIS's order:
 *   pc over K blocks                       (the only loop that accumulates into C)
 *   jc over N in blocks <= NB: pack the KB x NB block of B into NR-column micro-panels (L3)
 *   ic over M in blocks <= MB: pack the MB x KB block of A into MR-row micro-panels (L2)
 *   (q, p) over the NR-column and MR-row micro-panels: micro-kernel; one B micro-panel
 *          stays in L1 while the A micro-panels stream past it.
 * A narrow C (N < NR) is computed as C^T = B^T A^T, its long side along the vectors.
 * Threads split packing and tiles, never K: every element of C is summed by one thread in
 * the same order whatever the path and the thread count, so results are bitwise
 * reproducible.
 *
 * An optional epilogue runs on each tile right after its last K block, while it is in L1:
 * bias add, copy of the pre-activation z, elementwise activation (dense forward), or the
 * derivative of the activation below (dense backward's dx). */
#ifndef CNN_GEMM_DRIVER_H
#define CNN_GEMM_DRIVER_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "openmp_compat.h"
#include "blocksizes.h"
#include "cpu_dispatch.h"
#include "activation_math.h"
#include "microkernel_ref.h"
#if defined(__x86_64__) && defined(__GNUC__)
#include "microkernel_avx2.h"
#include "microkernel_avx512.h"
#define CNN_HAVE_X86_KERNELS 1
#else
#define CNN_HAVE_X86_KERNELS 0
#endif

#define CNN_MAX_TILE 256 /* >= MR * NR of every kernel */

static inline int64_t cnn_ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
static inline int64_t cnn_round_up(int64_t a, int64_t b) { return cnn_ceil_div(a, b) * b; }
static inline int64_t cnn_min64(int64_t a, int64_t b) { return a < b ? a : b; }

/* Rows of C in micro-panels of MR, except a short tail: a tile of r rows keeps only 2r
 * accumulator chains in flight, and below 8 (two FMA pipes x 4 cycles of latency) it runs
 * below peak. So r < 4 left rows are merged with the last full panel and the two are split
 * evenly (6 + 2 -> 4 + 4, 6 + 1 -> 4 + 3). A row's result does not depend on its tile's
 * height, so this changes the speed only, never the bits. */
static inline int64_t cnn_row_panel_count(int64_t M, int mr) { return cnn_ceil_div(M, mr); }

static inline void cnn_row_panel(int64_t M, int mr, int64_t p, int64_t *row0, int64_t *m) {
    const int64_t full = M / mr, r = M % mr;
    if (r == 0 || r >= 4 || full == 0 || p < full - 1) {
        *row0 = p * mr;
        *m = cnn_min64(mr, M - *row0);
    } else {
        const int64_t first = (mr + r + 1) / 2; /* the last two panels: first + (mr + r - first) */
        *row0 = (full - 1) * mr + (p == full ? first : 0);
        *m = p == full ? mr + r - first : first;
    }
}

/* Threads along M (tp) for a private-rectangles GEMM of nt threads: the rest go along N, as
 * many as there are NR-column panels (the largest divisor of nt that fits). */
static inline int cnn_rows_split(int nt, int64_t q_panels) {
    int tq = 1;
    for (int d = 1; d <= nt; d++)
        if (nt % d == 0 && d <= q_panels) tq = d;
    return nt / tq;
}

/* Runs CALL on a team of nt threads (each thread calls it; its worksharing loops split the
 * work), or directly on the caller when nt is 1: libgomp allocates and frees a team for every
 * parallel region, even one it runs on a single thread, which a training step must not do and
 * which costs ~0.5 us. With nt == 1, CALL must reach no OpenMP construct at all (CNN_TEAM_FOR):
 * it may run inside a caller's parallel region (the convolution's per-thread chunks), where an
 * orphaned worksharing loop would bind to that caller's team. */
#define CNN_ON_TEAM(nt, CALL)                                                                \
    do {                                                                                     \
        if ((nt) > 1) {                                                                      \
            _Pragma("omp parallel num_threads(nt)")                                          \
            CALL;                                                                            \
        } else {                                                                             \
            CALL;                                                                            \
        }                                                                                    \
    } while (0)

/* A loop split over the team by PRAGMA, or a plain loop when the team is one thread. */
#define CNN_TEAM_FOR(team, PRAGMA, HEAD, ...)                                                \
    if ((team) > 1) {                                                                        \
        _Pragma(PRAGMA)                                                                      \
        HEAD __VA_ARGS__                                                                     \
    } else {                                                                                 \
        HEAD __VA_ARGS__                                                                     \
    }

/* Packed blocks live in one buffer per calling thread, grown on demand and reused:
 * no allocation per call once the largest shape has been seen. */
static __thread void *cnn_ws_ptr = NULL;
static __thread size_t cnn_ws_bytes = 0;

static void *cnn_gemm_workspace(size_t bytes) {
    if (bytes > cnn_ws_bytes) {
        size_t rounded = (size_t)cnn_round_up((int64_t)bytes, 4096);
        void *p = aligned_alloc(64, rounded);
        if (p == NULL) return NULL;
        free(cnn_ws_ptr);
        cnn_ws_ptr = p;
        cnn_ws_bytes = rounded;
    }
    return cnn_ws_ptr;
}

#define CNN_EPILOGUE_FN(N, T, NAME, ATTR)                                                    \
ATTR static void NAME(const cnn_epilogue_##N *ep, T *c, int64_t rs_c, int64_t row0,         \
                      int64_t col0, int64_t m, int64_t n) {                                  \
    for (int64_t i = 0; i < m; i++) {                                                        \
        T *row = c + i * rs_c;                                                               \
        if (ep->bias != NULL) {                                                              \
            const T *bias = ep->bias + col0;                                                 \
            for (int64_t j = 0; j < n; j++) row[j] += bias[j];                               \
        }                                                                                    \
        if (ep->row_nonfinite != NULL && col0 == 0 && n > 0 && !__builtin_isfinite(row[0]))  \
            __atomic_store_n(ep->row_nonfinite, 1, __ATOMIC_RELAXED);                        \
        if (ep->z_out != NULL)                                                               \
            memcpy(ep->z_out + (row0 + i) * ep->rs_z + col0, row, (size_t)n * sizeof(T));    \
        cnn_act_apply_##N(ep->act, row, row, n, ep->param);                                  \
        if (ep->d_act > 0) {                                                                 \
            const int64_t at = (row0 + i) * ep->rs_d + col0;                                 \
            cnn_act_backward_##N(ep->d_act, row, ep->d_z + at, ep->d_a + at, row, n,         \
                                 ep->d_param);                                               \
        }                                                                                    \
    }                                                                                        \
}
#if CNN_HAVE_X86_KERNELS
#define CNN_EPILOGUE_FN_X86 CNN_EPILOGUE_FN
#else
#define CNN_EPILOGUE_FN_X86(N, T, NAME, ATTR)
#endif

#define CNN_DEFINE_GEMM(T, N)                                                                \
typedef void (*cnn_ukr_##N##_t)(int64_t, const T *, const T *, int64_t, T *, int64_t, T, T);          \
typedef void (*cnn_ukr_rows_##N##_t)(int, int64_t, const T *, const T *, int64_t, T *, int64_t, \
                                     T, T);                                                  \
typedef void (*cnn_gemv_##N##_t)(int64_t, const T *, int64_t, const T *, int64_t, int64_t, T *, \
                                 T, T);                                                      \
typedef void (*cnn_ukr_copyb_##N##_t)(int, int64_t, const T *, const T *, int64_t, T *, T *, \
                                      int64_t, T, T);                                        \
typedef void (*cnn_pack_t_##N##_t)(const T *, int64_t, int, int64_t, int64_t, T *);         \
typedef struct cnn_epilogue_##N cnn_epilogue_##N;                                            \
typedef void (*cnn_epilogue_fn_##N##_t)(const cnn_epilogue_##N *, T *, int64_t, int64_t,    \
                                        int64_t, int64_t, int64_t);                          \
                                                                                             \
typedef struct {                                                                             \
    int mr, nr;                                                                              \
    int64_t mb, kb, nb;                                                                      \
    int64_t mb_private; /* most rows of A one thread packs for itself (private path) */      \
    cnn_ukr_##N##_t ukr;                                                                     \
    cnn_ukr_rows_##N##_t ukr_rows; /* first m < mr rows of a tile, or NULL */                \
    cnn_ukr_copyb_##N##_t ukr_copyb; /* m <= mr rows, B read in place and packed, or NULL */  \
    cnn_gemv_##N##_t gemv;         /* M == 1 with contiguous B and C rows, or NULL */        \
    cnn_pack_t_##N##_t pack_a;     /* MR rows contiguous in k -> k-major (A panel), or NULL */ \
    cnn_pack_t_##N##_t pack_t8;    /* 8 rows contiguous in k -> k-major (B^T panel), or NULL */ \
    cnn_epilogue_fn_##N##_t epilogue;                                                        \
} cnn_gemm_ctx_##N;                                                                          \
                                                                                             \
struct cnn_epilogue_##N {                                                                    \
    const T *bias; /* (N,) or NULL */                                                        \
    T *z_out;      /* pre-activation copy or NULL; rows rs_z apart, columns contiguous */     \
    int64_t rs_z;                                                                            \
    int act;       /* CNN_ACT_* elementwise id; identity for none */                         \
    T param;                                                                                 \
    /* Backward through the layer below (dx = dz W^T becomes dL/dz of that layer):         */ \
    /* c *= f'(z), z and a = f(z) of shape M x N, rows rs_d apart. d_act <= 0: none.        */ \
    int d_act;                                                                               \
    const T *d_z, *d_a;                                                                      \
    int64_t rs_d;                                                                            \
    T d_param;                                                                               \
    /* Not NULL: set to 1 when a row's first pre-activation (column 0 after the bias) is    */ \
    /* not finite. A NaN or inf in a row of A makes every entry of that row of C non-finite */ \
    /* (NaN and inf survive every product and sum, whatever B holds), so a flag left at 0   */ \
    /* proves A finite without reading it again; a set flag means a non-finite A or an      */ \
    /* overflow, which the caller tells apart.                                              */ \
    int *row_nonfinite;                                                                      \
};                                                                                           \
                                                                                             \
/* rows x width block, source rows `stride` apart -> dst rows packed `width` apart. The tile \
 * widths get a constant count, so each row is a few vector moves, not a memcpy call. */     \
static inline void cnn_copy_rows_##N(const T *src, int64_t stride, int64_t rows, int width, \
                                     T *dst) {                                               \
    switch (width) {                                                                         \
    case 6:                                                                                  \
        for (int64_t r = 0; r < rows; r++)                                                   \
            for (int j = 0; j < 6; j++) dst[r * 6 + j] = src[r * stride + j];                \
        return;                                                                              \
    case 8:                                                                                  \
        for (int64_t r = 0; r < rows; r++)                                                   \
            for (int j = 0; j < 8; j++) dst[r * 8 + j] = src[r * stride + j];                \
        return;                                                                              \
    case 16:                                                                                 \
        for (int64_t r = 0; r < rows; r++)                                                   \
            for (int j = 0; j < 16; j++) dst[r * 16 + j] = src[r * stride + j];              \
        return;                                                                              \
    case 32:                                                                                 \
        for (int64_t r = 0; r < rows; r++)                                                   \
            for (int j = 0; j < 32; j++) dst[r * 32 + j] = src[r * stride + j];              \
        return;                                                                              \
    default:                                                                                 \
        for (int64_t r = 0; r < rows; r++)                                                   \
            memcpy(dst + r * width, src + r * stride, (size_t)width * sizeof(T));            \
    }                                                                                        \
}                                                                                            \
                                                                                             \
/* A rows [row0, row0+m) x cols [col0, col0+kc) -> k-major micro-panel of MR rows. */        \
static inline void cnn_pack_a_panel_##N(const cnn_gemm_ctx_##N *ctx, const T *A,            \
                                        int64_t rs_a, int64_t cs_a, int64_t m, int64_t kc,   \
                                        T *dst) {                                            \
    const int mr = ctx->mr;                                                                  \
    if (cs_a == 1 && ctx->pack_a != NULL) {                                                  \
        ctx->pack_a(A, rs_a, (int)m, kc, mr, dst); /* rows contiguous in k: transposes */    \
        return;                                                                              \
    }                                                                                        \
    if (m == mr && rs_a == 1) {                                                              \
        cnn_copy_rows_##N(A, cs_a, kc, mr, dst); /* transposed A (dW = x^T dz) */            \
        return;                                                                              \
    }                                                                                        \
    if (cs_a == 1) {                                                                         \
        for (int64_t i = 0; i < m; i++) {                                                    \
            const T *src = A + i * rs_a;                                                     \
            for (int64_t k = 0; k < kc; k++) dst[k * mr + i] = src[k];                       \
        }                                                                                    \
    } else {                                                                                 \
        for (int64_t k = 0; k < kc; k++) {                                                   \
            const T *src = A + k * cs_a;                                                     \
            for (int64_t i = 0; i < m; i++) dst[k * mr + i] = src[i * rs_a];                 \
        }                                                                                    \
    }                                                                                        \
    for (int64_t i = m; i < mr; i++)                                                         \
        for (int64_t k = 0; k < kc; k++) dst[k * mr + i] = 0;                                \
}                                                                                            \
                                                                                             \
/* B rows [row0, row0+kc) x cols [col0, col0+n) -> k-major micro-panel of NR columns. */     \
static inline void cnn_pack_b_panel_##N(const cnn_gemm_ctx_##N *ctx, const T *B,            \
                                        int64_t rs_b, int64_t cs_b, int64_t n, int64_t kc,   \
                                        T *dst) {                                            \
    const int nr = ctx->nr;                                                                  \
    if (n == nr && cs_b == 1) {                                                              \
        cnn_copy_rows_##N(B, rs_b, kc, nr, dst);                                             \
    } else if (n == nr && rs_b == 1 && ctx->pack_t8 != NULL) {                               \
        /* Transposed B (dx = dz W^T): columns contiguous in k, 8 at a time. */              \
        for (int g = 0; g < nr; g += 8) ctx->pack_t8(B + g * cs_b, cs_b, 8, kc, nr, dst + g); \
    } else if (cs_b == 1) {                                                                  \
        for (int64_t k = 0; k < kc; k++) {                                                   \
            memcpy(dst + k * nr, B + k * rs_b, (size_t)n * sizeof(T));                       \
            for (int64_t j = n; j < nr; j++) dst[k * nr + j] = 0;                            \
        }                                                                                    \
    } else {                                                                                 \
        /* Transposed B, in blocks of 16 k: each source cache line is read whole, and the */ \
        /* 16 destination rows it feeds stay in L1 (no 4 KiB-stride set conflicts).        */ \
        for (int64_t k0 = 0; k0 < kc; k0 += 16) {                                            \
            const int64_t k1 = cnn_min64(k0 + 16, kc);                                       \
            for (int64_t j = 0; j < n; j++) {                                                \
                const T *src = B + j * cs_b;                                                 \
                for (int64_t k = k0; k < k1; k++) dst[k * nr + j] = src[k * rs_b];           \
            }                                                                                \
            for (int64_t k = k0; k < k1; k++)                                                \
                for (int64_t j = n; j < nr; j++) dst[k * nr + j] = 0;                        \
        }                                                                                    \
    }                                                                                        \
}                                                                                            \
                                                                                             \
/* Bias, z copy and activation on an m x n tile of C (columns contiguous), or the derivative \
 * of the activation below. Compiled twice: for the baseline, and for AVX2 where the CPU has \
 * it (elementwise operations only and no FMA contraction, so both give the same bits). */   \
CNN_EPILOGUE_FN(N, T, cnn_epilogue_tile_##N, )                                               \
CNN_EPILOGUE_FN_X86(N, T, cnn_epilogue_tile_avx2_##N, __attribute__((target("avx2,fma"))))   \
                                                                                             \
/* The backward epilogue reads the layer below's z (and a) at the tile: tile-sized pieces of \
 * a large array, fetched while the k loop runs rather than missed after it. */              \
static inline void cnn_epilogue_prefetch_##N(const cnn_epilogue_##N *ep, int64_t row0,      \
                                             int64_t col0, int64_t m, int64_t n) {           \
    if (ep == NULL || ep->d_act <= 0) return;                                                \
    for (int64_t i = 0; i < m; i++) {                                                        \
        const int64_t at = (row0 + i) * ep->rs_d + col0;                                     \
        __builtin_prefetch(ep->d_z + at, 0, 3);                                              \
        __builtin_prefetch(ep->d_z + at + n - 1, 0, 3);                                      \
        if (ep->d_a != ep->d_z) {                                                            \
            __builtin_prefetch(ep->d_a + at, 0, 3);                                          \
            __builtin_prefetch(ep->d_a + at + n - 1, 0, 3);                                  \
        }                                                                                    \
    }                                                                                        \
}                                                                                            \
                                                                                             \
/* C = beta * C, then the epilogue: the K == 0 (or alpha == 0) case. */                      \
static void cnn_gemm_scale_only_##N(const cnn_gemm_ctx_##N *ctx, int64_t M, int64_t Nn,      \
                                    T beta, T *C, int64_t rs_c, int64_t cs_c,                \
                                    const cnn_epilogue_##N *ep) {                            \
    for (int64_t i = 0; i < M; i++)                                                          \
        for (int64_t j = 0; j < Nn; j++) {                                                   \
            T *c = C + i * rs_c + j * cs_c;                                                  \
            *c = beta == 0 ? (T)0 : beta * *c;                                               \
        }                                                                                    \
    if (ep != NULL) ctx->epilogue(ep, C, rs_c, 0, 0, M, Nn);                                 \
}                                                                                            \
                                                                                             \
/* One tile of C, m x n at c, from a packed A micro-panel and a packed B micro-panel, then the \
 * epilogue when this was the last K block. */                                               \
static inline void cnn_gemm_tile_##N(const cnn_gemm_ctx_##N *ctx, int64_t kc, const T *ap,  \
                                     const T *bp, T *c, int64_t rs_c, int64_t cs_c,          \
                                     int64_t m, int64_t n, T alpha, T beta_k,                \
                                     const cnn_epilogue_##N *ep, int64_t row0, int64_t col0, \
                                     T *edge_tile) {                                         \
    const int mr = ctx->mr, nr = ctx->nr;                                                    \
    cnn_epilogue_prefetch_##N(ep, row0, col0, m, n);                                         \
    if (m == mr && n == nr && cs_c == 1) {                                                   \
        ctx->ukr(kc, ap, bp, nr, c, rs_c, alpha, beta_k);                                    \
    } else if (n == nr && cs_c == 1 && ctx->ukr_rows != NULL) {                              \
        ctx->ukr_rows((int)m, kc, ap, bp, nr, c, rs_c, alpha, beta_k);                       \
    } else {                                                                                 \
        /* Edge tile: same kernel into a scratch tile, then the same alpha/beta arithmetic */ \
        /* as the kernel's write-back. */                                                    \
        ctx->ukr(kc, ap, bp, nr, edge_tile, nr, alpha, (T)0);                                \
        for (int64_t i = 0; i < m; i++)                                                      \
            for (int64_t j = 0; j < n; j++) {                                                \
                T *cij = c + i * rs_c + j * cs_c;                                            \
                const T t = edge_tile[i * nr + j];                                           \
                *cij = beta_k == 0 ? t : t + beta_k * *cij;                                  \
            }                                                                                \
    }                                                                                        \
    if (ep != NULL) ctx->epilogue(ep, c, rs_c, row0, col0, m, n);                            \
}                                                                                            \
                                                                                             \
/* Packs the A micro-panels [p0, p1) of the rows of C (see cnn_row_panel) for K block pc. */ \
static inline void cnn_pack_a_panels_##N(const cnn_gemm_ctx_##N *ctx, const T *A,           \
                                         int64_t rs_a, int64_t cs_a, int64_t M, int64_t p0,  \
                                         int64_t p1, int64_t pc, int64_t kc, T *a_pack) {    \
    for (int64_t p = p0; p < p1; p++) {                                                      \
        int64_t row0, m;                                                                     \
        cnn_row_panel(M, ctx->mr, p, &row0, &m);                                             \
        cnn_pack_a_panel_##N(ctx, A + row0 * rs_a + pc * cs_a, rs_a, cs_a, m, kc,            \
                             a_pack + (p - p0) * ctx->mr * kc);                              \
    }                                                                                        \
}                                                                                            \
                                                                                             \
/* Column panel q (NR columns from q * NR) of C for row panels [c0, c1), K block pc, from    \
 * the A panels of those rows packed in a_pack. The first tile reads B in place and packs it \
 * on the way (copyb); the others read that copy from L1. With fetch_next, the B rows of     \
 * column q + 1 are fetched into L2 a slice per tile: that column's first tile reads them in \
 * place, rows ldb apart, a new page each when ldb is 4 KiB, which would stall on L3.       */ \
static inline void cnn_gemm_column_##N(const cnn_gemm_ctx_##N *ctx, int64_t M, int64_t Nn,  \
                                       int64_t q, int64_t c0, int64_t c1, int64_t pc,        \
                                       int64_t kc, T alpha, const T *a_pack, const T *B,     \
                                       int64_t rs_b, int64_t cs_b, T beta_k, T *C,           \
                                       int64_t rs_c, int64_t cs_c,                           \
                                       const cnn_epilogue_##N *ep_k, int fetch_next,         \
                                       T *b_pack, T *edge_tile) {                            \
    const int mr = ctx->mr, nr = ctx->nr;                                                    \
    const int64_t col0 = q * nr, n = cnn_min64(nr, Nn - col0);                               \
    const T *b_src = B + pc * rs_b + col0 * cs_b;                                            \
    int64_t p = c0;                                                                          \
    if (n == nr && cs_b == 1 && cs_c == 1 && ctx->ukr_copyb != NULL) {                       \
        int64_t row0, m;                                                                     \
        cnn_row_panel(M, mr, p, &row0, &m);                                                  \
        T *c = C + row0 * rs_c + col0;                                                       \
        cnn_epilogue_prefetch_##N(ep_k, row0, col0, m, n);                                   \
        ctx->ukr_copyb((int)m, kc, a_pack, b_src, rs_b, b_pack, c, rs_c, alpha, beta_k);     \
        if (ep_k != NULL) ctx->epilogue(ep_k, c, rs_c, row0, col0, m, n);                    \
        p++;                                                                                 \
    } else {                                                                                 \
        cnn_pack_b_panel_##N(ctx, b_src, rs_b, cs_b, n, kc, b_pack);                         \
    }                                                                                        \
    fetch_next = fetch_next && cs_b == 1 && p < c1;                                          \
    const int64_t slice = fetch_next ? cnn_ceil_div(kc, c1 - p) : 0;                         \
    const T *next_b = b_src + nr;                                                            \
    for (int64_t f = 0; p < c1; p++, f += slice) {                                           \
        for (int64_t r = f; r < cnn_min64(f + slice, kc); r++) {                             \
            __builtin_prefetch(next_b + r * rs_b, 0, 2);                                     \
            __builtin_prefetch(next_b + r * rs_b + nr - 1, 0, 2);                            \
        }                                                                                    \
        int64_t row0, m;                                                                     \
        cnn_row_panel(M, mr, p, &row0, &m);                                                  \
        cnn_gemm_tile_##N(ctx, kc, a_pack + (p - c0) * mr * kc, b_pack,                      \
                          C + row0 * rs_c + col0 * cs_c, rs_c, cs_c, m, n, alpha, beta_k,    \
                          ep_k, row0, col0, edge_tile);                                      \
    }                                                                                        \
}                                                                                            \
                                                                                             \
/* Batch-sized M (or little work per barrier of the shared path): threads pack their own A  \
 * rows, in L2-sized chunks, and B micro-panels, so no packed data is shared. With tp == 1   \
 * thread packs all rows and the column panels are dealt out dynamically, a few at a time:   \
 * a thread slowed down (a busy or shared core) takes fewer, and since each tile is computed \
 * whole by whichever thread takes it, the bits do not change. The only barrier is the one   \
 * ending each K block (and row chunk). With tp > 1 (fewer column panels than threads)       \
 * threads own fixed rectangles, tq along N times tp along M, and nothing waits.            */ \
static void cnn_gemm_private_##N(const cnn_gemm_ctx_##N *ctx, int64_t M, int64_t Nn,        \
                                 int64_t K, int64_t kb, T alpha, const T *A, int64_t rs_a,   \
                                 int64_t cs_a, const T *B, int64_t rs_b, int64_t cs_b,       \
                                 T beta, T *C, int64_t rs_c, int64_t cs_c,                   \
                                 const cnn_epilogue_##N *ep, int64_t chunk_panels, T *ws,    \
                                 int64_t ws_per_thread, int nt) {                            \
    const int mr = ctx->mr;                                                                  \
    const int64_t p_panels = cnn_row_panel_count(M, mr), q_panels = cnn_ceil_div(Nn, ctx->nr); \
    {                                                                                        \
        T edge_tile[CNN_MAX_TILE] __attribute__((aligned(64)));                              \
        /* The split follows the team OpenMP gave (it may be smaller than nt); nt == 1 runs */ \
        /* outside any region of ours, so the enclosing team (if any) is not asked.         */ \
        const int team = nt > 1 ? omp_get_num_threads() : 1;                                 \
        const int t = nt > 1 ? omp_get_thread_num() : 0;                                     \
        const int tp = cnn_rows_split(team, q_panels), tq = team / tp;                       \
        const int dynamic = tp == 1 && team > 1;                                             \
        /* Dynamic: groups of columns, about four per thread (consecutive columns, so the */ \
        /* next column's B prefetch is for a column this thread takes).                   */ \
        const int64_t group = cnn_ceil_div(q_panels, 4 * (int64_t)team);                     \
        const int64_t n_groups = cnn_ceil_div(q_panels, group);                              \
        const int64_t p0 = p_panels * (t / tq) / tp, p1 = p_panels * (t / tq + 1) / tp;      \
        const int64_t q0 = q_panels * (t % tq) / tq, q1 = q_panels * (t % tq + 1) / tq;      \
        const int64_t n_chunks = cnn_ceil_div(p1 - p0, chunk_panels);                        \
        T *a_pack = ws + t * ws_per_thread;                                                  \
        T *b_pack = a_pack + cnn_round_up(chunk_panels * mr * kb, 16);                       \
        for (int64_t pc = 0; pc < K && p0 < p1 && (dynamic || q0 < q1); pc += kb)            \
        for (int64_t ch = 0; ch < n_chunks; ch++) {                                          \
            const int64_t c0 = p0 + (p1 - p0) * ch / n_chunks;                               \
            const int64_t c1 = p0 + (p1 - p0) * (ch + 1) / n_chunks;                         \
            const int64_t kc = cnn_min64(kb, K - pc);                                        \
            const T beta_k = pc == 0 ? beta : (T)1;                                          \
            const cnn_epilogue_##N *ep_k = pc + kc >= K ? ep : NULL;                         \
            cnn_pack_a_panels_##N(ctx, A, rs_a, cs_a, M, c0, c1, pc, kc, a_pack);            \
            if (dynamic) {                                                                   \
                _Pragma("omp for schedule(dynamic, 1)")                                      \
                for (int64_t g = 0; g < n_groups; g++) {                                     \
                    const int64_t g1 = cnn_min64((g + 1) * group, q_panels);                 \
                    for (int64_t q = g * group; q < g1; q++)                                 \
                        cnn_gemm_column_##N(ctx, M, Nn, q, c0, c1, pc, kc, alpha, a_pack,    \
                                            B, rs_b, cs_b, beta_k, C, rs_c, cs_c, ep_k,      \
                                            q + 1 < g1, b_pack, edge_tile);                  \
                }                                                                            \
            } else {                                                                         \
                for (int64_t q = q0; q < q1; q++)                                            \
                    cnn_gemm_column_##N(ctx, M, Nn, q, c0, c1, pc, kc, alpha, a_pack, B,     \
                                        rs_b, cs_b, beta_k, C, rs_c, cs_c, ep_k, q + 1 < q1, \
                                        b_pack, edge_tile);                                  \
            }                                                                                \
        }                                                                                    \
    }                                                                                        \
}                                                                                            \
                                                                                             \
/* Tall C with a small B (M > N and the whole packed K block of B small, e.g. dW = x^T dz of \
 * a small batch): the mirror of the above. Split by columns, every thread would pack all of \
 * A, the larger operand; here each thread packs the small B block for itself and groups of  \
 * row panels are dealt out dynamically, each thread packing the A rows of the groups it     \
 * takes. Every tile is still computed whole by one thread, so the bits do not change. The   \
 * barrier ending each K block keeps a tile's K blocks in order.                            */ \
static void cnn_gemm_private_rows_##N(const cnn_gemm_ctx_##N *ctx, int64_t M, int64_t Nn,   \
                                      int64_t K, int64_t kb, T alpha, const T *A,            \
                                      int64_t rs_a, int64_t cs_a, const T *B, int64_t rs_b,  \
                                      int64_t cs_b, T beta, T *C, int64_t rs_c, int64_t cs_c, \
                                      const cnn_epilogue_##N *ep, int64_t chunk_panels,      \
                                      T *ws, int64_t ws_per_thread) {                        \
    const int mr = ctx->mr, nr = ctx->nr;                                                    \
    const int64_t p_panels = cnn_row_panel_count(M, mr), q_panels = cnn_ceil_div(Nn, nr);   \
    {                                                                                        \
        T edge_tile[CNN_MAX_TILE] __attribute__((aligned(64)));                              \
        const int team = omp_get_num_threads(), t = omp_get_thread_num();                    \
        /* About four groups per thread, none larger than an L2-sized chunk of A. */         \
        const int64_t group = cnn_min64(chunk_panels,                                        \
                                        cnn_ceil_div(p_panels, 4 * (int64_t)team));          \
        const int64_t n_groups = cnn_ceil_div(p_panels, group);                              \
        T *a_pack = ws + t * ws_per_thread;                                                  \
        T *b_pack = a_pack + cnn_round_up(chunk_panels * mr * kb, 16);                       \
        for (int64_t pc = 0; pc < K; pc += kb) {                                             \
            const int64_t kc = cnn_min64(kb, K - pc);                                        \
            const T beta_k = pc == 0 ? beta : (T)1;                                          \
            const cnn_epilogue_##N *ep_k = pc + kc >= K ? ep : NULL;                         \
            for (int64_t q = 0; q < q_panels; q++)                                           \
                cnn_pack_b_panel_##N(ctx, B + pc * rs_b + q * nr * cs_b, rs_b, cs_b,         \
                                     cnn_min64(nr, Nn - q * nr), kc, b_pack + q * nr * kc);  \
            _Pragma("omp for schedule(dynamic, 1)")                                          \
            for (int64_t g = 0; g < n_groups; g++) {                                         \
                const int64_t g0 = g * group, g1 = cnn_min64(g0 + group, p_panels);          \
                cnn_pack_a_panels_##N(ctx, A, rs_a, cs_a, M, g0, g1, pc, kc, a_pack);        \
                for (int64_t q = 0; q < q_panels; q++) {                                     \
                    const int64_t col0 = q * nr;                                             \
                    for (int64_t p = g0; p < g1; p++) {                                      \
                        int64_t row0, m;                                                     \
                        cnn_row_panel(M, mr, p, &row0, &m);                                  \
                        cnn_gemm_tile_##N(ctx, kc, a_pack + (p - g0) * mr * kc,              \
                                          b_pack + q * nr * kc, C + row0 * rs_c + col0 * cs_c, \
                                          rs_c, cs_c, m, cnn_min64(nr, Nn - col0), alpha,    \
                                          beta_k, ep_k, row0, col0, edge_tile);              \
                    }                                                                        \
                }                                                                            \
            }                                                                                \
        }                                                                                    \
    }                                                                                        \
}                                                                                            \
                                                                                             \
/* Large M: BLIS's loops, the packed A and B blocks shared by the threads. */                \
static void cnn_gemm_shared_##N(const cnn_gemm_ctx_##N *ctx, int64_t M, int64_t Nn,         \
                                int64_t K, int64_t kb, T alpha, const T *A, int64_t rs_a,    \
                                int64_t cs_a, const T *B, int64_t rs_b, int64_t cs_b,        \
                                T beta, T *C, int64_t rs_c, int64_t cs_c,                    \
                                const cnn_epilogue_##N *ep, int64_t mb, int64_t nb,          \
                                T *a_pack, T *b_pack, int team) {                            \
    const int mr = ctx->mr, nr = ctx->nr;                                                    \
    {                                                                                        \
        T edge_tile[CNN_MAX_TILE] __attribute__((aligned(64)));                              \
        for (int64_t pc = 0; pc < K; pc += kb) {                                             \
            const int64_t kc = cnn_min64(kb, K - pc);                                        \
            const T beta_k = pc == 0 ? beta : (T)1;                                          \
            const cnn_epilogue_##N *ep_k = pc + kc >= K ? ep : NULL;                         \
            for (int64_t jc = 0; jc < Nn; jc += nb) {                                        \
                const int64_t nc = cnn_min64(nb, Nn - jc);                                   \
                const int64_t n_panels = cnn_ceil_div(nc, nr);                               \
                CNN_TEAM_FOR(team, "omp for schedule(static)",                               \
                             for (int64_t q = 0; q < n_panels; q++),                         \
                    cnn_pack_b_panel_##N(ctx, B + pc * rs_b + (jc + q * nr) * cs_b, rs_b,    \
                                         cs_b, cnn_min64(nr, nc - q * nr), kc,               \
                                         b_pack + q * nr * kc);)                             \
                for (int64_t ic = 0; ic < M; ic += mb) {                                     \
                    const int64_t mc = cnn_min64(mb, M - ic);                                \
                    const int64_t m_panels = cnn_row_panel_count(mc, mr);                    \
                    CNN_TEAM_FOR(team, "omp for schedule(static)",                           \
                                 for (int64_t p = 0; p < m_panels; p++),                     \
                        cnn_pack_a_panels_##N(ctx, A + ic * rs_a, rs_a, cs_a, mc, p, p + 1,  \
                                              pc, kc, a_pack + p * mr * kc);)                \
                    CNN_TEAM_FOR(team, "omp for collapse(2) schedule(static)",               \
                                 for (int64_t q = 0; q < n_panels; q++), {                   \
                        for (int64_t p = 0; p < m_panels; p++) {                             \
                            int64_t row0, m;                                                 \
                            cnn_row_panel(mc, mr, p, &row0, &m);                             \
                            row0 += ic;                                                      \
                            const int64_t col0 = jc + q * nr;                                \
                            cnn_gemm_tile_##N(ctx, kc, a_pack + p * mr * kc,                 \
                                              b_pack + q * nr * kc,                          \
                                              C + row0 * rs_c + col0 * cs_c, rs_c, cs_c, m,  \
                                              cnn_min64(nr, nc - q * nr), alpha, beta_k,     \
                                              ep_k, row0, col0, edge_tile);                  \
                        }                                                                    \
                    })                                                                       \
                }                                                                            \
            }                                                                                \
        }                                                                                    \
    }                                                                                        \
}                                                                                            \
                                                                                             \
/* Returns 0, or -1 when the workspace cannot be allocated. */                               \
static int cnn_gemm_run_##N(const cnn_gemm_ctx_##N *ctx, int64_t M, int64_t Nn, int64_t K,  \
                            T alpha, const T *A, int64_t rs_a, int64_t cs_a,                 \
                            const T *B, int64_t rs_b, int64_t cs_b, T beta,                  \
                            T *C, int64_t rs_c, int64_t cs_c,                                \
                            const cnn_epilogue_##N *ep, int nthreads) {                      \
    if (M <= 0 || Nn <= 0) return 0;                                                         \
    if (K <= 0 || alpha == 0) {                                                              \
        cnn_gemm_scale_only_##N(ctx, M, Nn, beta, C, rs_c, cs_c, ep);                        \
        return 0;                                                                            \
    }                                                                                        \
    const int mr = ctx->mr, nr = ctx->nr;                                                    \
    /* Equal K blocks, fixed by the shape alone (never by the thread count): every element */ \
    /* of C is summed in the same order on any path and any number of threads. */           \
    const int64_t kb = cnn_ceil_div(K, cnn_ceil_div(K, ctx->kb));                            \
    if (M == 1 && cs_b == 1 && cs_c == 1 && ctx->gemv != NULL) {                             \
        /* One sample: no packing, no threads; same K blocks, so the same bits as a batch. */ \
        for (int64_t pc = 0; pc < K; pc += kb)                                               \
            ctx->gemv(cnn_min64(kb, K - pc), A + pc * cs_a, cs_a, B + pc * rs_b, rs_b, Nn,   \
                      C, alpha, pc == 0 ? beta : (T)1);                                      \
        if (ep != NULL) ctx->epilogue(ep, C, rs_c, 0, 0, 1, Nn);                             \
        return 0;                                                                            \
    }                                                                                        \
    if (Nn < nr && M > Nn) {                                                                 \
        /* Narrow C (a classifier's 10 outputs): a 16-wide tile would do 10/16 useful FMAs. */ \
        /* C^T = B^T A^T puts the long side along the vectors instead; each element's      */ \
        /* products and their order are unchanged (same K blocks), so the bits are too. The */ \
        /* epilogue then runs over C row by row.                                           */ \
        const int status = cnn_gemm_run_##N(ctx, Nn, M, K, alpha, B, cs_b, rs_b, A, cs_a, rs_a, \
                                            beta, C, cs_c, rs_c, NULL, nthreads);            \
        if (status == 0 && ep != NULL) ctx->epilogue(ep, C, rs_c, 0, 0, M, Nn);              \
        return status;                                                                       \
    }                                                                                        \
    const double flops = 2.0 * (double)M * (double)Nn * (double)K;                           \
    int nt = nthreads;                                                                       \
    if (flops < nt * CNN_GEMM_MIN_FLOPS_PER_THREAD)                                          \
        nt = (int)(flops / CNN_GEMM_MIN_FLOPS_PER_THREAD);                                   \
    if (nt < 1) nt = 1;                                                                      \
    const int64_t p_panels = cnn_row_panel_count(M, mr), q_panels = cnn_ceil_div(Nn, nr);   \
    const int tp = cnn_rows_split(nt, q_panels);                                             \
    const int64_t panels_per_thread = cnn_ceil_div(p_panels, tp);                            \
    const int64_t mb = cnn_round_up(cnn_ceil_div(M, cnn_ceil_div(M, ctx->mb)), mr);          \
    /* The shared path waits at 1 + 2 * (M / MB) barriers per K block: with little work    */ \
    /* between them (small K: dW = x^T dz of a small batch) the private one wins, repacking */ \
    /* A per thread included.                                                              */ \
    const double shared_barriers = (double)cnn_ceil_div(K, kb) * (1 + 2 * cnn_ceil_div(M, mb)); \
    if (panels_per_thread * mr <= ctx->mb_private                                            \
        || (nt > 1 && flops < shared_barriers * CNN_GEMM_MIN_FLOPS_PER_BARRIER)) {           \
        const int64_t chunk_panels = cnn_ceil_div(panels_per_thread,                         \
            cnn_ceil_div(panels_per_thread * mr, ctx->mb_private));                          \
        const int by_rows = nt > 1 && M > Nn                                                 \
            && (double)(q_panels * nr * kb) * sizeof(T) <= CNN_GEMM_ROWS_MAX_B_BYTES;        \
        const int64_t per_thread = cnn_round_up(                                             \
            cnn_round_up(chunk_panels * mr * kb, 16) + (by_rows ? q_panels : 1) * nr * kb, 16); \
        T *ws = (T *)cnn_gemm_workspace((size_t)(per_thread * nt) * sizeof(T));              \
        if (ws == NULL) return -1;                                                           \
        if (by_rows) {                                                                       \
            CNN_ON_TEAM(nt, cnn_gemm_private_rows_##N(ctx, M, Nn, K, kb, alpha, A, rs_a, cs_a, \
                                                      B, rs_b, cs_b, beta, C, rs_c, cs_c, ep, \
                                                      chunk_panels, ws, per_thread));        \
            return 0;                                                                        \
        }                                                                                    \
        CNN_ON_TEAM(nt, cnn_gemm_private_##N(ctx, M, Nn, K, kb, alpha, A, rs_a, cs_a, B, rs_b, \
                                             cs_b, beta, C, rs_c, cs_c, ep, chunk_panels, ws, \
                                             per_thread, nt));                               \
        return 0;                                                                            \
    }                                                                                        \
    const int64_t nb = cnn_round_up(cnn_ceil_div(Nn, cnn_ceil_div(Nn, ctx->nb)), nr);        \
    const int64_t a_elems = cnn_round_up(mb * kb, 16);                                       \
    T *a_pack = (T *)cnn_gemm_workspace((size_t)(a_elems + nb * kb) * sizeof(T));            \
    if (a_pack == NULL) return -1;                                                           \
    CNN_ON_TEAM(nt, cnn_gemm_shared_##N(ctx, M, Nn, K, kb, alpha, A, rs_a, cs_a, B, rs_b,    \
                                        cs_b, beta, C, rs_c, cs_c, ep, mb, nb, a_pack,       \
                                        a_pack + a_elems, nt));                              \
    return 0;                                                                                \
}

CNN_DEFINE_GEMM(float, f32)
CNN_DEFINE_GEMM(double, f64)

#if CNN_HAVE_X86_KERNELS
/* The epilogue's common cases, bias + identity/ReLU (forward) and ReLU' (backward dx), on a
 * tile whose width is a multiple of 8, in one pass of registers: the general epilogue makes a
 * call per row, which cost more than the micro-kernel itself when K is small (a 3x3 convolution
 * of one channel has K = 9). The same operations as cnn_act_apply/backward's AVX2 loops, so the
 * same bits (but for the payload of a NaN when both the sum and the bias are NaN: which of two
 * NaN operands an add returns depends on the order the compiler gives them). Other cases go
 * to the general epilogue. */
CNN_AVX2_TARGET static void cnn_epilogue_tile_fast_avx2_f32(const cnn_epilogue_f32 *ep, float *c,
                                                           int64_t rs_c, int64_t row0,
                                                           int64_t col0, int64_t m, int64_t n) {
    const int relu = ep->act == CNN_ACT_RELU, relu_below = ep->d_act == CNN_ACT_RELU;
    if ((n & 7) != 0 || (ep->act != CNN_ACT_IDENTITY && !relu)
        || (ep->d_act > 0 && !relu_below)) {
        cnn_epilogue_tile_avx2_f32(ep, c, rs_c, row0, col0, m, n);
        return;
    }
    const __m256 zero = _mm256_setzero_ps();
    const float *bias = ep->bias == NULL ? NULL : ep->bias + col0;
    const int check = ep->row_nonfinite != NULL && col0 == 0;
    for (int64_t i = 0; i < m; i++) {
        float *row = c + i * rs_c;
        float *z = ep->z_out == NULL ? NULL : ep->z_out + (row0 + i) * ep->rs_z + col0;
        const float *below = relu_below ? ep->d_z + (row0 + i) * ep->rs_d + col0 : NULL;
        for (int64_t j = 0; j < n; j += 8) {
            __m256 v = _mm256_loadu_ps(row + j);
            if (bias != NULL) v = _mm256_add_ps(v, _mm256_loadu_ps(bias + j));
            if (check && j == 0 && !__builtin_isfinite(_mm256_cvtss_f32(v)))
                __atomic_store_n(ep->row_nonfinite, 1, __ATOMIC_RELAXED);
            if (z != NULL) _mm256_storeu_ps(z + j, v);
            if (relu) v = _mm256_and_ps(v, _mm256_cmp_ps(v, zero, _CMP_GT_OQ));
            if (below != NULL)
                v = _mm256_and_ps(v, _mm256_cmp_ps(_mm256_loadu_ps(below + j), zero, _CMP_GT_OQ));
            _mm256_storeu_ps(row + j, v);
        }
    }
}
#endif

/* Every kernel family: its tile, its cache blocks and its entry points (BLIS's context). */
#define CNN_CTX(ISA, ISA_UP, N, N_UP, ROWS, COPYB, GEMV, PACK_A, PACK_T8, EPILOGUE)           \
    {CNN_##ISA_UP##_##N_UP##_MR, CNN_##ISA_UP##_##N_UP##_NR, CNN_##ISA_UP##_##N_UP##_MB,      \
     CNN_##ISA_UP##_##N_UP##_KB, CNN_##ISA_UP##_##N_UP##_NB, CNN_##ISA_UP##_##N_UP##_MB_PRIVATE, \
     cnn_ukr_##ISA##_##N, ROWS, COPYB, GEMV, PACK_A, PACK_T8, EPILOGUE}

#define CNN_CTX_REF(N, N_UP) \
    CNN_CTX(ref, REF, N, N_UP, NULL, NULL, NULL, NULL, NULL, cnn_epilogue_tile_##N)
static const cnn_gemm_ctx_f32 cnn_ctx_ref_f32 = CNN_CTX_REF(f32, F32);
static const cnn_gemm_ctx_f64 cnn_ctx_ref_f64 = CNN_CTX_REF(f64, F64);
#if CNN_HAVE_X86_KERNELS
static const cnn_gemm_ctx_f32 cnn_ctx_avx2_f32 =
    CNN_CTX(avx2, AVX2, f32, F32, cnn_ukr_avx2_f32_rows, cnn_ukr_avx2_f32_copyb, cnn_gemv_avx2_f32,
            cnn_pack_t_rows6_avx2_f32, cnn_pack_t_rows8_avx2_f32, cnn_epilogue_tile_fast_avx2_f32);
static const cnn_gemm_ctx_f64 cnn_ctx_avx2_f64 =
    CNN_CTX(avx2, AVX2, f64, F64, cnn_ukr_avx2_f64_rows, cnn_ukr_avx2_f64_copyb, cnn_gemv_avx2_f64,
            NULL, NULL, cnn_epilogue_tile_avx2_f64);
#if CNN_AVX512_F32_MR != 8
#error "the AVX-512 context packs A with the 8-row AVX2 transpose"
#endif
static const cnn_gemm_ctx_f32 cnn_ctx_avx512_f32 =
    CNN_CTX(avx512, AVX512, f32, F32, cnn_ukr_avx512_f32_rows, cnn_ukr_avx512_f32_copyb,
            cnn_gemv_avx512_f32, cnn_pack_t_rows8_avx2_f32, cnn_pack_t_rows8_avx2_f32,
            cnn_epilogue_tile_fast_avx2_f32);
static const cnn_gemm_ctx_f64 cnn_ctx_avx512_f64 =
    CNN_CTX(avx512, AVX512, f64, F64, cnn_ukr_avx512_f64_rows, cnn_ukr_avx512_f64_copyb,
            cnn_gemv_avx512_f64, NULL, NULL, cnn_epilogue_tile_avx2_f64);
#endif

/* The kernel family in use, chosen once by cnn_gemm_select(). */
static cnn_gemm_ctx_f32 cnn_ctx_f32 = CNN_CTX_REF(f32, F32);
static cnn_gemm_ctx_f64 cnn_ctx_f64 = CNN_CTX_REF(f64, F64);
static int cnn_kernel_in_use = CNN_KERNEL_REFERENCE;

/* Selects min(requested, what the CPU has); requested < 0 means the best. Returns the choice. */
static int cnn_gemm_select(int requested) {
    int level = cnn_cpu_best_kernel();
    if (requested >= 0 && requested < level) level = requested;
#if CNN_HAVE_X86_KERNELS
    if (level == CNN_KERNEL_AVX512) {
        cnn_ctx_f32 = cnn_ctx_avx512_f32;
        cnn_ctx_f64 = cnn_ctx_avx512_f64;
    } else if (level == CNN_KERNEL_AVX2) {
        cnn_ctx_f32 = cnn_ctx_avx2_f32;
        cnn_ctx_f64 = cnn_ctx_avx2_f64;
    } else
#endif
    {
        level = CNN_KERNEL_REFERENCE;
        cnn_ctx_f32 = cnn_ctx_ref_f32;
        cnn_ctx_f64 = cnn_ctx_ref_f64;
    }
    cnn_kernel_in_use = level;
    return level;
}

static inline int cnn_gemm_f32(int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                               int64_t rs_a, int64_t cs_a, const float *B, int64_t rs_b,
                               int64_t cs_b, float beta, float *C, int64_t rs_c, int64_t cs_c,
                               const cnn_epilogue_f32 *ep, int nthreads) {
    return cnn_gemm_run_f32(&cnn_ctx_f32, M, N, K, alpha, A, rs_a, cs_a, B, rs_b, cs_b, beta,
                            C, rs_c, cs_c, ep, nthreads);
}
static inline int cnn_gemm_f64(int64_t M, int64_t N, int64_t K, double alpha, const double *A,
                               int64_t rs_a, int64_t cs_a, const double *B, int64_t rs_b,
                               int64_t cs_b, double beta, double *C, int64_t rs_c, int64_t cs_c,
                               const cnn_epilogue_f64 *ep, int nthreads) {
    return cnn_gemm_run_f64(&cnn_ctx_f64, M, N, K, alpha, A, rs_a, cs_a, B, rs_b, cs_b, beta,
                            C, rs_c, cs_c, ep, nthreads);
}

#endif
