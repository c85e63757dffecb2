"""cnn_core.fma_peak: the FLOP yardstick of the benchmarks. Its speed is not asserted; that it
measures a loop that really ran, and rejects bad arguments, is."""
import math

import numpy as np
import pytest

import cnn_core


@pytest.mark.parametrize("threads", [1, 2])
def test_peak_is_a_plausible_rate(threads):
    gflops = cnn_core.fma_peak(threads, seconds=0.01, repeats=2)
    assert isinstance(gflops, float) and math.isfinite(gflops) and gflops > 0
    # No core does more than ~250 float32 GFLOP/s (two 512-bit FMA pipes at 4 GHz): a larger
    # figure would mean the compiler removed the loop, or the flops are miscounted.
    assert gflops / threads < 1000


def test_default_thread_count_is_the_kernels():
    before = cnn_core.get_num_threads()
    try:
        cnn_core.set_num_threads(1)
        assert cnn_core.fma_peak(seconds=0.005, repeats=1) > 0
    finally:
        cnn_core.set_num_threads(before)


def test_numpy_integers_are_accepted():
    assert cnn_core.fma_peak(np.int64(1), seconds=0.005, repeats=np.int32(1)) > 0


@pytest.mark.parametrize("kwargs, exc, match", [
    ({"threads": 0}, ValueError, "threads"),
    ({"threads": True}, TypeError, "threads"),
    ({"threads": 1.5}, TypeError, "threads"),
    ({"seconds": 0}, ValueError, "seconds"),
    ({"seconds": -1.0}, ValueError, "seconds"),
    ({"seconds": float("nan")}, ValueError, "seconds"),
    ({"seconds": float("inf")}, ValueError, "seconds"),
    ({"seconds": 1e9}, ValueError, "seconds"),
    ({"seconds": True}, TypeError, "seconds"),
    ({"seconds": "0.1"}, TypeError, "seconds"),
    ({"repeats": 0}, ValueError, "repeats"),
    ({"repeats": 2.0}, TypeError, "repeats"),
])
def test_bad_arguments_are_named(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        cnn_core.fma_peak(**kwargs)
