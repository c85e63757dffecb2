/* Activation functions and their derivatives, one definition for every caller:
 * the GEMM epilogue (dense forward), the elementwise kernels and the dense backward.
 *
 * Ids are shared with Python through cnn_core/_activations.pyx (ACTIVATION_IDS).
 * Row-wise ones (softmax, log_softmax) are not elementwise and are handled by the callers. */
#ifndef CNN_ACTIVATION_MATH_H
#define CNN_ACTIVATION_MATH_H

#include <math.h>
#include <stdint.h>

enum {
    CNN_ACT_IDENTITY = 0,
    CNN_ACT_RELU = 1,
    CNN_ACT_LEAKY_RELU = 2,
    CNN_ACT_ELU = 3,
    CNN_ACT_SIGMOID = 4,
    CNN_ACT_TANH = 5,
    CNN_ACT_SOFTPLUS = 6,
    CNN_ACT_GELU = 7,
    CNN_ACT_SOFTMAX = 8,
    CNN_ACT_LOG_SOFTMAX = 9
};

#include "act_vec_math.h" /* after the ids: its vector loops switch on them */

/* The transcendental functions per type: float32 uses act_vec_math.h (vectorised, the same
 * bits in scalar code), float64 libm. */
#define cnn_tanh_f32 cnn_tanhf
#define cnn_sigmoid_f32 cnn_sigmoidf
#define cnn_expm1_f32 cnn_expm1f
#define cnn_gelu_f32 cnn_geluf
#define cnn_softplus_f32 cnn_softplusf
#define cnn_gelu_deriv_f32 cnn_gelu_derivf
#define cnn_tanh_f64 tanh
#define cnn_expm1_f64 expm1
static inline double cnn_softplus_f64(double z) {
    return (z > 0 ? z : 0.0) + log1p(exp(-fabs(z)));
}
static inline double cnn_gelu_f64(double z) {
    return 0.5 * z * (1.0 + erf(z * 0.70710678118654752440));
}
static inline double cnn_gelu_deriv_f64(double z) {
    return 0.5 * (1.0 + erf(z * 0.70710678118654752440))
           + z * exp(-0.5 * z * z) * 0.39894228040143267794;
}
static inline double cnn_sigmoid_f64(double z) {
    /* Two branches so exp never overflows: exp of a non-positive number only. */
    if (z >= 0) return 1.0 / (1.0 + exp(-z));
    const double e = exp(z);
    return e / (1.0 + e);
}

/* Generates, for one floating type T (N: f32 or f64):
 *   cnn_act_one_<N>(act, z, param)            f(z)
 *   cnn_act_deriv_one_<N>(act, z, a, param)   f'(z), given a = f(z) (cheaper for some)
 *   cnn_act_apply_<N>(act, z, a, n, param)    a[i] = f(z[i]); z and a may alias
 *   cnn_act_backward_<N>(act, g, z, a, dz, n, param)  dz[i] = g[i] * f'(z[i]); may alias g
 * The switch sits outside the loops so each loop is a tight, vectorisable body. */
#define CNN_DEFINE_ACTIVATIONS(T, N)                                                        \
static inline T cnn_act_one_##N(int act, T z, T param) {                                    \
    switch (act) {                                                                          \
    case CNN_ACT_RELU: return z > 0 ? z : (T)0;                                             \
    case CNN_ACT_LEAKY_RELU: return z > 0 ? z : param * z;                                  \
    case CNN_ACT_ELU: return z > 0 ? z : param * cnn_expm1_##N(z);                          \
    case CNN_ACT_SIGMOID: return cnn_sigmoid_##N(z);                                        \
    case CNN_ACT_TANH: return cnn_tanh_##N(z);                                              \
    case CNN_ACT_SOFTPLUS: return cnn_softplus_##N(z);                                      \
    case CNN_ACT_GELU: return cnn_gelu_##N(z);                                              \
    default: return z;                                                                      \
    }                                                                                       \
}                                                                                           \
static inline T cnn_act_deriv_one_##N(int act, T z, T a, T param) {                        \
    switch (act) {                                                                          \
    case CNN_ACT_RELU: return z > 0 ? (T)1 : (T)0;                                          \
    case CNN_ACT_LEAKY_RELU: return z > 0 ? (T)1 : param;                                   \
    case CNN_ACT_ELU: return z > 0 ? (T)1 : a + param;                                      \
    case CNN_ACT_SIGMOID: return a * ((T)1 - a);                                            \
    case CNN_ACT_TANH: return (T)1 - a * a;                                                 \
    case CNN_ACT_SOFTPLUS: return cnn_sigmoid_##N(z);                                       \
    case CNN_ACT_GELU: return cnn_gelu_deriv_##N(z);                                        \
    default: return (T)1;                                                                   \
    }                                                                                       \
}                                                                                           \
static inline void cnn_act_apply_##N(int act, const T *z, T *a, int64_t n, T param) {       \
    /* A vectorised prefix where there is one (the same operations), then these loops. */  \
    int64_t i = cnn_act_apply_vec_##N(act, z, a, n, param);                                 \
    switch (act) {                                                                          \
    case CNN_ACT_IDENTITY:                                                                  \
        if (a != z) for (; i < n; i++) a[i] = z[i];                                         \
        return;                                                                             \
    case CNN_ACT_RELU:                                                                      \
        for (; i < n; i++) a[i] = z[i] > 0 ? z[i] : (T)0;                                   \
        return;                                                                             \
    case CNN_ACT_LEAKY_RELU:                                                                \
        for (; i < n; i++) a[i] = z[i] > 0 ? z[i] : param * z[i];                           \
        return;                                                                             \
    default:                                                                                \
        for (; i < n; i++) a[i] = cnn_act_one_##N(act, z[i], param);                        \
        return;                                                                             \
    }                                                                                       \
}                                                                                           \
static inline void cnn_act_backward_##N(int act, const T *g, const T *z, const T *a, T *dz, \
                                        int64_t n, T param) {                               \
    int64_t i = cnn_act_backward_vec_##N(act, g, z, a, dz, n, param);                       \
    switch (act) {                                                                          \
    case CNN_ACT_IDENTITY:                                                                  \
        if (dz != g) for (; i < n; i++) dz[i] = g[i];                                       \
        return;                                                                             \
    case CNN_ACT_RELU:                                                                      \
        for (; i < n; i++) dz[i] = z[i] > 0 ? g[i] : (T)0;                                  \
        return;                                                                             \
    case CNN_ACT_LEAKY_RELU:                                                                \
        for (; i < n; i++) dz[i] = z[i] > 0 ? g[i] : param * g[i];                          \
        return;                                                                             \
    case CNN_ACT_ELU:                                                                       \
        for (; i < n; i++) dz[i] = g[i] * (z[i] > 0 ? (T)1 : a[i] + param);                 \
        return;                                                                             \
    case CNN_ACT_SIGMOID:                                                                   \
        for (; i < n; i++) dz[i] = g[i] * a[i] * ((T)1 - a[i]);                             \
        return;                                                                             \
    case CNN_ACT_TANH:                                                                      \
        for (; i < n; i++) dz[i] = g[i] * ((T)1 - a[i] * a[i]);                             \
        return;                                                                             \
    default:                                                                                \
        for (; i < n; i++) dz[i] = g[i] * cnn_act_deriv_one_##N(act, z[i], a[i], param);    \
        return;                                                                             \
    }                                                                                       \
}

CNN_DEFINE_ACTIVATIONS(float, f32)
CNN_DEFINE_ACTIVATIONS(double, f64)

#endif
