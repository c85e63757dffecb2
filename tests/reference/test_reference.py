"""The NumPy reference (pynn.reference) against finite differences, independent formulas and
hand-computed optimizer steps; its validation errors."""
import math

import numpy as np
import pytest

import pynn.reference as ref
from finite_differences import numerical_grad

ELEMENTWISE = ["identity", "linear", "relu", "leaky_relu", "elu", "sigmoid", "tanh", "softplus",
               "gelu"]
ROW_WISE = ["softmax", "log_softmax"]
ACTIVATIONS = ELEMENTWISE + ROW_WISE
FD_EPS = 1e-6
FD_TOL = dict(rtol=1e-6, atol=1e-8)


def away_from_zero(rng, shape, margin=0.05):
    """Normal samples pushed at least ``margin`` away from 0 (the kinks of relu/leaky/elu)."""
    x = rng.standard_normal(shape)
    return np.where(np.abs(x) < margin, np.copysign(margin, x) + x, x)


# ------------------------------------------------------------------------------------------
# Activations
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("activation,param", [(a, None) for a in ACTIVATIONS]
                         + [("leaky_relu", 0.1), ("elu", 0.5)])
@pytest.mark.parametrize("shape", [(7,), (3, 5), (2, 3, 4)])
def test_activation_backward_matches_finite_differences(activation, param, shape):
    rng = np.random.default_rng(hash((activation, shape)) % 2**32)
    z = away_from_zero(rng, shape) * 2
    upstream = rng.standard_normal(shape)
    a = ref.activation_forward(z, activation, param=param)
    dz = ref.activation_backward(upstream, z, a, activation, param=param)

    def loss():
        return float(np.sum(upstream * ref.activation_forward(z, activation, param=param)))

    np.testing.assert_allclose(dz, numerical_grad(loss, z), **FD_TOL)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_elementwise_activations_match_independent_formulas(dtype):
    z64 = np.linspace(-6, 6, 61)
    z = z64.astype(dtype)
    erf = np.array([math.erf(v / math.sqrt(2)) for v in z.astype(np.float64)])
    expected = {
        "identity": z64,
        "relu": np.maximum(z64, 0),
        "leaky_relu": np.where(z64 > 0, z64, 0.2 * z64),
        "elu": np.where(z64 > 0, z64, np.exp(z64) - 1),
        "sigmoid": 1 / (1 + np.exp(-z64)),
        "tanh": np.tanh(z64),
        "softplus": np.log(1 + np.exp(z64)),
        "gelu": 0.5 * z64 * (1 + erf),
    }
    tol = 1e-6 if dtype == np.float32 else 1e-13
    for name, want in expected.items():
        got = ref.activation_forward(z, name)
        assert got.dtype == dtype, name
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol, err_msg=name)


def test_activations_match_torch():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(0)
    z = rng.standard_normal((6, 9)) * 3
    t = torch.from_numpy(z)
    pairs = {
        "relu": F.relu(t), "leaky_relu": F.leaky_relu(t, 0.2), "elu": F.elu(t),
        "sigmoid": torch.sigmoid(t), "tanh": torch.tanh(t), "softplus": F.softplus(t),
        "gelu": F.gelu(t), "softmax": F.softmax(t, -1), "log_softmax": F.log_softmax(t, -1),
    }
    for name, want in pairs.items():
        np.testing.assert_allclose(ref.activation_forward(z, name), want.numpy(), rtol=1e-12,
                                   atol=1e-14, err_msg=name)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_definitions_and_stability(dtype):
    rng = np.random.default_rng(1)
    # multiples of 1/64, so that x + 1000 is exact in float32 too
    x = (np.round(rng.standard_normal((4, 6)) * 5 * 64) / 64).astype(dtype)
    s = ref.activation_forward(x, "softmax")
    ls = ref.activation_forward(x, "log_softmax")
    assert s.dtype == dtype and ls.dtype == dtype
    np.testing.assert_allclose(s.sum(axis=-1), 1, rtol=1e-6)
    np.testing.assert_allclose(ls, np.log(s), rtol=1e-5 if dtype == np.float32 else 1e-12)
    # softmax is invariant to a per-row shift: huge logits give the same, finite, result
    huge = x + np.array([1000, -1000, 0, 500], dtype)[:, None]
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        np.testing.assert_array_equal(ref.activation_forward(huge, "softmax"), s)
        np.testing.assert_array_equal(ref.activation_forward(huge, "log_softmax"), ls)


