"""all_finite (the input check of fit/evaluate/predict) against the NumPy reference."""
import numpy as np
import pytest

import cnn_core
import pynn.reference as ref

BAD = [np.nan, np.inf, -np.inf]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [1, 7, 8, 33, 4096, 100_003])
def test_finite_arrays_pass(dtype, n):
    rng = np.random.default_rng(n)
    x = rng.standard_normal(n).astype(dtype)
    x[0] = np.finfo(dtype).max           # the largest finite value
    x[-1] = np.finfo(dtype).tiny / 4     # a subnormal
    assert cnn_core.all_finite(x) is True
    assert ref.all_finite(x) is True


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bad", BAD, ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_one_non_finite_value_is_found(dtype, bad, where):
    x = np.ones(200_001, dtype)  # several of the chunks that threads check separately
    index = {"first": 0, "middle": 100_000, "last": -1}[where]
    x[index] = bad
    assert cnn_core.all_finite(x) is False
    assert ref.all_finite(x) is False


def test_views_and_shapes_match_reference():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 30)).astype(np.float32)
    x[3, 7] = np.nan                     # outside the strided view below
    view = x[:, ::2][:, 4:]
    assert cnn_core.all_finite(view) == ref.all_finite(view) is True
    assert cnn_core.all_finite(x.T) == ref.all_finite(x.T) is False
    assert cnn_core.all_finite(np.empty((0, 3), np.float32)) is True


@pytest.mark.parametrize("bad", [np.ones(3, np.int64), np.ones(3, np.float16), [1.0, 2.0]])
def test_unsupported_input_is_a_type_error(bad):
    with pytest.raises(TypeError, match="float32 or float64"):
        cnn_core.all_finite(bad)
