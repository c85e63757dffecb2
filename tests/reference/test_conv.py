"""The NumPy reference of 2-D convolution and pooling (pynn.reference.conv): finite
differences, a direct loop over the equation, PyTorch, hand-computed pooling cases (ties, NaN,
-inf, overlapping windows, the average's count of real pixels) and its validation errors."""
import math

import numpy as np
import pytest

import pynn.reference as ref
from finite_differences import numerical_grad

FD_EPS = 1e-6
FD_TOL = dict(rtol=1e-6, atol=1e-8)
TORCH_TOL = dict(rtol=1e-12, atol=1e-12)


def same_pads(size, window, stride, padding):
    """(out, before, after) along one axis, written out from TensorFlow's rules."""
    if padding == "valid":
        return (size - window) // stride + 1, 0, 0
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + window - size, 0)
    return out, total // 2, total - total // 2


def naive_conv(x, w, b, strides, padding):
    """z of the module docstring, one output pixel and one kernel offset at a time."""
    n, h, wd, _ = x.shape
    kh, kw, _, filters = w.shape
    oh, top, _ = same_pads(h, kh, strides[0], padding)
    ow, left, _ = same_pads(wd, kw, strides[1], padding)
    z = np.zeros((n, oh, ow, filters))
    for p in range(oh):
        for q in range(ow):
            for i in range(kh):
                for j in range(kw):
                    r, s = p * strides[0] + i - top, q * strides[1] + j - left
                    if 0 <= r < h and 0 <= s < wd:  # outside: a zero of the padding
                        z[:, p, q, :] += x[:, r, s, :] @ w[i, j]
    return z if b is None else z + b


# (batch, height, width, in_channels, filters, kernel, strides, padding)
CONV_CASES = [
    (2, 4, 5, 3, 2, (1, 1), (1, 1), "valid"),   # 1x1 kernel
    (1, 4, 4, 2, 3, (1, 1), (2, 2), "same"),    # 1x1 kernel, stride 2
    (2, 5, 6, 2, 3, (3, 3), (1, 1), "valid"),
    (2, 5, 4, 2, 2, (3, 3), (1, 1), "same"),
    (1, 8, 7, 2, 2, (5, 5), (2, 2), "same"),    # pads 1 top / 2 bottom, 1 left / 1 right
    (2, 6, 5, 2, 3, (3, 2), (2, 1), "same"),    # non-square kernel and strides
    (2, 6, 5, 2, 3, (3, 2), (2, 1), "valid"),
    (1, 7, 8, 2, 2, (2, 2), (3, 3), "valid"),   # stride larger than the kernel: pixels skipped
    (1, 7, 8, 1, 2, (2, 3), (3, 4), "same"),
    (1, 4, 4, 2, 2, (4, 2), (1, 1), "same"),    # even kernel: pads 1 top / 2 bottom
    (1, 3, 2, 2, 2, (5, 4), (1, 1), "same"),    # kernel larger than the image
    (1, 3, 3, 2, 1, (3, 3), (1, 1), "valid"),   # a single output pixel
]
CONV_IDS = [f"{c[1]}x{c[2]}x{c[3]}-k{c[5][0]}{c[5][1]}-s{c[6][0]}{c[6][1]}-{c[7]}"
            for c in CONV_CASES]


def conv_inputs(rng, case, with_bias=True):
    batch, h, wd, c, filters, kernel, _, _ = case
    x = rng.standard_normal((batch, h, wd, c))
    w = rng.standard_normal((*kernel, c, filters)) / math.sqrt(kernel[0] * kernel[1] * c)
    b = rng.standard_normal(filters) if with_bias else None
    return x, w, b