def test_sigmoid_and_softplus_do_not_overflow():
    z = np.array([-1000.0, -50.0, 0.0, 50.0, 1000.0])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        s = ref.activation_forward(z, "sigmoid")
        sp = ref.activation_forward(z, "softplus")
        ref.activation_backward(np.ones_like(z), z, sp, "softplus")
    np.testing.assert_allclose(s, [0.0, 1 / (1 + math.exp(50)), 0.5, 1 / (1 + math.exp(-50)), 1])
    np.testing.assert_allclose(sp, [0.0, math.log1p(math.exp(-50)), math.log(2), 50, 1000])


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_activation_out_buffers_and_in_place(activation):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 4)).astype(np.float32)
    want = ref.activation_forward(x, activation)
    out = np.full_like(x, np.nan)
    assert ref.activation_forward(x, activation, out=out) is out
    np.testing.assert_array_equal(out, want)
    inplace = x.copy()
    assert ref.activation_forward(inplace, activation, out=inplace) is inplace
    np.testing.assert_array_equal(inplace, want)
    g = rng.standard_normal((3, 4)).astype(np.float32)
    dz = ref.activation_backward(g, x, want, activation)
    assert dz.dtype == np.float32
    g_buf = g.copy()
    assert ref.activation_backward(g_buf, x, want, activation, out=g_buf) is g_buf
    np.testing.assert_array_equal(g_buf, dz)


# ------------------------------------------------------------------------------------------
# Dense
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("with_bias", [True, False])
def test_dense_backward_matches_finite_differences(activation, with_bias):
    rng = np.random.default_rng(hash((activation, with_bias)) % 2**32)
    x = rng.standard_normal((4, 5))
    w = rng.standard_normal((5, 3)) / np.sqrt(5)
    b = rng.standard_normal(3) if with_bias else None
    upstream = rng.standard_normal((4, 3))
    z = np.empty((4, 3))
    a = ref.dense_forward(x, w, b, activation, z_out=z)
    np.testing.assert_allclose(z, x @ w + (0 if b is None else b), rtol=1e-14, atol=1e-14)
    grad_w, grad_b, grad_x = ref.dense_backward(x, w, z, a, upstream, activation)

    def loss():
        return float(np.sum(upstream * ref.dense_forward(x, w, b, activation)))

    np.testing.assert_allclose(grad_x, numerical_grad(loss, x), **FD_TOL)
    np.testing.assert_allclose(grad_w, numerical_grad(loss, w), **FD_TOL)
    if b is not None:
        np.testing.assert_allclose(grad_b, numerical_grad(loss, b), **FD_TOL)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dense_buffers_dtype_and_need_grad_x(dtype):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((6, 4)).astype(dtype)
    w = rng.standard_normal((4, 5)).astype(dtype)
    b = rng.standard_normal(5).astype(dtype)
    out, z_out = np.full((6, 5), np.nan, dtype), np.full((6, 5), np.nan, dtype)
    assert ref.dense_forward(x, w, b, "tanh", out=out, z_out=z_out) is out
    assert out.dtype == dtype
    np.testing.assert_allclose(out, np.tanh(z_out), rtol=1e-6)
    g = rng.standard_normal((6, 5)).astype(dtype)
    bufs = np.empty((4, 5), dtype), np.empty(5, dtype), np.empty((6, 4), dtype)
    res = ref.dense_backward(x, w, z_out, out, g, "tanh", grad_w=bufs[0], grad_b=bufs[1],
                             grad_x=bufs[2])
    assert all(r is buf for r, buf in zip(res, bufs))
    assert all(r.dtype == dtype for r in res)
    _, _, none = ref.dense_backward(x, w, z_out, out, g, "tanh", need_grad_x=False)
    assert none is None
    dz = np.full((6, 5), np.nan, dtype)
    ref.dense_backward(x, w, z_out, out, g, "tanh", dz_out=dz)
    np.testing.assert_array_equal(dz, ref.activation_backward(g, z_out, out, "tanh"))


