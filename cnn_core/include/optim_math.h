/* Optimizer update loops over one contiguous chunk (Keras 3 semantics; see _optim.pyx).
 *
 * Plain C so the compiler vectorises them, compiled three times (AVX-512, AVX2, baseline) with
 * the best one picked at load time (target_clones): the update is bound by sqrt/div and memory,
 * and the baseline SSE2 build would do 4 lanes where the CPU has 16. Each element is updated
 * on its own with the same operations in the same order whatever the clone (no FMA
 * contraction: the build uses -ffp-contract=off), so results match the NumPy reference and
 * never depend on the thread count. */
#ifndef CNN_OPTIM_MATH_H
#define CNN_OPTIM_MATH_H

#include <math.h>
#include <stdint.h>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define CNN_VECTOR_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define CNN_VECTOR_CLONES
#endif

#define CNN_DEFINE_OPTIM(T, N, S)                                                            \
static inline void cnn_weight_decay_##N(T *restrict param, int64_t n, T decay) {             \
    if (decay != 0)                                                                          \
        for (int64_t i = 0; i < n; i++) param[i] = param[i] - decay * param[i];               \
}                                                                                            \
                                                                                             \
CNN_VECTOR_CLONES                                                                            \
static void cnn_sgd_chunk_##N(T *restrict param, const T *restrict grad, T *restrict velocity, \
                              int64_t n, T lr, T momentum, int nesterov, T decay) {          \
    cnn_weight_decay_##N(param, n, decay);                                                   \
    if (velocity == NULL) {                                                                  \
        for (int64_t i = 0; i < n; i++) param[i] = param[i] - lr * grad[i];                  \
    } else if (nesterov) {                                                                   \
        for (int64_t i = 0; i < n; i++) {                                                    \
            const T v = momentum * velocity[i] - lr * grad[i];                               \
            velocity[i] = v;                                                                 \
            param[i] = param[i] + (momentum * v - lr * grad[i]);                             \
        }                                                                                    \
    } else {                                                                                 \
        for (int64_t i = 0; i < n; i++) {                                                    \
            const T v = momentum * velocity[i] - lr * grad[i];                               \
            velocity[i] = v;                                                                 \
            param[i] = param[i] + v;                                                         \
        }                                                                                    \
    }                                                                                        \
}                                                                                            \
                                                                                             \
CNN_VECTOR_CLONES                                                                            \
static void cnn_adam_chunk_##N(T *restrict param, const T *restrict grad, T *restrict m,     \
                               T *restrict v, int64_t n, T lr_t, T one_minus_b1,             \
                               T one_minus_b2, T eps, T decay) {                             \
    cnn_weight_decay_##N(param, n, decay);                                                   \
    for (int64_t i = 0; i < n; i++) {                                                        \
        const T g = grad[i];                                                                 \
        const T mi = m[i] + (g - m[i]) * one_minus_b1;                                       \
        const T vi = v[i] + (g * g - v[i]) * one_minus_b2;                                   \
        m[i] = mi;                                                                           \
        v[i] = vi;                                                                           \
        param[i] = param[i] - lr_t * mi / (sqrt##S(vi) + eps);                               \
    }                                                                                        \
}                                                                                            \
                                                                                             \
CNN_VECTOR_CLONES                                                                            \
static void cnn_rmsprop_chunk_##N(T *restrict param, const T *restrict grad,                 \
                                  T *restrict velocity, T *restrict momentum_buf,            \
                                  T *restrict average_grad, int64_t n, T lr, T rho,          \
                                  T one_minus_rho, T momentum, T eps, T decay) {             \
    cnn_weight_decay_##N(param, n, decay);                                                   \
    for (int64_t i = 0; i < n; i++) {                                                        \
        const T g = grad[i];                                                                 \
        const T vi = rho * velocity[i] + one_minus_rho * g * g;                              \
        velocity[i] = vi;                                                                    \
        T inc;                                                                               \
        if (average_grad != NULL) {                                                          \
            const T ag = rho * average_grad[i] + one_minus_rho * g;                          \
            average_grad[i] = ag;                                                            \
            inc = lr * g / sqrt##S(vi - ag * ag + eps);                                      \
        } else {                                                                             \
            inc = lr * g / sqrt##S(vi + eps);                                                \
        }                                                                                    \
        if (momentum_buf != NULL) {                                                          \
            inc = momentum * momentum_buf[i] + inc;                                          \
            momentum_buf[i] = inc;                                                           \
        }                                                                                    \
        param[i] = param[i] - inc;                                                           \
    }                                                                                        \
}                                                                                            \
                                                                                             \
CNN_VECTOR_CLONES                                                                            \
static void cnn_adagrad_chunk_##N(T *restrict param, const T *restrict grad,                 \
                                  T *restrict accumulator, int64_t n, T lr, T eps, T decay) { \
    cnn_weight_decay_##N(param, n, decay);                                                   \
    for (int64_t i = 0; i < n; i++) {                                                        \
        const T g = grad[i];                                                                 \
        const T acc = accumulator[i] + g * g;                                                \
        accumulator[i] = acc;                                                                \
        param[i] = param[i] - lr * g / sqrt##S(acc + eps);                                   \
    }                                                                                        \
}

CNN_DEFINE_OPTIM(float, f32, f)
CNN_DEFINE_OPTIM(double, f64, )

#endif
