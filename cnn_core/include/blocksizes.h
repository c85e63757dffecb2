/* Register tiles and cache blocks of the GEMM, one table per kernel (BLIS's "context").
 *
 * MR x NR  register tile of C held by the micro-kernel (NR along C's rows, the SIMD axis).
 * KB       depth of one packed block: an MR x KB panel of A stays in L1 while the
 *          micro-kernel walks the B block.
 * NB       columns of one packed B block (KB x NB): sized to stay in a core's L2.
 * MB       rows of one packed A block (MB x KB): shared by all threads, lives in L3.
 * The driver splits K, M and N into equal blocks no larger than these (rounded up to MR/NR),
 * so the block boundaries, and with them the summation order, depend on the shape only. */
#ifndef CNN_BLOCKSIZES_H
#define CNN_BLOCKSIZES_H

/* AVX-512: 32 zmm registers. f32: 8 x 32 tile = 16 accumulators + 2 B vectors + broadcasts. */
#define CNN_AVX512_F32_MR 8
#define CNN_AVX512_F32_NR 32
#define CNN_AVX512_F64_MR 8
#define CNN_AVX512_F64_NR 16

/* AVX2: 16 ymm registers. 6 x 16 (f32) / 6 x 8 (f64): 12 accumulators + 2 B + 1 broadcast. */
#define CNN_AVX2_F32_MR 6
#define CNN_AVX2_F32_NR 16
#define CNN_AVX2_F64_MR 6
#define CNN_AVX2_F64_NR 8

/* Portable C reference kernel (the compiler may use SSE2). */
#define CNN_REF_F32_MR 4
#define CNN_REF_F32_NR 8
#define CNN_REF_F64_MR 4
#define CNN_REF_F64_NR 8

/* Cache blocks, in elements, per kernel (BLIS's values for the same tiles; overridable with
 * -D for tuning). An MR x KB micro-panel of A and a KB x NR one of B fit L1, the MB x KB block
 * of A a core's L2 (512 KiB on Zen 2/3 and Skylake client, 1-2 MiB on Zen 4 and server
 * parts), the KB x NB block of B the shared L3. */
#ifndef CNN_AVX512_F32_KB
#define CNN_AVX512_F32_KB 384
#endif
#ifndef CNN_AVX512_F32_NB
#define CNN_AVX512_F32_NB 3072
#endif
#ifndef CNN_AVX512_F32_MB
#define CNN_AVX512_F32_MB 480
#endif
#ifndef CNN_AVX512_F64_KB
#define CNN_AVX512_F64_KB 256
#endif
#ifndef CNN_AVX512_F64_NB
#define CNN_AVX512_F64_NB 3072
#endif
#ifndef CNN_AVX512_F64_MB
#define CNN_AVX512_F64_MB 240
#endif
#ifndef CNN_AVX2_F32_KB
#define CNN_AVX2_F32_KB 256
#endif
#ifndef CNN_AVX2_F32_NB
#define CNN_AVX2_F32_NB 4080
#endif
#ifndef CNN_AVX2_F32_MB
#define CNN_AVX2_F32_MB 168
#endif
#ifndef CNN_AVX2_F64_KB
#define CNN_AVX2_F64_KB 256
#endif
#ifndef CNN_AVX2_F64_NB
#define CNN_AVX2_F64_NB 4080
#endif
#ifndef CNN_AVX2_F64_MB
#define CNN_AVX2_F64_MB 72
#endif
/* Rows of A up to which each thread packs its own A block and B micro-panels (the private,
 * barrier-free path of small batches): the MB_PRIVATE x KB block must stay in L2 beside the
 * streaming B. */
#ifndef CNN_AVX512_F32_MB_PRIVATE
#define CNN_AVX512_F32_MB_PRIVATE 512
#endif
#ifndef CNN_AVX512_F64_MB_PRIVATE
#define CNN_AVX512_F64_MB_PRIVATE 256
#endif
#ifndef CNN_AVX2_F32_MB_PRIVATE
#define CNN_AVX2_F32_MB_PRIVATE 264
#endif
#ifndef CNN_AVX2_F64_MB_PRIVATE
#define CNN_AVX2_F64_MB_PRIVATE 132
#endif
/* The portable kernel uses the AVX2 blocks (its tiles are smaller still). */
#define CNN_REF_F32_KB CNN_AVX2_F32_KB
#define CNN_REF_F32_NB CNN_AVX2_F32_NB
#define CNN_REF_F32_MB CNN_AVX2_F32_MB
#define CNN_REF_F64_KB CNN_AVX2_F64_KB
#define CNN_REF_F64_NB CNN_AVX2_F64_NB
#define CNN_REF_F64_MB CNN_AVX2_F64_MB
#define CNN_REF_F32_MB_PRIVATE CNN_AVX2_F32_MB_PRIVATE
#define CNN_REF_F64_MB_PRIVATE CNN_AVX2_F64_MB_PRIVATE

/* Below this many flops (2*M*N*K) a GEMM runs on one thread: waking others costs more. */
#define CNN_GEMM_MIN_FLOPS_PER_THREAD 400000.0
/* The shared (BLIS) path is taken only with at least this much work per barrier it waits at
 * (a few microseconds each, more on a busy machine); below, the barrier-free private one. */
#define CNN_GEMM_MIN_FLOPS_PER_BARRIER 4000000.0

/* A tall C (M > N) is split by rows among threads when its packed K block of B, which every
 * thread then packs for itself, is at most this large (a quarter of a 512 KiB L2). */
#define CNN_GEMM_ROWS_MAX_B_BYTES 131072.0

#endif