# ------------------------------------------------------------------------------------------
# GEMM
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gemm_transposes(trans_a, trans_b, dtype):
    rng = np.random.default_rng(4)
    m, k, n = 5, 7, 3
    a = rng.standard_normal((k, m) if trans_a else (m, k)).astype(dtype)
    b = rng.standard_normal((n, k) if trans_b else (k, n)).astype(dtype)
    op_a = a.T if trans_a else a
    op_b = b.T if trans_b else b
    got = ref.gemm(a, b, trans_a=trans_a, trans_b=trans_b)
    assert got.shape == (m, n) and got.dtype == dtype
    want = op_a.astype(np.float64) @ op_b.astype(np.float64)
    np.testing.assert_allclose(got, want, rtol=1e-5 if dtype == np.float32 else 1e-13)
    c0 = rng.standard_normal((m, n)).astype(dtype)
    out = c0.copy()
    assert ref.gemm(a, b, trans_a=trans_a, trans_b=trans_b, alpha=-2.0, beta=0.5, out=out) is out
    np.testing.assert_allclose(out, -2 * want + 0.5 * c0,
                               rtol=1e-5 if dtype == np.float32 else 1e-13, atol=1e-5)


def test_gemm_beta_zero_ignores_nan_in_out_and_strided_out():
    a = np.arange(6.0).reshape(2, 3)
    b = np.arange(12.0).reshape(3, 4)
    out = np.full((2, 4), np.nan)
    ref.gemm(a, b, out=out)
    np.testing.assert_array_equal(out, a @ b)
    big = np.zeros((4, 8))
    view = big[::2, ::2]  # strided out is allowed
    ref.gemm(a.T.copy(), b, trans_a=True, out=view)
    np.testing.assert_array_equal(big[::2, ::2], a @ b)
    assert not big[1::2].any()
    # K == 0: op(a) @ op(b) is all zeros, so only beta * out remains
    c = np.full((3, 4), 2.0)
    ref.gemm(np.empty((3, 0)), np.empty((0, 4)), beta=0.5, out=c)
    np.testing.assert_array_equal(c, 1.0)


# ------------------------------------------------------------------------------------------
# Losses
# ------------------------------------------------------------------------------------------
def _loss_inputs(name, rng, shape=(4, 3)):
    """(prediction, target) suited to each loss, float64."""
    if name == "softmax_cross_entropy_sparse":
        return rng.standard_normal(shape) * 2, rng.integers(0, shape[1], shape[0])
    if name == "softmax_cross_entropy":
        t = rng.random(shape)
        return rng.standard_normal(shape) * 2, t / t.sum(axis=1, keepdims=True)
    if name == "binary_cross_entropy":
        return rng.uniform(0.05, 0.95, shape), rng.random(shape)
    if name == "mean_absolute_error":
        t = rng.standard_normal(shape)
        return t + away_from_zero(rng, shape, 0.1), t
    return rng.standard_normal(shape) * 2, rng.random(shape)


LOSSES = ["softmax_cross_entropy_sparse", "softmax_cross_entropy", "mean_squared_error",
          "mean_absolute_error", "binary_cross_entropy_logits", "binary_cross_entropy"]


@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.parametrize("shape", [(1, 1), (4, 3), (2, 7)])
def test_loss_gradients_match_finite_differences(name, shape):
    if name == "softmax_cross_entropy_sparse" and shape[1] == 1:
        shape = (shape[0], 2)
    rng = np.random.default_rng(hash((name, shape)) % 2**32)
    pred, target = _loss_inputs(name, rng, shape)
    fn = getattr(ref, name)
    loss, grad = fn(pred, target)
    assert isinstance(loss, float) and grad.shape == pred.shape and grad.dtype == pred.dtype
    np.testing.assert_allclose(grad, numerical_grad(lambda: fn(pred, target)[0], pred), **FD_TOL)
    loss_only, none = fn(pred, target, compute_grad=False)
    assert none is None and loss_only == loss
    buf = np.full_like(pred, np.nan)
    loss_buf, g_buf = fn(pred, target, grad=buf)
    assert g_buf is buf and loss_buf == loss
    np.testing.assert_array_equal(buf, grad)


