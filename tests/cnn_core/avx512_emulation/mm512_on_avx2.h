/* The _mm512 intrinsics cnn_core's AVX-512 kernels use, emulated with two AVX2 vectors, so
 * those kernels' code (include/microkernel_avx512.h) can run, and be tested, on a CPU
 * without AVX-512. Each emulated operation rounds exactly as the real one (an FMA is one
 * rounding either way), so results must equal the other kernels' bit for bit wherever the
 * summation order is the same.
 *
 * Include before any code that uses _mm512 intrinsics (after <immintrin.h>, which this
 * header includes): the macros at its end rename them from there on. */
#ifndef CNN_MM512_ON_AVX2_H
#define CNN_MM512_ON_AVX2_H

#include <stdint.h>
#include <immintrin.h>

#define EMU static inline __attribute__((target("avx2,fma"), always_inline))

typedef struct { __m256 lo, hi; } emu_m512;
typedef struct { __m256d lo, hi; } emu_m512d;
typedef uint16_t emu_mmask16;
typedef uint8_t emu_mmask8;

/* The unmasked operations for one element type T: a V512 is two AVX2 vectors of HALF lanes. */
#define EMU_DEFINE_BASIC(V512, T, SFX, HALF)                                          \
    EMU V512 emu_setzero_##SFX(void) {                                                      \
        V512 r = {_mm256_setzero_##SFX(), _mm256_setzero_##SFX()};                          \
        return r;                                                                           \
    }                                                                                       \
    EMU V512 emu_set1_##SFX(T x) {                                                          \
        V512 r = {_mm256_set1_##SFX(x), _mm256_set1_##SFX(x)};                              \
        return r;                                                                           \
    }                                                                                       \
    EMU V512 emu_loadu_##SFX(const void *p) {                                               \
        const T *e = (const T *)p;                                                          \
        V512 r = {_mm256_loadu_##SFX(e), _mm256_loadu_##SFX(e + HALF)};                     \
        return r;                                                                           \
    }                                                                                       \
    EMU void emu_storeu_##SFX(void *p, V512 v) {                                            \
        _mm256_storeu_##SFX((T *)p, v.lo);                                                  \
        _mm256_storeu_##SFX((T *)p + HALF, v.hi);                                           \
    }                                                                                       \
    EMU V512 emu_fmadd_##SFX(V512 a, V512 b, V512 c) {                                      \
        V512 r = {_mm256_fmadd_##SFX(a.lo, b.lo, c.lo),                                     \
                  _mm256_fmadd_##SFX(a.hi, b.hi, c.hi)};                                    \
        return r;                                                                           \
    }                                                                                       \
    EMU V512 emu_mul_##SFX(V512 a, V512 b) {                                                \
        V512 r = {_mm256_mul_##SFX(a.lo, b.lo), _mm256_mul_##SFX(a.hi, b.hi)};              \
        return r;                                                                           \
    }                                                                                       \
    EMU V512 emu_add_##SFX(V512 a, V512 b) {                                                \
        V512 r = {_mm256_add_##SFX(a.lo, b.lo), _mm256_add_##SFX(a.hi, b.hi)};              \
        return r;                                                                           \
    }

EMU_DEFINE_BASIC(emu_m512, float, ps, 8)
EMU_DEFINE_BASIC(emu_m512d, double, pd, 4)

/* Lane i of the half is on when bit i of `bits` is set. */
EMU __m256i emu_lanes32(unsigned bits) {
    const __m256i bit = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
    return _mm256_cmpeq_epi32(_mm256_and_si256(_mm256_set1_epi32((int)bits), bit), bit);
}
EMU __m256i emu_lanes64(unsigned bits) {
    const __m256i bit = _mm256_setr_epi64x(1, 2, 4, 8);
    return _mm256_cmpeq_epi64(_mm256_and_si256(_mm256_set1_epi64x((long long)bits), bit), bit);
}
/* Masked-off lanes are neither read nor written, as with the real ones. (Intel guarantees
 * maskload/maskstore never fault there; AMD leaves it to the implementation. The kernels only
 * mask lanes past the end of a row, and the test's arrays are larger than that.) */
/* The masked load and store for one element type: the low half takes mask bits [0, HALF),
 * the high half [HALF, 2 HALF). */
#define EMU_DEFINE_MASKED(V512, T, SFX, HALF, MASK_T, LANES)                                 \
    EMU V512 emu_maskz_loadu_##SFX(MASK_T k, const void *p) {                               \
        const T *e = (const T *)p;                                                          \
        const unsigned low = (1u << HALF) - 1;                                              \
        V512 r = {_mm256_maskload_##SFX(e, LANES(k & low)),                                 \
                  _mm256_maskload_##SFX(e + HALF, LANES(k >> HALF))};                       \
        return r;                                                                           \
    }                                                                                       \
    EMU void emu_mask_storeu_##SFX(void *p, MASK_T k, V512 v) {                             \
        const unsigned low = (1u << HALF) - 1;                                              \
        _mm256_maskstore_##SFX((T *)p, LANES(k & low), v.lo);                               \
        _mm256_maskstore_##SFX((T *)p + HALF, LANES(k >> HALF), v.hi);                      \
    }

EMU_DEFINE_MASKED(emu_m512, float, ps, 8, emu_mmask16, emu_lanes32)
EMU_DEFINE_MASKED(emu_m512d, double, pd, 4, emu_mmask8, emu_lanes64)

#define __m512 emu_m512
#define __m512d emu_m512d
#define __mmask16 emu_mmask16
#define __mmask8 emu_mmask8
#define _mm512_setzero_ps emu_setzero_ps
#define _mm512_set1_ps emu_set1_ps
#define _mm512_loadu_ps emu_loadu_ps
#define _mm512_storeu_ps emu_storeu_ps
#define _mm512_fmadd_ps emu_fmadd_ps
#define _mm512_mul_ps emu_mul_ps
#define _mm512_add_ps emu_add_ps
#define _mm512_maskz_loadu_ps emu_maskz_loadu_ps
#define _mm512_mask_storeu_ps emu_mask_storeu_ps
#define _mm512_setzero_pd emu_setzero_pd
#define _mm512_set1_pd emu_set1_pd
#define _mm512_loadu_pd emu_loadu_pd
#define _mm512_storeu_pd emu_storeu_pd
#define _mm512_fmadd_pd emu_fmadd_pd
#define _mm512_mul_pd emu_mul_pd
#define _mm512_add_pd emu_add_pd
#define _mm512_maskz_loadu_pd emu_maskz_loadu_pd
#define _mm512_mask_storeu_pd emu_mask_storeu_pd

/* The kernels are compiled for AVX2: no AVX-512 instruction may reach the binary. */
#define CNN_AVX512_TARGET __attribute__((target("avx2,fma")))

#endif
