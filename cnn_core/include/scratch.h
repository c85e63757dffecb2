/* One grow-only scratch buffer per calling thread and per module that includes this header:
 * kernels that need temporary memory (im2col columns, pooling argmaxes) take it from here, so
 * a training loop allocates on its first step (or when a larger shape arrives), never after.
 * A kernel holds it only while it runs and calls nothing else that takes it. */
#ifndef CNN_SCRATCH_H
#define CNN_SCRATCH_H
#include <stdlib.h>

static __thread void *cnn_scratch_ptr = NULL;
static __thread size_t cnn_scratch_bytes = 0;

/* At least `bytes` bytes, 64-byte aligned, or NULL when the allocation fails. */
static void *cnn_scratch(size_t bytes) {
    if (bytes > cnn_scratch_bytes) {
        size_t rounded = (bytes + 4095) / 4096 * 4096;
        void *p = aligned_alloc(64, rounded);
        if (p == NULL) return NULL;
        free(cnn_scratch_ptr);
        cnn_scratch_ptr = p;
        cnn_scratch_bytes = rounded;
    }
    return cnn_scratch_ptr;
}
#endif
