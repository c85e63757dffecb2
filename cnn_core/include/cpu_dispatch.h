/* Which micro-kernel family this CPU can run, asked once at import.
 * GCC's __builtin_cpu_supports also checks that the OS saves the AVX/AVX-512 state. */
#ifndef CNN_CPU_DISPATCH_H
#define CNN_CPU_DISPATCH_H

enum { CNN_KERNEL_REFERENCE = 0, CNN_KERNEL_AVX2 = 1, CNN_KERNEL_AVX512 = 2 };

static int cnn_cpu_best_kernel(void) {
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq")
        && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("fma"))
        return CNN_KERNEL_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return CNN_KERNEL_AVX2;
#endif
    return CNN_KERNEL_REFERENCE;
}

#endif