def test_loss_values_match_independent_formulas():
    rng = np.random.default_rng(5)
    logits = rng.standard_normal((5, 4))
    labels = np.array([0, 3, 1, 1, 2], dtype=np.uint8)
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    loss, grad = ref.softmax_cross_entropy_sparse(logits, labels)
    assert loss == pytest.approx(-np.mean(np.log(probs[np.arange(5), labels])), rel=1e-13)
    np.testing.assert_allclose(grad, (probs - np.eye(4)[labels]) / 5, rtol=1e-12, atol=1e-15)
    loss_2d, _ = ref.softmax_cross_entropy_sparse(logits, labels.reshape(5, 1).astype(np.int64))
    assert loss_2d == loss
    one_hot_loss, one_hot_grad = ref.softmax_cross_entropy(logits, np.eye(4)[labels])
    assert one_hot_loss == pytest.approx(loss, rel=1e-13)
    np.testing.assert_allclose(one_hot_grad, grad, rtol=1e-12, atol=1e-15)

    p, t = rng.random((3, 4)), rng.random((3, 4))
    assert ref.mean_squared_error(p, t)[0] == pytest.approx(np.mean((p - t) ** 2), rel=1e-13)
    assert ref.mean_absolute_error(p, t)[0] == pytest.approx(np.mean(np.abs(p - t)), rel=1e-13)
    bce = -np.mean(t * np.log(p) + (1 - t) * np.log(1 - p))
    assert ref.binary_cross_entropy(p, t)[0] == pytest.approx(bce, rel=1e-12)
    x = rng.standard_normal((3, 4))
    s = 1 / (1 + np.exp(-x))
    bce_logits = -np.mean(t * np.log(s) + (1 - t) * np.log(1 - s))
    assert ref.binary_cross_entropy_logits(x, t)[0] == pytest.approx(bce_logits, rel=1e-12)
    # 1-D inputs: one sample, the mean over its last axis
    assert ref.mean_squared_error(p[0], t[0])[0] == pytest.approx(np.mean((p[0] - t[0]) ** 2))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_losses_stable_for_huge_logits(dtype):
    logits = np.array([[1000, -1000, 0], [-1000, 1000, 999]], dtype)
    labels = np.array([1, 2])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        loss, grad = ref.softmax_cross_entropy_sparse(logits, labels)
        assert loss == pytest.approx((2000 + 1 + math.log1p(math.exp(-1))) / 2, rel=1e-6)
        assert np.all(np.isfinite(grad)) and grad.dtype == dtype
        loss, grad = ref.softmax_cross_entropy(logits, np.eye(3, dtype=dtype)[labels])
        assert np.isfinite(loss) and np.all(np.isfinite(grad))
        x = np.array([[1000, -1000], [-1000, 1000]], dtype)
        t = np.array([[0, 1], [1, 0]], dtype)
        loss, grad = ref.binary_cross_entropy_logits(x, t)
        assert loss == pytest.approx(1000.0) and np.all(np.isfinite(grad))
        np.testing.assert_allclose(grad, np.array([[1, -1], [-1, 1]]) / 4)  # sigmoid = 1, 0


def test_bce_gradient_is_zero_where_probability_was_clipped():
    prob = np.array([[0.0, 1e-9, 0.3], [1.0, 0.7, 1 - 1e-9]])
    target = np.array([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]])
    loss, grad = ref.binary_cross_entropy(prob, target)
    assert np.isfinite(loss)
    clipped = np.array([[True, True, False], [True, False, True]])
    assert np.all(grad[clipped] == 0)
    p = prob[~clipped]
    np.testing.assert_allclose(grad[~clipped], (p - target[~clipped]) / (p * (1 - p)) / 6)
    # the loss uses the clipped probability: -log(1e-7) for the first element
    assert loss > -math.log(1e-7) / 6


# ------------------------------------------------------------------------------------------
# Optimizers: two steps against plain Python floats, written out from the Keras 3 equations
# ------------------------------------------------------------------------------------------
P0 = [0.5, -1.0, 2.0]
G1 = [0.1, -0.2, 0.3]
G2 = [-0.4, 0.05, 0.2]


def _state(*values):
    return [np.array(v, dtype=np.float64) for v in values]


@pytest.mark.parametrize("momentum,nesterov,wd", [(0.0, False, 0.0), (0.9, False, 0.0),
                                                  (0.9, True, 0.0), (0.5, False, 0.01)])
