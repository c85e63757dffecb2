"""cnn_core.fma_peak: the FLOP yardstick of the benchmarks. Its speed is not asserted; that it
measures a loop that really ran, and rejects bad arguments, is."""
import math

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


@pytest.mark.parametrize("kwargs, match", [
    ({"threads": 0}, "threads"),
    ({"threads": True}, "threads"),
    ({"threads": 1.5}, "threads"),
    ({"seconds": 0}, "seconds"),
    ({"seconds": float("nan")}, "seconds"),
    ({"repeats": 0}, "repeats"),
    ({"repeats": 2.0}, "repeats"),
])
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        cnn_core.fma_peak(**kwargs)
