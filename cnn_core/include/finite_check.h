/* All-finite test over contiguous floats: one pass, no temporary array.
 * Integer exponent test rather than isfinite(): an OR of integer flags vectorises at -O3
 * without -ffast-math (a float reduction would not), so this runs at memory bandwidth. */
#ifndef CNN_FINITE_CHECK_H
#define CNN_FINITE_CHECK_H

#include <stdint.h>
#include <string.h>

static inline int cnn_all_finite_f32(const float *x, int64_t n) {
    const uint32_t *bits = (const uint32_t *)(const void *)x;
    uint32_t bad = 0;
    for (int64_t i = 0; i < n; i++) bad |= (uint32_t)((bits[i] & 0x7f800000u) == 0x7f800000u);
    return bad == 0;
}

static inline int cnn_all_finite_f64(const double *x, int64_t n) {
    const uint64_t *bits = (const uint64_t *)(const void *)x;
    uint64_t bad = 0;
    for (int64_t i = 0; i < n; i++)
        bad |= (uint64_t)((bits[i] & 0x7ff0000000000000ull) == 0x7ff0000000000000ull);
    return bad == 0;
}

#endif
