"""The float32 FLOP peak of this CPU, measured (``include/fma_peak.h``): the yardstick that
benchmarks divide by. No kernel uses it."""
import numbers
import time

from cnn_core._threads cimport get_num_threads_c
from cnn_core._typedefs cimport intp_t
from cnn_core import _checks

cdef extern from "fma_peak.h" nogil:
    float cnn_fma_peak_parallel(int level, intp_t iters, int nt, double *flops)
    int cnn_cpu_best_kernel()


cdef double _timed_run(int level, intp_t iters, int nt, double *flops) except -1:
    """Seconds for nt threads to run `iters` iterations each; *flops: their total."""
    cdef float sink
    t0 = time.perf_counter()
    with nogil:
        sink = cnn_fma_peak_parallel(level, iters, nt, flops)
    elapsed = time.perf_counter() - t0
    if sink != sink:  # the result is used, so the loop cannot be optimised away
        raise RuntimeError("fma_peak: the loop produced NaN")
    return elapsed


def fma_peak(threads=None, seconds=0.05, repeats=5):
    """Float32 GFLOP/s of ``threads`` threads (default: ``get_num_threads()``) that do nothing
    but fused multiply-adds on the widest vectors the CPU has (AVX-512, else AVX2, else plain
    C multiply-adds), whatever kernel family is in use: the best of ``repeats`` runs of about
    ``seconds`` each. A benchmark's "% of peak" divides by this, measured in the same run (a
    shared machine's clock drifts). Without OpenMP one thread runs. Returns a float.
    """
    threads = get_num_threads_c() if threads is None else _checks.check_positive_int(
        threads, "threads")
    repeats = _checks.check_positive_int(repeats, "repeats")
    if isinstance(seconds, bool) or not isinstance(seconds, numbers.Real):
        raise TypeError(f"seconds must be a real number, got {type(seconds).__name__}")
    seconds = float(seconds)
    if not 0 < seconds <= 60:  # NaN fails this too
        raise ValueError(f"seconds must be in (0, 60], got {seconds}")
    cdef int level = cnn_cpu_best_kernel(), nt = threads
    cdef intp_t iters = 1 << 12
    cdef double flops = 0, elapsed
    # Grow a one-thread run until it is long enough to time, then scale it to `seconds`.
    while True:
        elapsed = _timed_run(level, iters, 1, &flops)
        if elapsed >= 0.005 or iters >= (<intp_t>1 << 40):
            break
        iters *= 4
    iters = max(<intp_t>1, <intp_t>(iters * seconds / elapsed))
    _timed_run(level, iters, nt, &flops)  # untimed: a core that was idle ramps its clock up
    best = 0.0
    for _ in range(repeats):
        elapsed = _timed_run(level, iters, nt, &flops)
        best = max(best, flops / elapsed / 1e9)
    return best
