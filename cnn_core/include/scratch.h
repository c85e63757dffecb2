/* Grow-only scratch buffers, two per calling thread and per module that includes this header:
 * kernels that need temporary memory (im2col columns, tap tables, partial sums, pooling
 * argmaxes) take it from here, so a training loop allocates on its first step (or when a
 * larger shape arrives), never after. Slot 0 holds what a call shares across its threads;
 * slot 1 what each OpenMP worker (the calling thread included) keeps to itself. A kernel holds
 * a slot only while it runs and calls nothing else that takes the same slot. */
#ifndef CNN_SCRATCH_H
#define CNN_SCRATCH_H
#include <stdlib.h>

enum { CNN_SCRATCH_SHARED = 0, CNN_SCRATCH_WORKER = 1, CNN_SCRATCH_SLOTS = 2 };

static __thread void *cnn_scratch_ptr[CNN_SCRATCH_SLOTS];
static __thread size_t cnn_scratch_bytes[CNN_SCRATCH_SLOTS];

/* At least `bytes` bytes of slot `slot`, 64-byte aligned, or NULL when allocation fails. */
static void *cnn_scratch_slot(int slot, size_t bytes) {
    if (bytes > cnn_scratch_bytes[slot]) {
        size_t rounded = (bytes + 4095) / 4096 * 4096;
        void *p = aligned_alloc(64, rounded);
        if (p == NULL) return NULL;
        free(cnn_scratch_ptr[slot]);
        cnn_scratch_ptr[slot] = p;
        cnn_scratch_bytes[slot] = rounded;
    }
    return cnn_scratch_ptr[slot];
}

static void *cnn_scratch(size_t bytes) { return cnn_scratch_slot(CNN_SCRATCH_SHARED, bytes); }
#endif
