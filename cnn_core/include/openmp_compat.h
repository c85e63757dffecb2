/* OpenMP when the build has it, a serial stand-in when it does not, so every
 * kernel compiles either way and cnn_core can report which it got. */
#ifndef CNN_OPENMP_COMPAT_H
#define CNN_OPENMP_COMPAT_H
#ifdef _OPENMP
#include <omp.h>
#define CNN_HAVE_OPENMP 1
#else
#define CNN_HAVE_OPENMP 0
static inline int omp_get_thread_num(void) { return 0; }
static inline int omp_get_num_threads(void) { return 1; }
static inline int omp_get_num_procs(void) { return 1; }
#endif
#endif
