# Thread count used by every kernel. One place decides it (OMP_NUM_THREADS, set_num_threads),
# every kernel reads it with get_num_threads_c() while holding no GIL.
cdef int get_num_threads_c() noexcept nogil
# Threads worth waking for `work` elementwise operations (1 below a size threshold).
cdef int threads_for_elements(long long work) noexcept nogil