def test_sgd_two_steps(momentum, nesterov, wd):
    lr = 0.1
    p, v = list(P0), [0.0] * 3
    for g in (G1, G2):
        for i in range(3):
            p[i] = p[i] - lr * wd * p[i]
            if momentum == 0:
                p[i] = p[i] - lr * g[i]
                continue
            v[i] = momentum * v[i] - lr * g[i]
            p[i] = p[i] + (momentum * v[i] - lr * g[i] if nesterov else v[i])
    param, vel = _state(P0, [0.0] * 3)
    for g in (G1, G2):
        ref.sgd_update(param, np.array(g), vel if momentum else None, lr=lr, momentum=momentum,
                       nesterov=nesterov, weight_decay=wd)
    np.testing.assert_allclose(param, p, rtol=1e-14)
    if momentum:
        np.testing.assert_allclose(vel, v, rtol=1e-14)


@pytest.mark.parametrize("wd", [0.0, 0.004])
def test_adam_two_steps(wd):
    lr, b1, b2, eps = 0.01, 0.9, 0.999, 1e-7
    p, m, v = list(P0), [0.0] * 3, [0.0] * 3
    for t, g in enumerate((G1, G2), start=1):
        for i in range(3):
            p[i] -= lr * wd * p[i]
            m[i] = b1 * m[i] + (1 - b1) * g[i]
            v[i] = b2 * v[i] + (1 - b2) * g[i] ** 2
            p[i] -= lr * math.sqrt(1 - b2**t) / (1 - b1**t) * m[i] / (math.sqrt(v[i]) + eps)
    param, m_arr, v_arr = _state(P0, [0.0] * 3, [0.0] * 3)
    for t, g in enumerate((G1, G2), start=1):
        ref.adam_update(param, np.array(g), m_arr, v_arr, lr=lr, step=t, weight_decay=wd)
    np.testing.assert_allclose(param, p, rtol=1e-13)
    np.testing.assert_allclose(m_arr, m, rtol=1e-13)
    np.testing.assert_allclose(v_arr, v, rtol=1e-13)
    # first Adam step moves every coordinate by about lr (bias-corrected m/sqrt(v) = sign(g))
    first = np.array(P0)
    ref.adam_update(first, np.array(G1), np.zeros(3), np.zeros(3), lr=lr, step=1)
    np.testing.assert_allclose(np.array(P0) - first, lr * np.sign(G1), rtol=1e-4)


@pytest.mark.parametrize("momentum,centered", [(0.0, False), (0.0, True), (0.8, False),
                                               (0.8, True)])
def test_rmsprop_two_steps(momentum, centered):
    lr, rho, eps, wd = 0.01, 0.9, 1e-7, 0.002
    p, vel, mb, ag = list(P0), [0.0] * 3, [0.0] * 3, [0.0] * 3
    for g in (G1, G2):
        for i in range(3):
            p[i] -= lr * wd * p[i]
            vel[i] = rho * vel[i] + (1 - rho) * g[i] ** 2
            if centered:
                ag[i] = rho * ag[i] + (1 - rho) * g[i]
                inc = lr * g[i] / math.sqrt(vel[i] - ag[i] ** 2 + eps)
            else:
                inc = lr * g[i] / math.sqrt(vel[i] + eps)
            if momentum > 0:
                mb[i] = momentum * mb[i] + inc
                p[i] -= mb[i]
            else:
                p[i] -= inc
    param, vel_a, mb_a, ag_a = _state(P0, [0.0] * 3, [0.0] * 3, [0.0] * 3)
    for g in (G1, G2):
        ref.rmsprop_update(param, np.array(g), vel_a, lr=lr, rho=rho, momentum=momentum,
                           momentum_buf=mb_a if momentum else None, centered=centered,
                           average_grad=ag_a if centered else None, weight_decay=wd)
    np.testing.assert_allclose(param, p, rtol=1e-13)
    np.testing.assert_allclose(vel_a, vel, rtol=1e-13)
    if momentum:
        np.testing.assert_allclose(mb_a, mb, rtol=1e-13)
    if centered:
        np.testing.assert_allclose(ag_a, ag, rtol=1e-13)


