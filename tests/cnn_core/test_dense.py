"""Fused dense forward/backward against the NumPy reference, finite differences, determinism."""
import numpy as np
import pytest

import cnn_core
import pynn.reference as ref
from finite_differences import numerical_grad

ACTIVATIONS = ["identity", "relu", "leaky_relu", "elu", "sigmoid", "tanh", "softplus", "gelu",
               "softmax", "log_softmax"]
SHAPES = [(1, 1, 1), (1, 784, 10), (32, 784, 128), (33, 65, 31), (7, 3, 300), (128, 40, 10)]
RTOL = {np.float32: 1e-4, np.float64: 1e-11}
ATOL = {np.float32: 1e-4, np.float64: 1e-11}


def _close(got, want, dtype, scale=1.0):
    np.testing.assert_allclose(got, want, rtol=RTOL[dtype], atol=ATOL[dtype] * scale)


def _inputs(rng, batch, n_in, units, dtype, with_bias=True):
    x = rng.standard_normal((batch, n_in)).astype(dtype)
    w = (rng.standard_normal((n_in, units)) / np.sqrt(n_in)).astype(dtype)
    b = rng.standard_normal(units).astype(dtype) if with_bias else None
    return x, w, b


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_forward_and_backward_match_reference(dtype, activation, shape):
    batch, n_in, units = shape
    rng = np.random.default_rng(batch * 1000 + units)
    x, w, b = _inputs(rng, batch, n_in, units, dtype)
    z = np.empty((batch, units), dtype)
    a = cnn_core.dense_forward(x, w, b, activation, z_out=z)
    z_ref = np.empty_like(z)
    a_ref = ref.dense_forward(x, w, b, activation, z_out=z_ref)
    _close(z, z_ref, dtype, np.sqrt(n_in))
    _close(a, a_ref, dtype, np.sqrt(n_in))

    g = rng.standard_normal((batch, units)).astype(dtype)
    gw, gb, gx = cnn_core.dense_backward(x, w, z, a, g, activation)
    gw_r, gb_r, gx_r = ref.dense_backward(x, w, z, a, g, activation)
    _close(gw, gw_r, dtype, np.sqrt(batch))
    _close(gb, gb_r, dtype, np.sqrt(batch))
    _close(gx, gx_r, dtype, np.sqrt(units))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_no_bias_transposed_weight_view_and_buffers(dtype):
    rng = np.random.default_rng(0)
    x, _, _ = _inputs(rng, 20, 30, 40, dtype)
    w_t = rng.standard_normal((40, 30)).astype(dtype)
    w = w_t.T  # a transposed view: read through strides, not copied
    out = np.empty((20, 40), dtype)
    res = cnn_core.dense_forward(x, w, None, "relu", out=out)
    assert res is out
    _close(out, np.maximum(x.astype(np.float64) @ w, 0), dtype, 10)
    g = rng.standard_normal((20, 40)).astype(dtype)
    gw, gb, gx = (np.empty((30, 40), dtype), np.empty(40, dtype), np.empty((20, 30), dtype))
    dz = np.empty((20, 40), dtype)
    r = cnn_core.dense_backward(x, w, out, out, g, "relu", grad_w=gw, grad_b=gb, grad_x=gx,
                                dz_out=dz)
    assert r[0] is gw and r[1] is gb and r[2] is gx
    _close(dz, g * (out > 0), dtype)
    _close(gw, x.T.astype(np.float64) @ dz, dtype, 10)
    _close(gx, dz.astype(np.float64) @ w.T, dtype, 10)
    _, _, none_x = cnn_core.dense_backward(x, w, out, out, g, "relu", need_grad_x=False)
    assert none_x is None


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_finite_difference_gradients_float64(activation):
    """dense_backward equals central differences of L = sum(g * dense_forward(x, w, b))."""
    rng = np.random.default_rng(7)
    x, w, b = _inputs(rng, 4, 5, 3, np.float64)
    g = rng.standard_normal((4, 3))
    z = np.empty((4, 3))
    a = cnn_core.dense_forward(x, w, b, activation, z_out=z)
    gw, gb, gx = cnn_core.dense_backward(x, w, z, a, g, activation)

    def loss():
        return float(np.sum(g * cnn_core.dense_forward(x, w, b, activation)))

    for arr, grad in ((x, gx), (w, gw), (b, gb)):
        np.testing.assert_allclose(grad, numerical_grad(loss, arr), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("activation", ["relu", "tanh", "softmax"])
def test_bitwise_identical_for_any_thread_count(restore_threads, activation):
    rng = np.random.default_rng(11)
    x, w, b = _inputs(rng, 256, 784, 512, np.float32)
    g = rng.standard_normal((256, 512)).astype(np.float32)
    results = []
    for threads in (1, 2, 3):
        cnn_core.set_num_threads(threads)
        z = np.empty((256, 512), np.float32)
        a = cnn_core.dense_forward(x, w, b, activation, z_out=z)
        grads = cnn_core.dense_backward(x, w, z, a, g, activation)
        results.append(b"".join(arr.tobytes() for arr in (z, a) + grads))
    assert results[1] == results[0] and results[2] == results[0]


@pytest.mark.parametrize("activation", ["identity", "relu"])
@pytest.mark.parametrize("units", [20, 28, 44])
def test_forward_epilogue_bits_do_not_depend_on_the_tile(activation, units):
    """A batch's 16-wide tiles take the one-pass epilogue and their 4- or 12-wide edges the
    per-row one; a single sample (GEMV) runs the per-row one over all 20/28/44 units, widths
    that are no multiple of 8. Every output must have the same bits both ways, NaN and inf
    rows included (ReLU sends NaN to 0 on both)."""
    rng = np.random.default_rng(units)
    x, w, b = _inputs(rng, 13, 37, units, np.float32)
    x[3] = 0.0
    x[4, 5] = np.nan
    x[5, 7] = np.inf
    x[6, 1] = -np.inf
    b[:5] = 0.0
    z = np.empty((13, units), np.float32)
    a = cnn_core.dense_forward(x, w, b, activation, z_out=z)
    assert np.isnan(z[4]).all() and not np.isfinite(z[5]).any()
    for i in range(13):
        z1 = np.empty((1, units), np.float32)
        a1 = cnn_core.dense_forward(x[i:i + 1], w, b, activation, z_out=z1)
        assert a1.tobytes() == a[i:i + 1].tobytes() and z1.tobytes() == z[i:i + 1].tobytes()


def test_bad_input():
    x = np.ones((4, 3), np.float32)
    w = np.ones((3, 2), np.float32)
    b = np.ones(2, np.float32)
    with pytest.raises(ValueError, match="features"):
        cnn_core.dense_forward(np.ones((4, 5), np.float32), w, b)
    with pytest.raises(ValueError, match="b has shape"):
        cnn_core.dense_forward(x, w, np.ones(3, np.float32))
    with pytest.raises(TypeError, match="dtype"):
        cnn_core.dense_forward(x, w.astype(np.float64), b)
    with pytest.raises(ValueError, match="unknown activation"):
        cnn_core.dense_forward(x, w, b, "swishy")
    with pytest.raises(ValueError, match="out has shape"):
        cnn_core.dense_forward(x, w, b, out=np.empty((4, 3), np.float32))
    with pytest.raises(ValueError, match="empty"):
        cnn_core.dense_forward(np.ones((0, 3), np.float32), w, b)
    a = cnn_core.dense_forward(x, w, b)
    with pytest.raises(ValueError, match="grad_out has shape"):
        cnn_core.dense_backward(x, w, a, a, np.ones((4, 3), np.float32))
