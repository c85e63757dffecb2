/* The channel loops of max pooling, written so that GCC vectorises them: restrict pointers and
 * selects in place of branches (a data-dependent branch per element mispredicts). */
#ifndef CNN_POOL_MATH_H
#define CNN_POOL_MATH_H
#include <stdint.h>
#include <string.h>

#define CNN_POOL_FNS(T, UT, SUFFIX)                                                              \
/* out = max(out, v) per channel, a NaN counting as the largest value. */                     \
static inline void cnn_max_update_##SUFFIX(T *restrict out, const T *restrict v, int64_t n) { \
    for (int64_t c = 0; c < n; c++) {                                                        \
        const T o = out[c], x = v[c];                                                        \
        out[c] = (x > o) | (x != x) ? x : o;                                                 \
    }                                                                                        \
}                                                                                            \
/* The same, keeping the pixel index of the first maximum (first NaN) in arg. */             \
static inline void cnn_max_update_arg_##SUFFIX(T *restrict out, int32_t *restrict arg,       \
                                               const T *restrict v, int32_t pixel,           \
                                               int64_t n) {                                  \
    for (int64_t c = 0; c < n; c++) {                                                        \
        const T o = out[c], x = v[c];                                                        \
        const int take = (x > o) | ((x != x) & (o == o));                                    \
        out[c] = take ? x : o;                                                               \
        arg[c] = take ? pixel : arg[c];                                                      \
    }                                                                                        \
}                                                                                            \
/* v where take is 1, +0 where it is 0: a mask on the bits, not a select, which GCC makes a  \
 * data-dependent (mispredicted) branch. */                                                  \
static inline T cnn_pick_##SUFFIX(T v, int take) {                                           \
    UT bits;                                                                                 \
    memcpy(&bits, &v, sizeof bits);                                                          \
    bits &= (UT)0 - (UT)take;                                                                \
    memcpy(&v, &bits, sizeof bits);                                                          \
    return v;                                                                                \
}                                                                                            \
/* dst += g where arg picks this pixel. */                                                    \
static inline void cnn_route_add_##SUFFIX(T *restrict dst, const T *restrict g,              \
                                          const int32_t *restrict arg, int32_t pixel,        \
                                          int64_t n) {                                       \
    for (int64_t c = 0; c < n; c++) dst[c] += cnn_pick_##SUFFIX(g[c], arg[c] == pixel);      \
}                                                                                            \
/* dst = 0 + g where arg picks this pixel, else 0 (a window's pixels, windows not overlapping: \
 * the sum the gather would form, 0 + g, so a -0 gradient arrives as +0 there too). */        \
static inline void cnn_route_store_##SUFFIX(T *restrict dst, const T *restrict g,            \
                                            const int32_t *restrict arg, int32_t pixel,      \
                                            int64_t n) {                                     \
    for (int64_t c = 0; c < n; c++)                                                          \
        dst[c] = cnn_pick_##SUFFIX((T)0 + g[c], arg[c] == pixel);                            \
}                                                                                            \
/* dst += src (col2im's and the pooling gathers' channel runs). */                           \
static inline void cnn_add_run_##SUFFIX(T *restrict dst, const T *restrict src, int64_t n) { \
    for (int64_t c = 0; c < n; c++) dst[c] += src[c];                                        \
}

CNN_POOL_FNS(float, uint32_t, f32)
CNN_POOL_FNS(double, uint64_t, f64)
#undef CNN_POOL_FNS
#endif