def test_adagrad_two_steps():
    lr, eps = 0.1, 1e-7
    p, acc = list(P0), [0.1] * 3  # Keras' initial_accumulator_value
    for g in (G1, G2):
        for i in range(3):
            acc[i] += g[i] ** 2
            p[i] -= lr * g[i] / math.sqrt(acc[i] + eps)
    param, acc_a = _state(P0, [0.1] * 3)
    for g in (G1, G2):
        ref.adagrad_update(param, np.array(g), acc_a, lr=lr)
    np.testing.assert_allclose(param, p, rtol=1e-14)
    np.testing.assert_allclose(acc_a, acc, rtol=1e-14)


def test_optimizers_keep_float32_and_update_in_place():
    param = np.array(P0, np.float32)
    grad = np.array(G1, np.float32)
    m, v = np.zeros(3, np.float32), np.zeros(3, np.float32)
    before = param.copy()
    ref.adam_update(param, grad, m, v, lr=0.1, step=1)
    assert param.dtype == m.dtype == v.dtype == np.float32
    assert not np.array_equal(param, before) and m.any() and v.any()


def test_sum_of_squares():
    x = np.arange(-3, 9, dtype=np.float32).reshape(3, 4)
    value = ref.sum_of_squares(x)
    assert isinstance(value, float) and value == float(np.sum(np.arange(-3, 9) ** 2))


def test_threads_and_build_info():
    previous = ref.get_num_threads()
    assert isinstance(previous, int) and previous >= 1
    try:
        ref.set_num_threads(3)
        assert ref.get_num_threads() == 3
        assert ref.build_info()["num_threads"] == 3
        with pytest.raises(ValueError, match=">= 1"):
            ref.set_num_threads(0)
        with pytest.raises(TypeError, match="integer"):
            ref.set_num_threads(2.0)
        with pytest.raises(TypeError, match="integer"):
            ref.set_num_threads(True)
    finally:
        ref.set_num_threads(previous)
    info = ref.build_info()
    assert info["backend"] == "numpy" and info["openmp"] is False and info["kernel"] == "numpy"


# ------------------------------------------------------------------------------------------
# Validation
# ------------------------------------------------------------------------------------------
F = np.ones((4, 3))
I = np.ones((4, 3), dtype=np.int64)


@pytest.mark.parametrize("call", [
    lambda: ref.gemm(I, F.T),
    lambda: ref.gemm(F, F.T.astype(np.float32)),
    lambda: ref.activation_forward(I, "relu"),
    lambda: ref.activation_forward([1.0, 2.0], "relu"),
    lambda: ref.activation_backward(F, I, F, "relu"),
    lambda: ref.dense_forward(I, np.ones((3, 2)), None),
    lambda: ref.dense_forward(F, np.ones((3, 2), np.float32), None),
    lambda: ref.mean_squared_error(I, F),
    lambda: ref.mean_squared_error(F, I),
    lambda: ref.softmax_cross_entropy_sparse(F, np.zeros(4, np.float64) + 0.5),
    lambda: ref.softmax_cross_entropy_sparse(I, np.zeros(4, np.int64)),
    lambda: ref.sgd_update(I, I, None, lr=0.1),
    lambda: ref.adam_update(F.copy(), F, F.copy(), I, lr=0.1, step=1),
    lambda: ref.adam_update(F.copy(), F, F.copy(), F.copy(), lr=0.1, step=1.5),
    lambda: ref.sum_of_squares(I),
    lambda: ref.activation_forward(F, 3),
], ids=lambda _: "")
def test_wrong_types_raise_type_error(call):
    with pytest.raises(TypeError):
        call()


@pytest.mark.parametrize("call,pattern", [
    (lambda: ref.gemm(F, F), r"\(4, 3\).*\(4, 3\)"),
    (lambda: ref.dense_forward(F, np.ones((5, 2)), None), r"\(4, 3\).*\(5, 2\)"),
    (lambda: ref.dense_forward(F, np.ones((3, 2)), np.ones(3)), r"b has shape \(3,\)"),
    (lambda: ref.dense_backward(F, np.ones((3, 2)), F, F, F), r"z has shape \(4, 3\)"),
    (lambda: ref.activation_backward(F, np.ones((4, 2)), F, "relu"), r"\(4, 2\).*\(4, 3\)"),
    (lambda: ref.mean_squared_error(F, np.ones((3, 4))), r"\(4, 3\).*\(3, 4\)"),
    (lambda: ref.softmax_cross_entropy(F, np.ones((4, 2))), r"\(4, 3\).*\(4, 2\)"),
    (lambda: ref.softmax_cross_entropy_sparse(F, np.zeros(5, np.int64)), r"\(4,\).*\(5,\)"),
    (lambda: ref.sgd_update(F.copy(), np.ones(3), None, lr=0.1), r"\(3,\).*\(4, 3\)"),
], ids=lambda _: "")
def test_mismatched_shapes_raise_value_error_naming_them(call, pattern):
    with pytest.raises(ValueError, match=pattern):
        call()


