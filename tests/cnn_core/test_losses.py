"""Losses: value and gradient against the NumPy reference, finite differences, labels of any
integer dtype, in-place gradient buffers, extreme logits, bitwise determinism across thread
counts, and input validation."""
import numpy as np
import pytest

import cnn_core
import pynn.reference as ref

DTYPES = [np.float32, np.float64]
# Loss values are accumulated in float64 from inputs of the given dtype: float32 differs from
# the reference by the rounding of exp/log in float32 (a few ulps of the per-row values).
LOSS_RTOL = {np.float32: 1e-6, np.float64: 1e-12}
GRAD_RTOL = {np.float32: 1e-5, np.float64: 1e-12}
GRAD_ATOL = {np.float32: 1e-7, np.float64: 1e-15}  # times 1/batch (the gradient's scale)

ROW_SHAPES = [(1, 1), (1, 7), (7, 1), (33, 65), (128, 10), (3, 5000)]
ELEMENTWISE_SHAPES = ROW_SHAPES + [(4, 5, 6), (10,)]
ELEMENTWISE = ["mean_squared_error", "mean_absolute_error", "binary_cross_entropy_logits",
               "binary_cross_entropy"]


def _ids(shape):
    return "x".join(map(str, shape))


def _with_threads(n, fn):
    """fn() run with n threads (the conftest fixture restores the count afterwards)."""
    cnn_core.set_num_threads(n)
    return fn()


def _make(name, shape, dtype, rng, scale=3.0):
    """(prediction, target) for loss ``name``."""
    if name == "softmax_cross_entropy_sparse":
        return ((scale * rng.standard_normal(shape)).astype(dtype),
                rng.integers(0, shape[1], shape[0]))
    if name == "softmax_cross_entropy":
        t = rng.random(shape).astype(dtype)
        t /= t.sum(axis=-1, keepdims=True) * rng.uniform(0.5, 1.5)  # rows need not sum to 1
        return (scale * rng.standard_normal(shape)).astype(dtype), t
    if name == "binary_cross_entropy":
        return rng.uniform(0.01, 0.99, shape).astype(dtype), rng.random(shape).astype(dtype)
    if name == "binary_cross_entropy_logits":
        return (scale * rng.standard_normal(shape)).astype(dtype), rng.random(shape).astype(dtype)
    return (scale * rng.standard_normal(shape)).astype(dtype), rng.standard_normal(shape).astype(dtype)


def _compare(name, pred, target, dtype, **kwargs):
    loss, grad = getattr(cnn_core, name)(pred, target, **kwargs)
    loss_ref, grad_ref = getattr(ref, name)(pred, target, **kwargs)
    assert isinstance(loss, float)
    assert grad.dtype == dtype and grad.shape == pred.shape
    np.testing.assert_allclose(loss, loss_ref, rtol=LOSS_RTOL[dtype], atol=1e-300)
    scale = 1.0 / (pred.shape[0] if name.startswith("softmax") else pred.size)
    np.testing.assert_allclose(grad, grad_ref, rtol=GRAD_RTOL[dtype],
                               atol=GRAD_ATOL[dtype] * scale)
    return loss, grad


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["softmax_cross_entropy_sparse", "softmax_cross_entropy"])
@pytest.mark.parametrize("shape", ROW_SHAPES, ids=_ids)
def test_softmax_cross_entropy_matches_reference(dtype, name, shape):
    rng = np.random.default_rng(shape[0] * 7 + shape[1])
    pred, target = _make(name, shape, dtype, rng)
    _compare(name, pred, target, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ELEMENTWISE)
@pytest.mark.parametrize("shape", ELEMENTWISE_SHAPES, ids=_ids)
def test_elementwise_losses_match_reference(dtype, name, shape):
    rng = np.random.default_rng(sum(shape))
    pred, target = _make(name, shape, dtype, rng)
    _compare(name, pred, target, dtype)


ALL_LOSSES = ["softmax_cross_entropy_sparse", "softmax_cross_entropy"] + ELEMENTWISE


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ALL_LOSSES)
def test_no_grad_and_grad_buffer(dtype, name):
    rng = np.random.default_rng(5)
    pred, target = _make(name, (13, 9), dtype, rng)
    loss, grad = getattr(cnn_core, name)(pred, target)
    loss_only, none = getattr(cnn_core, name)(pred, target, compute_grad=False)
    assert none is None
    assert loss_only == loss
    buf = np.full_like(pred, np.nan)
    loss_buf, grad_buf = getattr(cnn_core, name)(pred, target, grad=buf)
    assert grad_buf is buf and loss_buf == loss
    np.testing.assert_array_equal(buf, grad)
    # the prediction's own memory as the gradient buffer (a training loop reusing it)
    pred_copy = pred.copy()
    loss_alias, grad_alias = getattr(cnn_core, name)(pred_copy, target, grad=pred_copy)
    assert grad_alias is pred_copy and loss_alias == loss
    np.testing.assert_array_equal(pred_copy, grad)