@pytest.mark.parametrize("case", CONV_CASES, ids=CONV_IDS)
def test_conv_forward_matches_direct_loops_and_tf_output_size(case):
    *_, strides, padding = case
    rng = np.random.default_rng(1)
    x, w, b = conv_inputs(rng, case)
    for bias in (b, None):
        z = np.full(naive_conv(x, w, bias, strides, padding).shape, np.nan)
        a = ref.conv2d_forward(x, w, bias, strides=strides, padding=padding, z_out=z)
        want = naive_conv(x, w, bias, strides, padding)
        assert a.shape == want.shape
        np.testing.assert_allclose(z, want, rtol=1e-13, atol=1e-13)
        np.testing.assert_array_equal(a, z)
    # the output size is Keras': ceil(in / stride) for same, floor((in - k) / s) + 1 for valid
    h, wd, kernel = case[1], case[2], case[5]
    if padding == "same":
        assert a.shape[1:3] == (math.ceil(h / strides[0]), math.ceil(wd / strides[1]))
    else:
        assert a.shape[1:3] == ((h - kernel[0]) // strides[0] + 1,
                                (wd - kernel[1]) // strides[1] + 1)


def _check_conv_backward_fd(case, activation, rng, with_bias=True, margin=None):
    *_, strides, padding = case
    kw = dict(strides=strides, padding=padding, activation=activation)
    for _ in range(50):  # relu: draw until every z is away from the kink
        x, w, b = conv_inputs(rng, case, with_bias)
        z = np.full(naive_conv(x, w, b, strides, padding).shape, np.nan)
        a = ref.conv2d_forward(x, w, b, z_out=z, **kw)
        if margin is None or np.min(np.abs(z)) > margin:
            break
    else:
        pytest.fail("could not draw inputs away from the kink")
    upstream = rng.standard_normal(a.shape)
    grad_w, grad_b, grad_x = ref.conv2d_backward(x, w, z, a, upstream, **kw)
    assert grad_w.shape == w.shape and grad_x.shape == x.shape and grad_b.shape == (w.shape[3],)

    def loss():
        return float(np.sum(upstream * ref.conv2d_forward(x, w, b, **kw)))

    np.testing.assert_allclose(grad_x, numerical_grad(loss, x), **FD_TOL)
    np.testing.assert_allclose(grad_w, numerical_grad(loss, w), **FD_TOL)
    if b is not None:
        np.testing.assert_allclose(grad_b, numerical_grad(loss, b), **FD_TOL)
    else:  # grad_b is still the sum of dz over the pixels
        np.testing.assert_allclose(grad_b, np.sum(ref.activation_backward(
            upstream, z, a, activation), axis=(0, 1, 2)), rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("case", CONV_CASES, ids=CONV_IDS)
def test_conv_backward_matches_finite_differences(case):
    _check_conv_backward_fd(case, "identity", np.random.default_rng(2))


@pytest.mark.parametrize("activation,margin", [("relu", 1e-3), ("tanh", None),
                                               ("softmax", None), ("log_softmax", None),
                                               ("elu", 1e-3), ("gelu", None)])
@pytest.mark.parametrize("case", [CONV_CASES[4], CONV_CASES[5], CONV_CASES[8]],
                         ids=[CONV_IDS[4], CONV_IDS[5], CONV_IDS[8]])
def test_conv_backward_with_activation_matches_finite_differences(case, activation, margin):
    _check_conv_backward_fd(case, activation, np.random.default_rng(3), margin=margin)


def test_conv_backward_without_bias_matches_finite_differences():
    _check_conv_backward_fd(CONV_CASES[3], "tanh", np.random.default_rng(4), with_bias=False)


# (batch, height, width, channels, pool_size, strides, padding)
POOL_CASES = [
    (2, 4, 4, 2, (2, 2), None, "valid"),
    (1, 5, 5, 2, (2, 2), None, "valid"),        # the last row and column are never read
    (1, 5, 5, 2, (2, 2), None, "same"),         # pads 0 top / 1 bottom
    (2, 6, 6, 1, (3, 3), (2, 2), "same"),       # overlapping, asymmetric padding
    (1, 7, 7, 2, (3, 3), (2, 2), "same"),       # overlapping, 1 / 1 padding
    (1, 5, 8, 2, (2, 3), (1, 2), "valid"),      # non-square
    (1, 6, 7, 2, (3, 2), (2, 1), "same"),
    (1, 9, 8, 1, (2, 2), (3, 3), "valid"),      # stride larger than the pool
    (1, 3, 3, 2, (4, 4), (1, 1), "same"),       # pool larger than the image: pads 1 / 2
]
POOL_IDS = [f"{c[1]}x{c[2]}-p{c[4][0]}{c[4][1]}-s{'' if c[5] is None else '%d%d' % c[5]}-{c[6]}"
            for c in POOL_CASES]


def distinct_values(rng, shape, spacing=0.01):
    """Values at least ``spacing`` apart (no ties: a max's argmax survives eps perturbations)."""
    return rng.permutation(np.prod(shape)).reshape(shape) * spacing - np.prod(shape) * spacing / 2


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("case", POOL_CASES, ids=POOL_IDS)
def test_pool_backward_matches_finite_differences(case, kind):
    batch, h, wd, c, pool, strides, padding = case
    rng = np.random.default_rng(5)
    forward = getattr(ref, f"{kind}_pool2d_forward")
    backward = getattr(ref, f"{kind}_pool2d_backward")
    kw = dict(pool_size=pool, strides=strides, padding=padding)
    x = distinct_values(rng, (batch, h, wd, c)) if kind == "max" else rng.standard_normal(
        (batch, h, wd, c))
    out = forward(x, **kw)
    upstream = rng.standard_normal(out.shape)
    grad_x = backward(x, upstream, **kw)
    num = numerical_grad(lambda: float(np.sum(upstream * forward(x, **kw))), x)
    np.testing.assert_allclose(grad_x, num, **FD_TOL)
    # every window's gradient lands somewhere in x, never in the padding
    np.testing.assert_allclose(grad_x.sum(axis=(1, 2)), upstream.sum(axis=(1, 2)),
                               rtol=1e-12, atol=1e-12)


def naive_pool(x, kind, pool, strides, padding):
    """Max / mean over the real pixels of each window, one window at a time."""
    strides = pool if strides is None else strides
    n, h, wd, c = x.shape
    oh, top, _ = same_pads(h, pool[0], strides[0], padding)
    ow, left, _ = same_pads(wd, pool[1], strides[1], padding)
    out = np.empty((n, oh, ow, c))
    for p in range(oh):
        for q in range(ow):
            r0, s0 = p * strides[0] - top, q * strides[1] - left
            win = x[:, max(r0, 0):r0 + pool[0], max(s0, 0):s0 + pool[1], :]
            out[:, p, q, :] = win.max(axis=(1, 2)) if kind == "max" else win.mean(axis=(1, 2))
    return out


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("case", POOL_CASES, ids=POOL_IDS)
def test_pool_forward_matches_direct_loops(case, kind):
    batch, h, wd, c, pool, strides, padding = case
    x = np.random.default_rng(6).standard_normal((batch, h, wd, c))
    got = getattr(ref, f"{kind}_pool2d_forward")(x, pool_size=pool, strides=strides,
                                                 padding=padding)
    np.testing.assert_allclose(got, naive_pool(x, kind, pool, strides, padding), rtol=1e-14,
                               atol=1e-15)


# ------------------------------------------------------------------------------------------
# PyTorch: 'same' emulated with F.pad (left/top = total // 2, right/bottom the rest)
# ------------------------------------------------------------------------------------------
def _torch_pad(torch, x_nchw, window, strides, padding, value):
    _, _, h, wd = x_nchw.shape
    _, top, bottom = same_pads(h, window[0], strides[0], padding)
    _, left, right = same_pads(wd, window[1], strides[1], padding)
    return torch.nn.functional.pad(x_nchw, (left, right, top, bottom), value=value)


TORCH_ACTIVATIONS = {
    "identity": lambda F, t: t, "relu": lambda F, t: F.relu(t), "tanh": lambda F, t: t.tanh(),
    "sigmoid": lambda F, t: t.sigmoid(), "elu": lambda F, t: F.elu(t),
    "leaky_relu": lambda F, t: F.leaky_relu(t, 0.2), "softplus": lambda F, t: F.softplus(t),
    "gelu": lambda F, t: F.gelu(t), "softmax": lambda F, t: F.softmax(t, -1),
    "log_softmax": lambda F, t: F.log_softmax(t, -1),
}


@pytest.mark.parametrize("activation", ["identity", "relu", "tanh", "softmax", "gelu"])
@pytest.mark.parametrize("case", CONV_CASES, ids=CONV_IDS)
def test_conv_matches_torch(case, activation):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    *_, strides, padding = case
    rng = np.random.default_rng(7)
    x, w, b = conv_inputs(rng, case)
    kw = dict(strides=strides, padding=padding, activation=activation)
    z = np.empty(naive_conv(x, w, b, strides, padding).shape)
    a = ref.conv2d_forward(x, w, b, z_out=z, **kw)
    upstream = rng.standard_normal(a.shape)
    grad_w, grad_b, grad_x = ref.conv2d_backward(x, w, z, a, upstream, **kw)

    tx = torch.from_numpy(x.transpose(0, 3, 1, 2).copy()).requires_grad_()
    tw = torch.from_numpy(w.transpose(3, 2, 0, 1).copy()).requires_grad_()  # (f, c, kh, kw)
    tb = torch.from_numpy(b.copy()).requires_grad_()
    tz = F.conv2d(_torch_pad(torch, tx, w.shape[:2], strides, padding, 0.0), tw, tb,
                  stride=strides).permute(0, 2, 3, 1)
    ta = TORCH_ACTIVATIONS[activation](F, tz)
    (ta * torch.from_numpy(upstream)).sum().backward()
    np.testing.assert_allclose(z, tz.detach().numpy(), **TORCH_TOL)
    np.testing.assert_allclose(a, ta.detach().numpy(), **TORCH_TOL)
    np.testing.assert_allclose(grad_x, tx.grad.numpy().transpose(0, 2, 3, 1), **TORCH_TOL)
    np.testing.assert_allclose(grad_w, tw.grad.numpy().transpose(2, 3, 1, 0), **TORCH_TOL)
    np.testing.assert_allclose(grad_b, tb.grad.numpy(), **TORCH_TOL)


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("case", POOL_CASES, ids=POOL_IDS)
def test_pool_matches_torch(case, kind):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    batch, h, wd, c, pool, strides, padding = case
    rng = np.random.default_rng(8)
    x = rng.standard_normal((batch, h, wd, c))
    kw = dict(pool_size=pool, strides=strides, padding=padding)
    out = getattr(ref, f"{kind}_pool2d_forward")(x, **kw)
    upstream = rng.standard_normal(out.shape)
    grad_x = getattr(ref, f"{kind}_pool2d_backward")(x, upstream, **kw)

    stride = pool if strides is None else strides
    tx = torch.from_numpy(x.transpose(0, 3, 1, 2).copy()).requires_grad_()
    if kind == "max":
        tout = F.max_pool2d(_torch_pad(torch, tx, pool, stride, padding, -math.inf), pool,
                            stride)
    else:  # sum over the window / count of real pixels (count_include_pad=False, any padding)
        area = pool[0] * pool[1]
        total = F.avg_pool2d(_torch_pad(torch, tx, pool, stride, padding, 0.0), pool,
                             stride) * area
        ones = torch.ones((1, 1, h, wd), dtype=torch.float64)
        count = F.avg_pool2d(_torch_pad(torch, ones, pool, stride, padding, 0.0), pool,
                             stride) * area
        tout = total / count
    tout = tout.permute(0, 2, 3, 1)
    (tout * torch.from_numpy(upstream)).sum().backward()
    np.testing.assert_allclose(out, tout.detach().numpy(), **TORCH_TOL)
    np.testing.assert_allclose(grad_x, tx.grad.numpy().transpose(0, 2, 3, 1), **TORCH_TOL)


# ------------------------------------------------------------------------------------------
# Pooling rules, hand-computed
# ------------------------------------------------------------------------------------------
def img(rows):
    """One (1, h, w, 1) float64 image from a list of rows."""
    return np.array(rows, dtype=np.float64)[None, :, :, None]


def test_max_and_avg_pool_small_cases():
    x = img(np.arange(16.0).reshape(4, 4))
    np.testing.assert_array_equal(ref.max_pool2d_forward(x), img([[5, 7], [13, 15]]))
    np.testing.assert_array_equal(ref.avg_pool2d_forward(x), img([[2.5, 4.5], [10.5, 12.5]]))
    g = img([[1, 2], [3, 4]])
    np.testing.assert_array_equal(ref.max_pool2d_backward(x, g), img(
        [[0, 0, 0, 0], [0, 1, 0, 2], [0, 0, 0, 0], [0, 3, 0, 4]]))
    np.testing.assert_array_equal(ref.avg_pool2d_backward(x, g), img(
        [[.25, .25, .5, .5], [.25, .25, .5, .5], [.75, .75, 1, 1], [.75, .75, 1, 1]]))


def test_avg_pool_same_divides_by_the_count_of_real_pixels():
    x = img(np.arange(9.0).reshape(3, 3))  # 2x2 windows, stride 2: padding 0 before, 1 after
    out = ref.avg_pool2d_forward(x, padding="same")
    np.testing.assert_array_equal(out, img([[(0 + 1 + 3 + 4) / 4, (2 + 5) / 2],
                                            [(6 + 7) / 2, 8]]))
    grad = ref.avg_pool2d_backward(x, np.ones_like(out), padding="same")
    np.testing.assert_array_equal(grad, img([[.25, .25, .5], [.25, .25, .5], [.5, .5, 1]]))
    # 3x3 windows, stride 1, 1 pixel of padding all round: corners average 4 pixels, edges 6
    out = ref.avg_pool2d_forward(x, pool_size=3, strides=1, padding="same")
    np.testing.assert_allclose(out, img([[2, 2.5, 3], [3.5, 4, 4.5], [5, 5.5, 6]]), rtol=1e-15)


def test_max_pool_same_ignores_padding_for_negative_inputs():
    x = img(-1 - np.arange(9.0).reshape(3, 3))  # all negative: a zero padding would win
    out = ref.max_pool2d_forward(x, pool_size=3, strides=1, padding="same")
    np.testing.assert_array_equal(out, img([[-1, -1, -2], [-1, -1, -2], [-4, -4, -5]]))


def test_max_pool_ties_go_to_the_first_in_row_major_order():
    x = img([[1, 1], [1, 1]])
    np.testing.assert_array_equal(ref.max_pool2d_backward(x, img([[3.0]])), img([[3, 0], [0, 0]]))
    x = img([[0, 7], [7, 7]])
    np.testing.assert_array_equal(ref.max_pool2d_backward(x, img([[3.0]])), img([[0, 3], [0, 0]]))
    x = img([[0, 2], [5, 5]])  # the tie is between the last two: the first of them wins
    np.testing.assert_array_equal(ref.max_pool2d_backward(x, img([[3.0]])), img([[0, 0], [3, 0]]))
    # channels are independent: each has its own first max
    x2 = np.stack([img([[4, 4], [4, 4]])[..., 0], img([[1, 4], [4, 4]])[..., 0],
                   img([[1, 2], [3, 3]])[..., 0]], axis=-1)
    grad = ref.max_pool2d_backward(x2, np.array([1.0, 2.0, 3.0]).reshape(1, 1, 1, 3))
    np.testing.assert_array_equal(grad[0, :, :, 0], [[1, 0], [0, 0]])
    np.testing.assert_array_equal(grad[0, :, :, 1], [[0, 2], [0, 0]])
    np.testing.assert_array_equal(grad[0, :, :, 2], [[0, 0], [3, 0]])


def test_max_pool_nan_is_the_max_and_the_first_nan_gets_the_gradient():
    nan = np.nan
    x = img([[1, nan, 9, 2], [nan, 5, 3, 4]])
    out = ref.max_pool2d_forward(x)
    assert np.isnan(out[0, 0, 0, 0]) and out[0, 0, 1, 0] == 9
    grad = ref.max_pool2d_backward(x, img([[2.0, 3.0]]))
    np.testing.assert_array_equal(grad, img([[0, 2, 3, 0], [0, 0, 0, 0]]))
    # a NaN after a larger value still wins, and so does a NaN in the last position
    x = img([[9, 1], [0, nan]])
    assert np.isnan(ref.max_pool2d_forward(x)[0, 0, 0, 0])
    np.testing.assert_array_equal(ref.max_pool2d_backward(x, img([[2.0]])), img([[0, 0], [0, 2]]))
    # overlapping windows: only the windows that hold the NaN are NaN
    x = img([[1, 2, 3], [4, 5, 6], [7, 8, nan]])
    out = ref.max_pool2d_forward(x, strides=1)
    np.testing.assert_array_equal(np.isnan(out), img([[False, False], [False, True]]) > 0)
    assert out[0, 0, 0, 0] == 5 and out[0, 0, 1, 0] == 6 and out[0, 1, 0, 0] == 8


def test_max_pool_window_of_minus_infinity_routes_to_a_real_pixel():
    inf = np.inf
    # 2x2 windows, stride 2, 'same' on 3x3: the last row / column windows are half padding
    x = img([[1, 2, 3], [4, 5, 6], [-inf, -inf, -inf]])
    out = ref.max_pool2d_forward(x, padding="same")
    np.testing.assert_array_equal(out, img([[5, 6], [-inf, -inf]]))
    grad = ref.max_pool2d_backward(x, img([[1.0, 2.0], [3.0, 4.0]]), padding="same")
    np.testing.assert_array_equal(grad, img([[0, 0, 0], [0, 1, 2], [3, 0, 4]]))
    # 3x3 windows, stride 1, padding before and after: each window's first real pixel
    x = np.full((1, 3, 3, 1), -inf)
    g = img(np.arange(1.0, 10.0).reshape(3, 3))
    grad = ref.max_pool2d_backward(x, g, pool_size=3, strides=1, padding="same")
    np.testing.assert_array_equal(grad, img([[1 + 2 + 4 + 5, 3 + 6, 0], [7 + 8, 9, 0],
                                             [0, 0, 0]]))
    assert grad.sum() == g.sum()


def test_overlapping_windows_add_their_gradients():
    x = img([[1, 2, 3], [4, 100, 6], [7, 8, 9]])
    g = img([[1.0, 2.0], [4.0, 8.0]])
    grad = ref.max_pool2d_backward(x, g, strides=1)  # all four windows pick the centre
    np.testing.assert_array_equal(grad, img([[0, 0, 0], [0, 15, 0], [0, 0, 0]]))
    grad = ref.avg_pool2d_backward(x, g, strides=1)
    np.testing.assert_array_equal(grad, img([[1, 3, 2], [5, 15, 10], [4, 12, 8]]) / 4)
    # a 3x3 kernel of ones at stride 1: dx counts the windows covering each pixel
    w = np.ones((3, 3, 1, 1))
    x = np.zeros((1, 4, 4, 1))
    z = ref.conv2d_forward(x, w, None)
    _, _, grad_x = ref.conv2d_backward(x, w, z, z, np.ones_like(z))
    np.testing.assert_array_equal(grad_x, img([[1, 2, 2, 1], [2, 4, 4, 2], [2, 4, 4, 2],
                                               [1, 2, 2, 1]]))


# ------------------------------------------------------------------------------------------
# Buffers and dtypes
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_buffers_dtype_need_grad_x_and_dz_out(dtype):
    rng = np.random.default_rng(9)
    x = rng.standard_normal((2, 5, 5, 3)).astype(dtype)
    w = rng.standard_normal((3, 3, 3, 4)).astype(dtype)
    b = rng.standard_normal(4).astype(dtype)
    out, z_out = np.full((2, 3, 3, 4), np.nan, dtype), np.full((2, 3, 3, 4), np.nan, dtype)
    assert ref.conv2d_forward(x, w, b, activation="tanh", out=out, z_out=z_out) is out
    assert out.dtype == dtype
    np.testing.assert_allclose(out, np.tanh(z_out), rtol=1e-6)
    g = rng.standard_normal(out.shape).astype(dtype)
    bufs = np.empty(w.shape, dtype), np.empty(4, dtype), np.empty(x.shape, dtype)
    dz = np.full(out.shape, np.nan, dtype)
    res = ref.conv2d_backward(x, w, z_out, out, g, activation="tanh", grad_w=bufs[0],
                              grad_b=bufs[1], grad_x=bufs[2], dz_out=dz)
    assert all(r is buf for r, buf in zip(res, bufs)) and all(r.dtype == dtype for r in res)
    np.testing.assert_array_equal(dz, ref.activation_backward(g, z_out, out, "tanh"))
    gw, gb, none = ref.conv2d_backward(x, w, z_out, out, g, activation="tanh", need_grad_x=False)
    assert none is None
    np.testing.assert_array_equal(gw, bufs[0])
    np.testing.assert_array_equal(gb, bufs[1])
    # dz_out may be grad_out itself
    g_copy = g.copy()
    res2 = ref.conv2d_backward(x, w, z_out, out, g_copy, activation="tanh", dz_out=g_copy)
    np.testing.assert_array_equal(g_copy, dz)
    np.testing.assert_array_equal(res2[2], bufs[2])
    for kind in ("max", "avg"):
        pool_out = np.full((2, 2, 2, 3), np.nan, dtype)
        assert getattr(ref, f"{kind}_pool2d_forward")(x, out=pool_out) is pool_out
        assert pool_out.dtype == dtype and not np.isnan(pool_out).any()
        grad_x = np.full(x.shape, np.nan, dtype)
        assert getattr(ref, f"{kind}_pool2d_backward")(x, pool_out, grad_x=grad_x) is grad_x
        assert not np.isnan(grad_x).any()
        assert np.all(grad_x[:, 4, :, :] == 0) and np.all(grad_x[:, :, 4, :] == 0)  # unread


def test_padding_and_names_are_case_insensitive_and_ints_are_pairs():
    rng = np.random.default_rng(10)
    x = rng.standard_normal((1, 5, 6, 2))
    w = rng.standard_normal((3, 3, 2, 2))
    same = ref.conv2d_forward(x, w, None, strides=2, padding="SAME", activation="ReLU")
    np.testing.assert_array_equal(same, ref.conv2d_forward(x, w, None, strides=(2, 2),
                                                           padding="same", activation="relu"))
    np.testing.assert_array_equal(ref.max_pool2d_forward(x, pool_size=3, strides=np.int64(2)),
                                  ref.max_pool2d_forward(x, pool_size=(3, 3), strides=(2, 2)))
    np.testing.assert_array_equal(ref.conv2d_forward(x, w, None, activation="linear"),
                                  ref.conv2d_forward(x, w, None))


# ------------------------------------------------------------------------------------------
# Validation
# ------------------------------------------------------------------------------------------
X = np.ones((2, 5, 5, 3))
W = np.ones((3, 3, 3, 4))
B = np.ones(4)
Z = np.ones((2, 3, 3, 4))   # conv output, valid
P = np.ones((2, 2, 2, 3))   # 2x2 pool output, valid


def _forward_into_one_buffer():
    buf = np.empty(Z.shape)
    return ref.conv2d_forward(X, W, B, out=buf, z_out=buf)


@pytest.mark.parametrize("call,pattern", [
    (lambda: ref.conv2d_forward(np.ones((5, 5, 3)), W, B), r"x must be 4-D.*\(5, 5, 3\)"),
    (lambda: ref.conv2d_forward(X, np.ones((3, 3, 4)), B), r"w must be 4-D.*\(3, 3, 4\)"),
    (lambda: ref.conv2d_forward(X, np.ones((3, 3, 2, 4)), B), r"3 channels.*expects 2"),
    (lambda: ref.conv2d_forward(X, W, np.ones(3)), r"b has shape \(3,\).*4 filters"),
    (lambda: ref.conv2d_forward(X, W, np.ones((1, 4))), r"b must be 1-D"),
    (lambda: ref.conv2d_forward(X.transpose(0, 2, 1, 3), W, B), r"x must be C-contiguous"),
    (lambda: ref.conv2d_forward(X, W.transpose(1, 0, 2, 3), B), r"w must be C-contiguous"),
    (lambda: ref.conv2d_forward(X, W, B, padding="full"), r"padding must be 'valid' or 'same'"),
    (lambda: ref.conv2d_forward(X, W, B, padding=None), r"padding must be"),
    (lambda: ref.conv2d_forward(X, W, B, strides=0), r"strides must be >= 1"),
    (lambda: ref.conv2d_forward(X, W, B, strides=(1, -2)), r"strides must be >= 1"),
    (lambda: ref.conv2d_forward(np.ones((2, 2, 5, 3)), W, B),
     r"2x5 image is smaller than the 3x3 kernel"),
    (lambda: ref.conv2d_forward(X, np.ones((3, 6, 3, 4)), B),
     r"5x5 image is smaller than the 3x6 kernel"),
    (lambda: ref.conv2d_forward(X, W, B, out=np.empty((2, 5, 5, 4))),
     r"out has shape \(2, 5, 5, 4\), expected \(2, 3, 3, 4\)"),
    (lambda: ref.conv2d_forward(X, W, B, z_out=np.empty((2, 3, 3, 3))), r"z_out has shape"),
    (lambda: ref.conv2d_forward(X, W, B, out=Z.copy()[:, :, :, ::-1]), r"out must be C-contig"),
    (lambda: ref.conv2d_forward(X, W, B, activation="swish"), r"unknown activation 'swish'"),
    (lambda: ref.conv2d_forward(X, W, B, activation="elu", param=math.inf), r"param must be finite"),
    (lambda: _forward_into_one_buffer(), r"z_out must not share memory with out"),
    (lambda: ref.conv2d_backward(X, W, Z, Z, np.ones((2, 5, 5, 4))),
     r"grad_out has shape \(2, 5, 5, 4\), expected \(2, 3, 3, 4\)"),
    (lambda: ref.conv2d_backward(X, W, np.ones((2, 3, 3, 3)), Z, Z), r"z has shape"),
    (lambda: ref.conv2d_backward(X, W, Z, np.ones((2, 3, 3)), Z), r"a must be 4-D"),
    (lambda: ref.conv2d_backward(X, W, Z, Z, Z, strides=2), r"z has shape.*\(2, 2, 2, 4\)"),
    (lambda: ref.conv2d_backward(X, W, Z, Z, Z, grad_w=np.empty((3, 3, 4, 3))), r"grad_w has"),
    (lambda: ref.conv2d_backward(X, W, Z, Z, Z, grad_b=np.empty(3)), r"grad_b has shape"),
    (lambda: ref.conv2d_backward(X, W, Z, Z, Z, grad_x=np.empty((2, 5, 5, 4))), r"grad_x has"),
    (lambda: ref.conv2d_backward(X, W, Z, Z, Z, dz_out=np.empty((2, 3, 3, 3))), r"dz_out has"),
    (lambda: ref.conv2d_backward(X, W, Z, Z, np.ones((2, 3, 3, 4, 1))[..., 0].transpose(
        0, 2, 1, 3)), r"grad_out must be C-contiguous"),
    (lambda: ref.conv2d_backward(X, W, Z, Z, Z, activation="nope"), r"unknown activation"),
    (lambda: ref.max_pool2d_forward(np.ones((5, 5, 3))), r"x must be 4-D"),
    (lambda: ref.max_pool2d_forward(X, padding="full"), r"padding must be"),
    (lambda: ref.avg_pool2d_forward(X, pool_size=0), r"pool_size must be >= 1"),
    (lambda: ref.avg_pool2d_forward(X, pool_size=2, strides=(0, 1)), r"strides must be >= 1"),
    (lambda: ref.max_pool2d_forward(X, pool_size=(6, 2)),
     r"5x5 image is smaller than the 6x2 pool window"),
    (lambda: ref.avg_pool2d_forward(X[:, ::2]), r"x must be C-contiguous"),
    (lambda: ref.max_pool2d_forward(X, out=np.empty((2, 3, 3, 3))),
     r"out has shape \(2, 3, 3, 3\), expected \(2, 2, 2, 3\)"),
    (lambda: ref.max_pool2d_backward(X, np.ones((2, 3, 3, 3))),
     r"grad_out has shape \(2, 3, 3, 3\), expected \(2, 2, 2, 3\)"),
    (lambda: ref.avg_pool2d_backward(X, np.ones((2, 2, 2, 3)), padding="same"),
     r"grad_out has shape .* expected \(2, 3, 3, 3\)"),
    (lambda: ref.max_pool2d_backward(X, P, grad_x=np.empty((2, 5, 5, 2))), r"grad_x has shape"),
    (lambda: ref.avg_pool2d_backward(X, np.ones((2, 2, 2))), r"grad_out must be 4-D"),
    (lambda: ref.max_pool2d_forward(np.ones((0, 5, 5, 3))), r"x is empty"),
    (lambda: ref.conv2d_forward(np.ones((2, 5, 5, 0)), np.ones((3, 3, 0, 4)), B), r"x is empty"),
], ids=lambda _: "")
def test_bad_values_raise_value_error_naming_the_problem(call, pattern):
    with pytest.raises(ValueError, match=pattern):
        call()


def test_out_sharing_memory_with_x_is_refused_like_dense():
    x = np.ones((1, 4, 4, 3))
    with pytest.raises(ValueError, match="share memory with x"):
        ref.dense_forward(x[0, 0], np.ones((3, 3)), None, out=x[0, 0])  # dense refuses it
    with pytest.raises(ValueError, match="share memory with x"):
        ref.conv2d_forward(x, np.ones((3, 3, 3, 3)), None, padding="same", out=x)


F32 = np.float32


@pytest.mark.parametrize("call,pattern", [
    (lambda: ref.conv2d_forward(X, W.astype(F32), B), r"w has dtype float32.*float64"),
    (lambda: ref.conv2d_forward(X.astype(F32), W, B), r"w has dtype float64.*float32"),
    (lambda: ref.conv2d_forward(X, W, B.astype(F32)), r"b has dtype float32"),
    (lambda: ref.conv2d_forward(X.astype(np.int64), W, B), r"x must be float32 or float64"),
    (lambda: ref.conv2d_forward(X.tolist(), W, B), r"x must be a numpy.ndarray"),
    (lambda: ref.conv2d_forward(X, W, B, out=np.empty((2, 3, 3, 4), F32)),
     r"out has dtype float32, expected float64"),
    (lambda: ref.conv2d_forward(X, W, B, strides=True), r"strides must be an int or a pair"),
    (lambda: ref.conv2d_forward(X, W, B, strides=(1, False)), r"strides must be an int or a pair"),
    (lambda: ref.conv2d_forward(X, W, B, strides=(1, 1, 1)), r"strides must be an int or a pair"),
    (lambda: ref.conv2d_forward(X, W, B, strides=1.0), r"strides must be an int or a pair"),
    (lambda: ref.conv2d_forward(X, W, B, strides=(2.0, 2)), r"strides must be an int or a pair"),
    (lambda: ref.conv2d_forward(X, W, B, activation=None), r"activation must be a string"),
    (lambda: ref.conv2d_backward(X, W, Z, Z, Z.astype(F32)), r"grad_out has dtype float32"),
    (lambda: ref.conv2d_backward(X, W, Z.astype(F32), Z, Z), r"z has dtype float32"),
    (lambda: ref.conv2d_backward(X, W, Z, Z, Z, grad_x=np.empty(X.shape, F32)),
     r"grad_x has dtype float32"),
    (lambda: ref.max_pool2d_forward(X.astype(np.int32)), r"x must be float32 or float64"),
    (lambda: ref.max_pool2d_forward(X, pool_size=(2, 2, 2)), r"pool_size must be an int or a"),
    (lambda: ref.avg_pool2d_forward(X, pool_size=True), r"pool_size must be an int or a pair"),
    (lambda: ref.avg_pool2d_forward(X, strides=(1, 2, 1)), r"strides must be an int or a pair"),
    (lambda: ref.max_pool2d_backward(X, P.astype(F32)), r"grad_out has dtype float32"),
    (lambda: ref.avg_pool2d_backward(X.astype(F32), P), r"grad_out has dtype float64"),
    (lambda: ref.avg_pool2d_backward(X, P, grad_x=np.empty(X.shape, F32)),
     r"grad_x has dtype float32"),
], ids=lambda _: "")
def test_bad_types_raise_type_error_naming_the_problem(call, pattern):
    with pytest.raises(TypeError, match=pattern):
        call()