@pytest.mark.parametrize("bad", [3, -1])
def test_labels_out_of_range(bad):
    labels = np.array([0, 1, bad, 2])
    with pytest.raises(ValueError, match=rf"{bad}.*\[0, 3\)"):
        ref.softmax_cross_entropy_sparse(F, labels)


def test_unknown_activation():
    with pytest.raises(ValueError, match="unknown activation 'swish'"):
        ref.activation_forward(F, "swish")
    with pytest.raises(ValueError, match="unknown activation"):
        ref.activation_backward(F, F, F, "swish")
    with pytest.raises(ValueError, match="unknown activation"):
        ref.dense_forward(F, np.ones((3, 2)), None, "swish")


@pytest.mark.parametrize("call", [
    lambda e: ref.activation_forward(e, "relu"),
    lambda e: ref.activation_forward(np.ones(()), "softmax"),
    lambda e: ref.dense_forward(e, np.ones((0, 2)), None),
    lambda e: ref.mean_squared_error(e, e),
    lambda e: ref.binary_cross_entropy(e, e),
    lambda e: ref.softmax_cross_entropy_sparse(e, np.zeros(0, np.int64)),
    lambda e: ref.sgd_update(e, e, None, lr=0.1),
    lambda e: ref.sum_of_squares(e),
], ids=lambda _: "")
def test_empty_arrays_raise_value_error(call):
    with pytest.raises(ValueError, match="empty|dimension"):
        call(np.ones((0, 3)))


@pytest.mark.parametrize("call", [
    lambda: ref.gemm(F, F.T, out=np.empty((3, 3))),
    lambda: ref.activation_forward(F, "relu", out=np.empty((3, 4))),
    lambda: ref.activation_backward(F, F, F, "relu", out=np.empty(12)),
    lambda: ref.dense_forward(F, np.ones((3, 2)), None, out=np.empty((4, 3))),
    lambda: ref.dense_forward(F, np.ones((3, 2)), None, z_out=np.empty((2, 4))),
    lambda: ref.dense_backward(F, np.ones((3, 2)), np.ones((4, 2)), np.ones((4, 2)),
                               np.ones((4, 2)), grad_w=np.empty((2, 3))),
    lambda: ref.dense_backward(F, np.ones((3, 2)), np.ones((4, 2)), np.ones((4, 2)),
                               np.ones((4, 2)), dz_out=np.empty((2, 4))),
    lambda: ref.mean_squared_error(F, F, grad=np.empty((4, 4))),
    lambda: ref.softmax_cross_entropy_sparse(F, np.zeros(4, np.int64), grad=np.empty(4)),
], ids=lambda _: "")
def test_out_of_wrong_shape(call):
    with pytest.raises(ValueError, match="has shape .* expected"):
        call()


def test_other_bad_arguments():
    with pytest.raises(TypeError, match="out has dtype float32"):
        ref.activation_forward(F, "relu", out=np.empty((4, 3), np.float32))
    with pytest.raises(ValueError, match="C-contiguous"):
        ref.activation_forward(np.ones((3, 4)).T, "relu")
    with pytest.raises(ValueError, match="velocity is required when momentum"):
        ref.sgd_update(F.copy(), F, None, lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match="momentum_buf is required"):
        ref.rmsprop_update(F.copy(), F, F.copy(), lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match="average_grad is required"):
        ref.rmsprop_update(F.copy(), F, F.copy(), lr=0.1, centered=True)
    with pytest.raises(ValueError, match="step must be >= 1"):
        ref.adam_update(F.copy(), F, F.copy(), F.copy(), lr=0.1, step=0)
    with pytest.raises(ValueError, match="finite"):
        ref.gemm(F, F.T, alpha=float("nan"))
    with pytest.raises(ValueError, match="share memory"):
        out = np.empty((4, 4))
        ref.gemm(out, out, out=out)