@pytest.mark.parametrize("label_dtype", [np.int32, np.int64, np.uint8, np.int16, np.uint64])
def test_sparse_labels_any_integer_dtype(label_dtype):
    rng = np.random.default_rng(6)
    logits = rng.standard_normal((40, 12)).astype(np.float32)
    labels = rng.integers(0, 12, 40)
    want = cnn_core.softmax_cross_entropy_sparse(logits, labels)
    got = cnn_core.softmax_cross_entropy_sparse(logits, labels.astype(label_dtype))
    assert got[0] == want[0]
    np.testing.assert_array_equal(got[1], want[1])
    column = cnn_core.softmax_cross_entropy_sparse(logits, labels.reshape(-1, 1))  # (B, 1)
    np.testing.assert_array_equal(column[1], want[1])


@pytest.mark.parametrize("dtype", DTYPES)
def test_sparse_equals_one_hot(dtype):
    rng = np.random.default_rng(7)
    logits = rng.standard_normal((25, 6)).astype(dtype)
    labels = rng.integers(0, 6, 25)
    one_hot = np.eye(6, dtype=dtype)[labels]
    sparse = cnn_core.softmax_cross_entropy_sparse(logits, labels)
    dense = cnn_core.softmax_cross_entropy(logits, one_hot)
    np.testing.assert_allclose(sparse[0], dense[0], rtol=LOSS_RTOL[dtype])
    np.testing.assert_allclose(sparse[1], dense[1], rtol=GRAD_RTOL[dtype], atol=1e-7)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["softmax_cross_entropy_sparse", "softmax_cross_entropy",
                                  "binary_cross_entropy_logits"])
def test_extreme_logits_stay_finite(dtype, name):
    logits = np.array([[-1000.0, 1000.0, 0.0], [1000.0, 1000.0, -1000.0],
                       [-1000.0, -1000.0, -1000.0], [88.0, -88.0, 1000.0]], dtype=dtype)
    rng = np.random.default_rng(8)
    _, target = _make(name, logits.shape, dtype, rng)
    loss, grad = _compare(name, logits, target, dtype)
    assert np.isfinite(loss) and np.all(np.isfinite(grad))


@pytest.mark.parametrize("dtype", DTYPES)
def test_binary_cross_entropy_clipping(dtype):
    prob = np.array([[0.0, 1.0, 0.5, 1e-9], [1 - 1e-9, 0.3, 1e-7, 0.9999]], dtype=dtype)
    target = np.array([[0.0, 1.0, 1.0, 1.0], [0.0, 0.5, 1.0, 0.0]], dtype=dtype)
    loss, grad = _compare("binary_cross_entropy", prob, target, dtype)
    assert np.isfinite(loss)
    assert grad[0, 0] == 0 and grad[0, 1] == 0 and grad[0, 3] == 0
    _compare("binary_cross_entropy", prob, target, dtype, epsilon=1e-3)


@pytest.mark.parametrize("dtype", DTYPES)
def test_bce_logits_gradient_uses_the_shared_sigmoid(dtype):
    """The fused kernel reuses exp(-|x|) for the sigmoid: it must equal, bit for bit,
    (sigmoid(x) - t) / size with the sigmoid of activation_math.h."""
    rng = np.random.default_rng(14)
    x = (10 * rng.standard_normal((50, 40))).astype(dtype)
    x[0, :4] = [0.0, -0.0, 1e-30, -1e-30]
    t = rng.random((50, 40)).astype(dtype)
    _, grad = cnn_core.binary_cross_entropy_logits(x, t)
    want = (cnn_core.activation_forward(x, "sigmoid") - t) / dtype(x.size)
    np.testing.assert_array_equal(grad, want)


def _numeric_grad(fn, x, h=1e-6):
    out = np.empty_like(x)
    for idx in np.ndindex(x.shape):
        xp, xm = x.copy(), x.copy()
        xp[idx] += h
        xm[idx] -= h
        out[idx] = (fn(xp) - fn(xm)) / (2 * h)
    return out


