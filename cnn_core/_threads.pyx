"""Thread count of the compiled core and what the build supports.

The default is ``OMP_NUM_THREADS`` when set, else the number of cores this process may run
on. Results never depend on it: kernels split work so that no reduction changes order.
"""
import os

cdef extern from "openmp_compat.h":
    int CNN_HAVE_OPENMP

# Below this many elements an elementwise kernel stays on one thread: waking a second costs
# a few microseconds, more than it saves.
cdef long long MIN_ELEMENTS_PER_THREAD = 32768

cdef int _num_threads = 1


def _default_num_threads():
    env = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    if env:
        try:
            n = int(env)
            if n >= 1:
                return n
        except ValueError:
            pass
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def set_num_threads(n):
    """Use ``n`` threads (n >= 1) in every kernel. Without OpenMP the count is recorded but
    the kernels run serially."""
    global _num_threads
    if isinstance(n, bool) or not isinstance(n, (int,)) and not hasattr(n, "__index__"):
        raise TypeError(f"number of threads must be an integer, got {type(n).__name__}")
    n = int(n)
    if n < 1:
        raise ValueError(f"number of threads must be >= 1, got {n}")
    _num_threads = n


def get_num_threads():
    """The number of threads the kernels use."""
    return _num_threads


def has_openmp():
    """True when cnn_core was compiled with OpenMP."""
    return bool(CNN_HAVE_OPENMP)


cdef int get_num_threads_c() noexcept nogil:
    return _num_threads if CNN_HAVE_OPENMP else 1


cdef int threads_for_elements(long long work) noexcept nogil:
    cdef int n = get_num_threads_c()
    cdef long long useful = work // MIN_ELEMENTS_PER_THREAD
    if useful < n:
        n = <int>useful
    return n if n >= 1 else 1


_num_threads = _default_num_threads()
