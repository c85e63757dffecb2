/* The micro-kernel's tile body, shared by the AVX2 (PFX _mm256) and AVX-512 (PFX _mm512)
 * kernels: ROWS rows of C (ROWS <= MR; the A panel is always packed MR wide), two vectors of
 * B per row. V: vector type, SFX: intrinsic suffix (ps/pd), W: lanes. Every variant does the
 * same FMAs in the same order per element, so a row's result never depends on the tile height.
 * Expands inside a function with the parameters (k, a, b, ldb, c, rs_c, alpha, beta).
 * ON_B(PFX, SFX, W, b0, b1) runs on each row of B once loaded: CNN_TILE_B_KEEP does nothing,
 * CNN_TILE_B_COPY also stores it to b_copy (NR values a row), so the first tile of a column
 * packs B for the next ones in the load slots of an FMA-bound loop. Its rows are ldb apart,
 * often a page apart, where the hardware prefetcher does not follow: it fetches
 * CNN_COPYB_PREFETCH_ROWS rows ahead (for most columns the driver has brought them to L2
 * while the previous column ran). */
#ifndef CNN_MICROKERNEL_TILE_H
#define CNN_MICROKERNEL_TILE_H

#include <immintrin.h>

/* Only 2: when ldb is a multiple of 4 KiB (1024 floats: a layer 1024 wide) every row of B
 * maps to the same set of the 8-way L1, and 8 rows ahead (16 lines of AVX2's 64-byte rows)
 * evicted the rows about to be read. 2 rows cover L2's latency: with AVX2, 32x784x1024 NN
 * ran 9-11% faster (1 and 2 threads, in-process A/B), other shapes within +-2%. AVX-512's
 * rows are two lines each: not measured (no such CPU here). */
#ifndef CNN_COPYB_PREFETCH_ROWS
#define CNN_COPYB_PREFETCH_ROWS 2
#endif
#define CNN_TILE_B_KEEP(PFX, SFX, W, b0, b1)
#define CNN_TILE_B_COPY(PFX, SFX, W, b0, b1)                                                  \
    _mm_prefetch((const char *)(b + CNN_COPYB_PREFETCH_ROWS * ldb), _MM_HINT_T0);            \
    _mm_prefetch((const char *)(b + CNN_COPYB_PREFETCH_ROWS * ldb + 2 * W - 1),              \
                 _MM_HINT_T0);                                                              \
    PFX##_storeu_##SFX(b_copy, b0);                                                         \
    PFX##_storeu_##SFX(b_copy + W, b1);                                                     \
    b_copy += 2 * W;

#define CNN_SIMD_TILE_BODY(PFX, T, V, SFX, W, MR, ROWS, ON_B)                                \
    V acc0[ROWS], acc1[ROWS];                                                               \
    _Pragma("GCC unroll 8")                                                                 \
    for (int i = 0; i < ROWS; i++) {                                                        \
        /* The C tile is needed only after the k loop: start fetching its rows now. */      \
        _mm_prefetch((const char *)(c + i * rs_c), _MM_HINT_T0);                            \
        _mm_prefetch((const char *)(c + i * rs_c + 2 * W - 1), _MM_HINT_T0);                \
        acc0[i] = PFX##_setzero_##SFX();                                                    \
        acc1[i] = PFX##_setzero_##SFX();                                                    \
    }                                                                                       \
    _Pragma("GCC unroll 2")                                                                 \
    for (int64_t p = 0; p < k; p++) {                                                       \
        const V b0 = PFX##_loadu_##SFX(b);                                                  \
        const V b1 = PFX##_loadu_##SFX(b + W);                                              \
        ON_B(PFX, SFX, W, b0, b1)                                                           \
        _Pragma("GCC unroll 8")                                                             \
        for (int i = 0; i < ROWS; i++) {                                                    \
            const V ai = PFX##_set1_##SFX(a[i]);                                            \
            acc0[i] = PFX##_fmadd_##SFX(ai, b0, acc0[i]);                                   \
            acc1[i] = PFX##_fmadd_##SFX(ai, b1, acc1[i]);                                   \
        }                                                                                   \
        a += MR;                                                                            \
        b += ldb;                                                                           \
    }                                                                                       \
    const V va = PFX##_set1_##SFX(alpha);                                                   \
    const V vb = PFX##_set1_##SFX(beta);                                                    \
    _Pragma("GCC unroll 8")                                                                 \
    for (int i = 0; i < ROWS; i++) {                                                        \
        T *ci = c + i * rs_c;                                                               \
        V r0 = PFX##_mul_##SFX(va, acc0[i]);                                                \
        V r1 = PFX##_mul_##SFX(va, acc1[i]);                                                \
        if (beta != 0) {                                                                    \
            r0 = PFX##_add_##SFX(r0, PFX##_mul_##SFX(vb, PFX##_loadu_##SFX(ci)));           \
            r1 = PFX##_add_##SFX(r1, PFX##_mul_##SFX(vb, PFX##_loadu_##SFX(ci + W)));       \
        }                                                                                   \
        PFX##_storeu_##SFX(ci, r0);                                                         \
        PFX##_storeu_##SFX(ci + W, r1);                                                     \
    }

#endif