@pytest.mark.parametrize("name", ALL_LOSSES)
def test_finite_difference_gradient_float64(name):
    rng = np.random.default_rng(9)
    pred, target = _make(name, (3, 4), np.float64, rng, scale=1.5)
    if name == "mean_absolute_error":
        pred[np.abs(pred - target) < 1e-3] += 0.1  # away from the kink of |p - t|
    loss_fn = getattr(cnn_core, name)
    _, grad = loss_fn(pred, target)
    numeric = _numeric_grad(lambda p: loss_fn(p, target, compute_grad=False)[0], pred)
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("name", ALL_LOSSES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_bitwise_identical_for_any_thread_count(name, dtype):
    rng = np.random.default_rng(10)
    pred, target = _make(name, (5000, 20), dtype, rng)  # 100k elements: 3 threads' worth

    def run():
        loss, grad = getattr(cnn_core, name)(pred, target)
        return np.float64(loss).tobytes(), grad.tobytes()

    first = _with_threads(1, run)
    for n in (2, 3):
        assert _with_threads(n, run) == first


@pytest.mark.parametrize("name", ALL_LOSSES)
def test_strided_inputs_accepted_like_the_reference(name):
    rng = np.random.default_rng(11)
    pred, target = _make(name, (8, 14), np.float32, rng)
    if name == "softmax_cross_entropy_sparse":
        view = np.asfortranarray(pred)
        t_view = target
    else:
        view, t_view = pred[:, ::2], target[:, ::2]
    got = getattr(cnn_core, name)(view, t_view)
    want = getattr(cnn_core, name)(np.ascontiguousarray(view), np.ascontiguousarray(t_view))
    assert got[0] == want[0]
    np.testing.assert_array_equal(got[1], want[1])


def test_bad_inputs():
    logits = np.zeros((4, 3), np.float32)
    with pytest.raises(ValueError, match="contains 3, outside \\[0, 3\\)"):
        cnn_core.softmax_cross_entropy_sparse(logits, np.array([0, 1, 2, 3]))
    with pytest.raises(ValueError, match="-1"):
        cnn_core.softmax_cross_entropy_sparse(logits, np.array([0, -1, 2, 1]))
    with pytest.raises(ValueError, match=r"\(4,\)"):
        cnn_core.softmax_cross_entropy_sparse(logits, np.array([0, 1, 2]))
    with pytest.raises(TypeError):
        cnn_core.softmax_cross_entropy_sparse(logits, np.array([0.5, 1, 2, 1]))
    with pytest.raises(TypeError):
        cnn_core.softmax_cross_entropy_sparse(logits.astype(np.int64), np.array([0, 1, 2, 1]))
    with pytest.raises(ValueError, match="2-D"):
        cnn_core.softmax_cross_entropy_sparse(np.zeros(3, np.float32), np.array([0]))
    with pytest.raises(ValueError, match="empty"):
        cnn_core.softmax_cross_entropy_sparse(np.zeros((0, 3), np.float32),
                                              np.zeros(0, np.int64))
    with pytest.raises(ValueError, match=r"\(4, 3\).*\(4, 2\)"):
        cnn_core.softmax_cross_entropy(logits, np.zeros((4, 2), np.float32))
    with pytest.raises(TypeError, match="float64"):
        cnn_core.softmax_cross_entropy(logits, np.zeros((4, 3), np.float64))
    with pytest.raises(ValueError, match=r"\(4, 3\)"):
        cnn_core.softmax_cross_entropy_sparse(logits, np.array([0, 1, 2, 1]),
                                              grad=np.zeros((3, 4), np.float32))
    for name in ELEMENTWISE:
        fn = getattr(cnn_core, name)
        with pytest.raises(ValueError, match=r"\(4, 3\).*\(3, 4\)"):
            fn(logits, np.zeros((3, 4), np.float32))
        with pytest.raises(TypeError):
            fn(logits, np.zeros((4, 3), np.float64))
        with pytest.raises(TypeError):
            fn(logits.astype(np.int32), logits.astype(np.int32))
        with pytest.raises(ValueError, match="empty"):
            fn(np.zeros((0, 3), np.float32), np.zeros((0, 3), np.float32))
        with pytest.raises(ValueError, match=r"\(4, 3\)"):
            fn(logits, logits, grad=np.zeros((4, 4), np.float32))
        with pytest.raises(ValueError, match="contiguous"):
            fn(logits, logits, grad=np.zeros((3, 4), np.float32).T)
    with pytest.raises(ValueError, match="finite"):
        cnn_core.binary_cross_entropy(logits, logits, epsilon=float("inf"))
