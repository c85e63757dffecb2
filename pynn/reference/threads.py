"""Thread count and build description of the NumPy backend.

NumPy decides its own threading (its BLAS), so the count is only recorded: the reference
accepts and validates the same calls as ``cnn_core`` so that code written for one runs on both.
"""
import os

from cnn_core import _checks


def _default_num_threads():
    """``OMP_NUM_THREADS`` when set to a positive integer, else the cores this process may use."""
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


_num_threads = _default_num_threads()


def set_num_threads(n):
    """Record ``n`` (an integer >= 1) as the thread count."""
    global _num_threads
    _num_threads = _checks.check_positive_int(n, "number of threads")


def get_num_threads():
    """The recorded thread count (default: ``OMP_NUM_THREADS`` or the core count)."""
    return _num_threads


def build_info():
    """Same keys as ``cnn_core.build_info()``: this backend is plain NumPy, without OpenMP."""
    import pynn

    return {
        "backend": "numpy",
        "version": pynn.__version__,
        "openmp": False,
        "kernel": "numpy",
        "cpu_kernels": [],
        "num_threads": get_num_threads(),
    }
