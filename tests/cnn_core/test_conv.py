"""Compiled conv2d and max/average pooling against the NumPy reference, finite differences,
NaN / tie / -inf rules, buffers, thread-count determinism and validation."""
import math

import numpy as np
import pytest

import cnn_core
import cnn_core._gemm
import pynn.reference as ref
from finite_differences import numerical_grad

ACTIVATIONS = [("identity", None), ("linear", None), ("relu", None), ("leaky_relu", None),
               ("leaky_relu", 0.1), ("elu", None), ("elu", 0.5), ("sigmoid", None),
               ("tanh", None), ("softplus", None), ("gelu", None), ("softmax", None),
               ("log_softmax", None)]
DTYPES = [np.float32, np.float64]
RTOL = {np.float32: 1e-4, np.float64: 1e-11}
ATOL = {np.float32: 1e-4, np.float64: 1e-11}
# pooling sums at most a few terms (or none: max forward is exact)
POOL_TOL = {np.float32: 1e-6, np.float64: 1e-14}

# (batch, height, width, in_channels, filters, kernel, strides, padding)
CONV_CASES = [
    (1, 5, 5, 1, 1, (3, 3), (1, 1), "valid"),      # batch 1, one channel, one filter
    (1, 6, 6, 1, 4, (3, 3), (1, 1), "same"),
    (3, 7, 6, 3, 4, (3, 3), (1, 1), "same"),
    (2, 6, 5, 5, 3, (1, 1), (1, 1), "valid"),      # 1x1, stride 1: x is read as cols
    (2, 7, 7, 4, 6, (1, 1), (2, 2), "same"),       # 1x1, stride 2
    (2, 9, 9, 3, 5, (3, 3), (2, 2), "valid"),
    (2, 8, 8, 3, 5, (5, 5), (2, 2), "same"),       # pads 1 top/left, 2 bottom/right
    (2, 8, 7, 3, 4, (3, 2), (2, 1), "same"),       # non-square kernel and strides
    (2, 9, 10, 2, 3, (2, 2), (3, 3), "valid"),     # stride larger than the kernel
    (2, 10, 9, 2, 3, (2, 3), (3, 2), "same"),
    (1, 3, 2, 2, 3, (5, 4), (1, 1), "same"),       # kernel larger than the image
    (1, 4, 4, 3, 2, (4, 4), (1, 1), "valid"),      # a single output pixel
    (4, 13, 11, 7, 17, (3, 3), (1, 1), "valid"),   # odd sizes: vector tails everywhere
    (8, 28, 28, 16, 32, (3, 3), (1, 1), "same"),   # an MNIST-sized layer
    (20, 28, 28, 16, 8, (3, 3), (1, 1), "same"),   # several im2col chunks of whole images
]
CONV_IDS = [f"{c[0]}x{c[1]}x{c[2]}x{c[3]}-{c[4]}f-k{c[5][0]}{c[5][1]}-s{c[6][0]}{c[6][1]}-{c[7]}"
            for c in CONV_CASES]
BIG = CONV_CASES[13]
CHUNKED = CONV_CASES[14]
# Weights of 147 KiB (float32): the backward sums its 60 one-image chunks in fewer groups (56)
# than chunks, some of two chunks, and the groups' partial dW in order after.
GROUPED = (60, 14, 14, 64, 64, (3, 3), (1, 1), "same")

# (batch, height, width, channels, pool_size, strides, padding)
POOL_CASES = [
    (1, 4, 4, 1, (2, 2), None, "valid"),          # batch 1, one channel
    (2, 5, 5, 3, (2, 2), None, "valid"),
    (2, 5, 5, 3, (2, 2), None, "same"),
    (2, 6, 6, 5, (3, 3), (2, 2), "same"),         # overlapping, asymmetric padding
    (3, 7, 7, 4, (3, 3), (2, 2), "same"),
    (2, 5, 8, 6, (2, 3), (1, 2), "valid"),        # non-square
    (2, 6, 7, 3, (3, 2), (2, 1), "same"),
    (2, 9, 8, 2, (2, 2), (3, 3), "valid"),        # stride larger than the pool
    (1, 3, 3, 2, (4, 4), (1, 1), "same"),         # pool larger than the image
    (2, 11, 13, 17, (3, 3), (1, 1), "same"),      # odd channel count, stride 1
    (8, 28, 28, 16, (2, 2), None, "valid"),
    (8, 28, 28, 32, (3, 3), (2, 2), "same"),
]
POOL_IDS = [f"{c[0]}x{c[1]}x{c[2]}x{c[3]}-p{c[4][0]}{c[4][1]}-"
            f"s{'' if c[5] is None else '%d%d' % c[5]}-{c[6]}" for c in POOL_CASES]


def _close(got, want, dtype, scale=1.0, tol=None):
    rtol = (tol or RTOL)[dtype]
    atol = (tol or ATOL)[dtype]
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol * scale)


def _f64(arr):
    return None if arr is None else arr.astype(np.float64)


def _conv_inputs(rng, case, dtype, with_bias=True):
    batch, h, wd, c, filters, kernel, _, _ = case
    x = rng.standard_normal((batch, h, wd, c)).astype(dtype)
    w = (rng.standard_normal((*kernel, c, filters)) / math.sqrt(kernel[0] * kernel[1] * c)
         ).astype(dtype)
    b = rng.standard_normal(filters).astype(dtype) if with_bias else None
    return x, w, b


def _out_shape(case):
    batch, h, wd, _, filters, kernel, strides, padding = case
    if padding == "same":
        return batch, -(-h // strides[0]), -(-wd // strides[1]), filters
    return batch, (h - kernel[0]) // strides[0] + 1, (wd - kernel[1]) // strides[1] + 1, filters


def _check_conv(case, dtype, activation, param, rng, with_bias=True):
    """Compiled forward and backward against the float64 reference on the same inputs (the
    backward also on the compiled z and a, so both take the same branch at relu's kink)."""
    *_, strides, padding = case
    kw = dict(strides=strides, padding=padding, activation=activation, param=param)
    x, w, b = _conv_inputs(rng, case, dtype, with_bias)
    saved = [arr.copy() for arr in (x, w) + (() if b is None else (b,))]
    identity = activation in ("identity", "linear")
    z = np.full(_out_shape(case), np.nan, dtype)
    a = cnn_core.conv2d_forward(x, w, b, z_out=None if identity else z, **kw)
    if identity:
        z = a
    assert a.dtype == dtype and a.shape == _out_shape(case)
    z_ref = np.empty(z.shape)
    a_ref = ref.conv2d_forward(_f64(x), _f64(w), _f64(b), z_out=z_ref, **kw)
    k = w.shape[0] * w.shape[1] * w.shape[2]
    _close(z, z_ref, dtype, math.sqrt(k))
    _close(a, a_ref, dtype, math.sqrt(k))

    g = rng.standard_normal(a.shape).astype(dtype)
    g_saved = g.copy()
    gw, gb, gx = cnn_core.conv2d_backward(x, w, z, a, g, **kw)
    assert gw.dtype == gb.dtype == gx.dtype == dtype
    gw_r, gb_r, gx_r = ref.conv2d_backward(_f64(x), _f64(w), _f64(z), _f64(a), _f64(g), **kw)
    pixels = a.shape[0] * a.shape[1] * a.shape[2]
    _close(gw, gw_r, dtype, math.sqrt(pixels))
    _close(gb, gb_r, dtype, math.sqrt(pixels))
    _close(gx, gx_r, dtype, math.sqrt(w.shape[0] * w.shape[1] * w.shape[3]))
    for before, after in zip(saved + [g_saved], [x, w] + ([] if b is None else [b]) + [g]):
        np.testing.assert_array_equal(after, before)  # inputs are read only


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CONV_CASES, ids=CONV_IDS)
def test_conv_matches_reference(case, dtype):
    _check_conv(case, dtype, "relu", None, np.random.default_rng(sum(case[:5])))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation,param", ACTIVATIONS,
                         ids=[f"{a}-{p}" for a, p in ACTIVATIONS])
@pytest.mark.parametrize("case", [CONV_CASES[6], CONV_CASES[12]],
                         ids=[CONV_IDS[6], CONV_IDS[12]])
def test_conv_every_activation_matches_reference(case, activation, param, dtype):
    _check_conv(case, dtype, activation, param, np.random.default_rng(5))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", [CONV_CASES[2], CONV_CASES[3], CONV_CASES[7], BIG],
                         ids=[CONV_IDS[2], CONV_IDS[3], CONV_IDS[7], CONV_IDS[13]])
def test_conv_without_bias_matches_reference(case, dtype):
    _check_conv(case, dtype, "tanh", None, np.random.default_rng(6), with_bias=False)


@pytest.mark.parametrize("dtype", DTYPES)
def test_conv_buffers_need_grad_x_and_dz_out(dtype):
    case = CONV_CASES[7]
    *_, strides, padding = case
    rng = np.random.default_rng(7)
    x, w, b = _conv_inputs(rng, case, dtype)
    kw = dict(strides=strides, padding=padding, activation="elu")
    shape = _out_shape(case)
    out, z_out = np.full(shape, np.nan, dtype), np.full(shape, np.nan, dtype)
    assert cnn_core.conv2d_forward(x, w, b, out=out, z_out=z_out, **kw) is out
    want_z = np.empty(shape)
    want_a = ref.conv2d_forward(_f64(x), _f64(w), _f64(b), z_out=want_z, **kw)
    _close(z_out, want_z, dtype, 10)
    _close(out, want_a, dtype, 10)

    g = rng.standard_normal(shape).astype(dtype)
    bufs = (np.full(w.shape, np.nan, dtype), np.full(w.shape[3], np.nan, dtype),
            np.full(x.shape, np.nan, dtype))
    dz = np.full(shape, np.nan, dtype)
    res = cnn_core.conv2d_backward(x, w, z_out, out, g, grad_w=bufs[0], grad_b=bufs[1],
                                   grad_x=bufs[2], dz_out=dz, **kw)
    assert all(r is buf for r, buf in zip(res, bufs))
    _close(dz, ref.activation_backward(_f64(g), _f64(z_out), _f64(out), "elu"), dtype)
    want = ref.conv2d_backward(_f64(x), _f64(w), _f64(z_out), _f64(out), _f64(g), **kw)
    for got, exp, scale in zip(res, want, (10, 10, 5)):
        _close(got, exp, dtype, scale)

    # without grad_x: None, and the same weight gradients
    gw, gb, none = cnn_core.conv2d_backward(x, w, z_out, out, g, need_grad_x=False, **kw)
    assert none is None
    _close(gw, bufs[0], dtype, tol=POOL_TOL)
    _close(gb, bufs[1], dtype, tol=POOL_TOL)
    # dz_out may be grad_out itself
    g_in_place = g.copy()
    res2 = cnn_core.conv2d_backward(x, w, z_out, out, g_in_place, dz_out=g_in_place, **kw)
    _close(g_in_place, dz, dtype, tol=POOL_TOL)
    for got, exp in zip(res2, bufs):
        _close(got, exp, dtype, tol=POOL_TOL)


def test_conv_backward_matches_finite_differences_float64():
    """L = sum(g * conv2d_forward(x, w, b)): central differences of the compiled forward."""
    case = (2, 5, 4, 2, 3, (3, 2), (2, 1), "same")
    kw = dict(strides=(2, 1), padding="same", activation="tanh")
    rng = np.random.default_rng(8)
    x, w, b = _conv_inputs(rng, case, np.float64)
    z = np.empty(_out_shape(case))
    a = cnn_core.conv2d_forward(x, w, b, z_out=z, **kw)
    g = rng.standard_normal(a.shape)
    grads = cnn_core.conv2d_backward(x, w, z, a, g, **kw)

    def loss():
        return float(np.sum(g * cnn_core.conv2d_forward(x, w, b, **kw)))

    for arr, grad in zip((w, b, x), grads):
        np.testing.assert_allclose(grad, numerical_grad(loss, arr), rtol=1e-6, atol=1e-8)


# ------------------------------------------------------------------------------------------
# Direct kernels (float32, AVX2, filters a multiple of 8) against im2col + GEMM
# ------------------------------------------------------------------------------------------
# The geometries of CONV_CASES with 8, 16, 24 and 40 filters (one and two vectors, a 6-pixel
# tile's row tails; a 1x1 kernel with stride 2), plus a stride-2 'same' layer whose padding is
# uneven.
DIRECT_CASES = [c[:4] + (f,) + c[5:] for c, f in zip(
    [CONV_CASES[i] for i in (0, 1, 2, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13)],
    [8, 16, 24, 8, 40, 8, 16, 24, 40, 8, 16, 24, 32])] + [(3, 9, 8, 2, 16, (4, 3), (2, 2), "same")]
DIRECT_IDS = [f"{c[0]}x{c[1]}x{c[2]}x{c[3]}-{c[4]}f-k{c[5][0]}{c[5][1]}-s{c[6][0]}{c[6][1]}-"
              f"{c[7]}" for c in DIRECT_CASES]


@pytest.fixture
def gemm_conv():
    """Runs the body with every conv on im2col + GEMM, then restores the direct threshold."""
    from cnn_core import _conv

    def run(fn):
        previous = _conv._set_direct_max_taps(0)
        try:
            return fn()
        finally:
            _conv._set_direct_max_taps(previous)
    return run


@pytest.mark.skipif(cnn_core._gemm.kernel_name() == "reference", reason="needs the AVX2 kernels")
@pytest.mark.parametrize("activation", ["identity", "relu", "tanh"])
@pytest.mark.parametrize("case", DIRECT_CASES, ids=DIRECT_IDS)
def test_direct_forward_has_the_gemm_paths_bits(gemm_conv, case, activation):
    """The direct kernels do im2col + GEMM's FMAs in its order (taps <= one K block here), then
    its epilogue: the same bits, z and a, with and without a bias."""
    from cnn_core import _conv

    batch, h, w_, c, f, kernel, strides, padding = case
    rng = np.random.default_rng(sum(case[:5]))
    x = rng.standard_normal((batch, h, w_, c)).astype(np.float32)
    w = (rng.standard_normal(kernel + (c, f)) / math.sqrt(kernel[0] * kernel[1] * c)).astype(
        np.float32)
    x[0, 0] = 0.0  # exact zeros and -0 before a ReLU
    w[0, 0, 0, :4] = -0.0
    for b in (rng.standard_normal(f).astype(np.float32), None):
        kw = dict(strides=strides, padding=padding, activation=activation)

        def forward():
            a = cnn_core.conv2d_forward(x, w, b, **kw)
            z = np.empty_like(a)
            cnn_core.conv2d_forward(x, w, b, out=a, z_out=z, **kw)
            return a, z

        calls = _conv._direct_calls()
        a, z = forward()
        assert _conv._direct_calls() == calls + 2, "the direct kernels did not run"
        a_gemm, z_gemm = gemm_conv(forward)
        assert _conv._direct_calls() == calls + 2
        assert a.tobytes() == a_gemm.tobytes() and z.tobytes() == z_gemm.tobytes()
        _close(a, ref.conv2d_forward(_f64(x), _f64(w), None if b is None else _f64(b), **kw),
               np.float32, math.sqrt(kernel[0] * kernel[1] * c))


def _direct_backward_inputs(case, rng):
    batch, h, w_, c, f, kernel, strides, padding = case
    x = rng.standard_normal((batch, h, w_, c)).astype(np.float32)
    w = (rng.standard_normal(kernel + (c, f)) / math.sqrt(kernel[0] * kernel[1] * c)).astype(
        np.float32)
    b = rng.standard_normal(f).astype(np.float32)
    kw = dict(strides=strides, padding=padding)
    return x, w, b, kw


@pytest.mark.skipif(cnn_core._gemm.kernel_name() == "reference", reason="needs the AVX2 kernels")
@pytest.mark.parametrize("activation", ["relu", "tanh"])
@pytest.mark.parametrize("need_grad_x", [False, True])
@pytest.mark.parametrize("case", DIRECT_CASES, ids=DIRECT_IDS)
def test_direct_backward_matches_gemm_path_and_reference(gemm_conv, case, need_grad_x,
                                                         activation):
    """grad_w and grad_b of the direct kernels (summed per image, then per group) against
    im2col + GEMM (summed per K block: other roundings) and the float64 reference; grad_x
    (the GEMM's dcols + col2im on both paths) to the bit."""
    from cnn_core import _conv

    rng = np.random.default_rng(sum(case[:5]) + 7)
    x, w, b, kw = _direct_backward_inputs(case, rng)
    z = cnn_core.conv2d_forward(x, w, b, activation="linear", **kw)
    a = cnn_core.conv2d_forward(x, w, b, activation=activation, **kw)
    g = rng.standard_normal(a.shape).astype(np.float32)

    def backward():
        return cnn_core.conv2d_backward(x, w, z, a, g, activation=activation,
                                        need_grad_x=need_grad_x, **kw)

    calls = _conv._direct_calls()
    direct = backward()
    direct_dx = need_grad_x and _direct_dx_applies(case)
    assert _conv._direct_calls() == calls + 1 + direct_dx, "the direct kernels did not run"
    gemm = gemm_conv(backward)
    want = ref.conv2d_backward(_f64(x), _f64(w), _f64(z), _f64(a), _f64(g),
                               activation=activation, need_grad_x=need_grad_x, **kw)
    pixels = a.shape[0] * a.shape[1] * a.shape[2]
    for got, other, exact in zip(direct[:2], gemm[:2], want[:2]):
        _close(got, other, np.float32, math.sqrt(pixels))
        _close(got, exact, np.float32, math.sqrt(pixels))
    if not need_grad_x:
        assert direct[2] is None
    elif direct_dx:
        _close(direct[2], gemm[2], np.float32, math.sqrt(case[4]))
        _close(direct[2], want[2], np.float32, math.sqrt(case[4]))
    else:  # the GEMM's dcols + col2im on both paths
        assert direct[2].tobytes() == gemm[2].tobytes()


def _direct_dx_applies(case):
    _, _, _, c, f, kernel, strides, padding = case
    return (strides == (1, 1) and c % 8 == 0 and padding == "same"
            and kernel[0] * kernel[1] * f <= 576)


# Stride-1 'same' layers with channels in whole vectors: grad_x by the direct kernels, as the
# convolution of dz by the flipped kernel. Even kernels pad unevenly (one more row and column
# after), a kernel larger than the image.
DIRECT_DX_CASES = [(2, 9, 8, 8, 16, (3, 3), (1, 1), "same"),
                   (3, 7, 6, 16, 8, (2, 3), (1, 1), "same"),
                   (2, 6, 7, 8, 16, (4, 4), (1, 1), "same"),
                   (1, 3, 3, 8, 8, (3, 3), (1, 1), "same"),
                   (2, 4, 5, 24, 24, (5, 4), (1, 1), "same"),
                   (2, 5, 5, 8, 64, (3, 3), (1, 1), "same")]  # 576 taps for dx


def test_valid_and_strided_grad_x_stay_on_the_gemm_path():
    """A 'valid' layer's grad_x would multiply the zeros around dz, a strided one is no plain
    convolution of dz: both keep dcols + col2im (one direct call: the weights)."""
    from cnn_core import _conv

    for case in [(2, 9, 8, 8, 16, (3, 3), (1, 1), "valid"),
                 (2, 9, 8, 8, 16, (3, 3), (2, 2), "same")]:
        x, w, b, kw = _direct_backward_inputs(case, np.random.default_rng(2))
        a = cnn_core.conv2d_forward(x, w, b, **kw)
        calls = _conv._direct_calls()
        cnn_core.conv2d_backward(x, w, a, a, a, **kw)
        assert _conv._direct_calls() == calls + (cnn_core._gemm.kernel_name() != "reference")


@pytest.mark.skipif(cnn_core._gemm.kernel_name() == "reference", reason="needs the AVX2 kernels")
@pytest.mark.parametrize("case", DIRECT_DX_CASES,
                         ids=[f"{c[0]}x{c[1]}x{c[2]}x{c[3]}-{c[4]}f-k{c[5][0]}{c[5][1]}-{c[7]}"
                              for c in DIRECT_DX_CASES])
def test_direct_grad_x_matches_gemm_path_reference_and_threads(restore_threads, gemm_conv,
                                                               case):
    from cnn_core import _conv

    assert _direct_dx_applies(case)
    rng = np.random.default_rng(sum(case[:5]) + 9)
    x, w, b, kw = _direct_backward_inputs(case, rng)
    a = cnn_core.conv2d_forward(x, w, b, **kw)
    g = rng.standard_normal(a.shape).astype(np.float32)
    results = []
    for threads in (1, 2, 3):
        cnn_core.set_num_threads(threads)
        calls = _conv._direct_calls()
        results.append(cnn_core.conv2d_backward(x, w, a, a, g, **kw)[2])
        assert _conv._direct_calls() == calls + 2
    assert all(r.tobytes() == results[0].tobytes() for r in results[1:])
    gemm = gemm_conv(lambda: cnn_core.conv2d_backward(x, w, a, a, g, **kw)[2])
    want = ref.conv2d_backward(_f64(x), _f64(w), _f64(a), _f64(a), _f64(g), **kw)[2]
    _close(results[0], gemm, np.float32, math.sqrt(case[4]))
    _close(results[0], want, np.float32, math.sqrt(case[4]))


@pytest.mark.skipif(cnn_core._gemm.kernel_name() == "reference", reason="needs the AVX2 kernels")
@pytest.mark.parametrize("case", [DIRECT_CASES[1], DIRECT_CASES[6], DIRECT_CASES[-1], BIG],
                         ids=[DIRECT_IDS[1], DIRECT_IDS[6], DIRECT_IDS[-1], "big"])
def test_direct_relu_backward_without_dz_has_the_bits_of_the_one_with_dz(restore_threads,
                                                                         case):
    """No dz_out and no grad_x: the ReLU mask is applied inside the direct kernels and dz is
    never written. Its dz is the ReLU pass's, so grad_w and grad_b keep their bits; and, as
    every path, they do not depend on the thread count."""
    rng = np.random.default_rng(3)
    x, w, b, kw = _direct_backward_inputs(case, rng)
    a = cnn_core.conv2d_forward(x, w, b, activation="relu", **kw)
    a[0, 0, 0, :3] = 0.0  # exact zeros and a -0: no gradient through them
    a[0, 0, 0, 3] = -0.0
    g = rng.standard_normal(a.shape).astype(np.float32)
    g_saved = g.copy()
    dz = np.empty_like(a)
    with_dz = cnn_core.conv2d_backward(x, w, a, a, g, activation="relu", need_grad_x=False,
                                       dz_out=dz, **kw)
    np.testing.assert_array_equal(dz, np.where(a > 0, g, 0))
    for threads in (1, 2, 3):
        cnn_core.set_num_threads(threads)
        fused = cnn_core.conv2d_backward(x, w, a, a, g, activation="relu", need_grad_x=False,
                                         **kw)
        assert fused[0].tobytes() == with_dz[0].tobytes()
        assert fused[1].tobytes() == with_dz[1].tobytes()
    np.testing.assert_array_equal(g, g_saved)


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_backward_without_dz_out_keeps_a_workspace(activation):
    """dz_out=None on the GEMM path (float64 here): dz goes to a buffer reused call after call,
    and the results equal those with dz_out."""
    rng = np.random.default_rng(4)
    case = CONV_CASES[2]
    x, w, b, kw = _direct_backward_inputs(case[:4] + (8,) + case[5:], rng)
    x, w, b = _f64(x), _f64(w), _f64(b)
    a = cnn_core.conv2d_forward(x, w, b, activation=activation, **kw)
    g = rng.standard_normal(a.shape)
    dz = np.empty_like(a)
    want = cnn_core.conv2d_backward(x, w, a, a, g, activation=activation, dz_out=dz, **kw)
    first = cnn_core.conv2d_backward(x, w, a, a, g, activation=activation, **kw)
    workspace = cnn_core._conv._dz_workspace(a.shape, a.dtype)
    np.testing.assert_array_equal(workspace, dz)
    second = cnn_core.conv2d_backward(x, w, a, a, g, activation=activation, **kw)
    assert np.shares_memory(cnn_core._conv._dz_workspace(a.shape, a.dtype), workspace)
    for got in (first, second):
        for u, v in zip(got, want):
            assert u.tobytes() == v.tobytes()
    # One buffer whatever the shapes: a smaller dz reuses it, memory stays at the largest.
    small = cnn_core._conv._dz_workspace((1,) + a.shape[1:], a.dtype)
    assert np.shares_memory(small, workspace) and small.shape == (1,) + a.shape[1:]


@pytest.mark.skipif(cnn_core._gemm.kernel_name() == "reference", reason="needs the AVX2 kernels")
def test_direct_path_bounds(gemm_conv):
    """Taps beyond the limit, filters not in whole vectors, float64 and the reference kernels
    take im2col + GEMM; more taps than one K block still match the reference."""
    from cnn_core import _conv

    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 6, 6, 64)).astype(np.float32)  # 576 taps: direct, 3 K blocks
    w = (rng.standard_normal((3, 3, 64, 16)) / 24).astype(np.float32)
    calls = _conv._direct_calls()
    a = cnn_core.conv2d_forward(x, w, None, padding="same")
    assert _conv._direct_calls() == calls + 1
    _close(a, ref.conv2d_forward(_f64(x), _f64(w), None, padding="same"), np.float32, 24)
    for xs, ws in ((np.concatenate([x, x[..., :1]], axis=3),   # 585 taps
                    np.concatenate([w, w[:, :, :1]], axis=2)),
                   (x, np.ascontiguousarray(w[..., :12])),        # 12 filters
                   (x.astype(np.float64), w.astype(np.float64))):
        cnn_core.conv2d_forward(xs, ws, None, padding="same")
        assert _conv._direct_calls() == calls + 1
    from cnn_core import _gemm

    previous = _gemm.kernel_name()
    _gemm._select_kernel("reference")
    try:
        cnn_core.conv2d_forward(x, w, None, padding="same")
    finally:
        _gemm._select_kernel(previous)
    assert _conv._direct_calls() == calls + 1


# ------------------------------------------------------------------------------------------
# Pooling
# ------------------------------------------------------------------------------------------
def _check_pool(kind, x, case, rng, exact_forward):
    _, _, _, _, pool, strides, padding = case
    kw = dict(pool_size=pool, strides=strides, padding=padding)
    dtype = x.dtype.type
    forward, backward = (f"{kind}_pool2d_forward", f"{kind}_pool2d_backward")
    x_saved = x.copy()
    out = getattr(cnn_core, forward)(x, **kw)
    want = getattr(ref, forward)(x, **kw)  # same dtype: a max is exact
    assert out.dtype == dtype and out.shape == want.shape
    if exact_forward:
        np.testing.assert_array_equal(out, want)
    else:
        _close(out, getattr(ref, forward)(_f64(x), **kw), dtype, tol=POOL_TOL)
    g = rng.standard_normal(out.shape).astype(dtype)
    grad = getattr(cnn_core, backward)(x, g, **kw)
    assert grad.dtype == dtype and grad.shape == x.shape
    _close(grad, getattr(ref, backward)(_f64(x), _f64(g), **kw), dtype, tol=POOL_TOL)
    np.testing.assert_array_equal(x, x_saved)
    return out, grad


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("case", POOL_CASES, ids=POOL_IDS)
def test_pool_matches_reference(case, kind, dtype):
    rng = np.random.default_rng(sum(case[:4]))
    x = rng.standard_normal(case[:4]).astype(dtype)
    _check_pool(kind, x, case, rng, exact_forward=kind == "max")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", [POOL_CASES[2], POOL_CASES[3], POOL_CASES[5], POOL_CASES[9]],
                         ids=[POOL_IDS[2], POOL_IDS[3], POOL_IDS[5], POOL_IDS[9]])
def test_max_pool_ties_nan_and_minus_infinity_match_reference(case, dtype):
    """Many ties (values in {0, 1, 2}), NaNs and -inf: the first max / first NaN of each
    window gets the gradient, a window of -inf sends it to a real pixel."""
    rng = np.random.default_rng(9)
    ties = rng.integers(0, 3, case[:4]).astype(dtype)
    _check_pool("max", ties, case, rng, exact_forward=True)
    special = ties.copy()
    special[rng.random(case[:4]) < 0.1] = np.nan
    special[rng.random(case[:4]) < 0.3] = -np.inf
    special[:, -1, :, :] = -np.inf  # the bottom row of windows, padded in 'same', is all -inf
    out, grad = _check_pool("max", special, case, rng, exact_forward=True)
    assert np.isnan(out).any() and np.isneginf(out).any()
    # a window holding a NaN gives NaN; the gradient never leaves the image
    assert not np.isnan(grad).any()


def test_max_pool_nan_propagates_like_reference():
    x = np.arange(32, dtype=np.float32).reshape(1, 4, 4, 2)
    x[0, 0, 1, 0] = np.nan
    x[0, 3, 3, 1] = np.nan
    x[0, 2, 0, 1] = np.nan
    x[0, 3, 1, 1] = np.nan
    out = cnn_core.max_pool2d_forward(x)
    np.testing.assert_array_equal(out, ref.max_pool2d_forward(x))
    assert np.isnan(out[0, 0, 0, 0]) and np.isnan(out[0, 1, 1, 1]) and np.isnan(out[0, 1, 0, 1])
    assert np.isnan(out).sum() == 3
    g = np.arange(1, 9, dtype=np.float32).reshape(out.shape)
    grad = cnn_core.max_pool2d_backward(x, g)
    np.testing.assert_array_equal(grad, ref.max_pool2d_backward(x, g))
    assert grad[0, 0, 1, 0] == g[0, 0, 0, 0] and grad[0, 2, 0, 1] == g[0, 1, 0, 1]
    assert grad[0, 3, 1, 1] == 0  # the second NaN of its window gets nothing


@pytest.mark.parametrize("dtype", DTYPES)
def test_pool_buffers(dtype):
    rng = np.random.default_rng(10)
    x = rng.standard_normal((2, 7, 6, 3)).astype(dtype)
    kw = dict(pool_size=(3, 2), strides=(2, 2), padding="same")
    for kind in ("max", "avg"):
        out = np.full((2, 4, 3, 3), np.nan, dtype)
        assert getattr(cnn_core, f"{kind}_pool2d_forward")(x, out=out, **kw) is out
        _close(out, getattr(ref, f"{kind}_pool2d_forward")(_f64(x), **kw), dtype, tol=POOL_TOL)
        grad_x = np.full(x.shape, np.nan, dtype)
        assert getattr(cnn_core, f"{kind}_pool2d_backward")(x, out, grad_x=grad_x, **kw) is grad_x
        _close(grad_x, getattr(ref, f"{kind}_pool2d_backward")(_f64(x), _f64(out), **kw),
               dtype, tol=POOL_TOL)


# Large enough for two threads, with pixels no window reads: a leftover row and column; gaps
# of strides larger than the pool, and 'same' padding.
THREADED_POOL_CASES = [(8, 29, 29, 16, (2, 2), None, "valid"),
                       (8, 31, 30, 16, (2, 3), (3, 4), "same")]


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("case", POOL_CASES + THREADED_POOL_CASES,
                         ids=POOL_IDS + ["8x29x29x16-p22-valid", "8x31x30x16-p23-s34-same"])
def test_pool_backward_writes_every_pixel_of_grad_x(restore_threads, case, kind, threads):
    """grad_x starts as NaN: the pixels no window reads (leftover rows and columns, the gaps
    of a stride larger than the pool) must be zeroed, the others written, on every path."""
    cnn_core.set_num_threads(threads)
    rng = np.random.default_rng(sum(case[:4]) + 1)
    x = rng.standard_normal(case[:4]).astype(np.float32)
    _, _, _, _, pool, strides, padding = case
    kw = dict(pool_size=pool, strides=strides, padding=padding)
    out = getattr(cnn_core, f"{kind}_pool2d_forward")(x, **kw)
    g = rng.standard_normal(out.shape).astype(np.float32)
    fresh = getattr(cnn_core, f"{kind}_pool2d_backward")(x, g, **kw)
    grad_x = np.full(x.shape, np.nan, np.float32)
    getattr(cnn_core, f"{kind}_pool2d_backward")(x, g, grad_x=grad_x, **kw)
    np.testing.assert_array_equal(grad_x, fresh)
    _close(grad_x, getattr(ref, f"{kind}_pool2d_backward")(_f64(x), _f64(g), **kw),
           np.float32, tol=POOL_TOL)


def test_small_hand_computed_pools():
    x = np.arange(9.0).reshape(1, 3, 3, 1)
    np.testing.assert_array_equal(cnn_core.avg_pool2d_forward(x, padding="same")[0, :, :, 0],
                                  [[2, 3.5], [6.5, 8]])  # mean over the real pixels only
    grad = cnn_core.avg_pool2d_backward(x, np.ones((1, 2, 2, 1)), padding="same")
    np.testing.assert_array_equal(grad[0, :, :, 0], [[.25, .25, .5], [.25, .25, .5],
                                                     [.5, .5, 1]])
    neg = -1 - x  # all negative: zero padding must not win the max
    np.testing.assert_array_equal(
        cnn_core.max_pool2d_forward(neg, pool_size=3, strides=1, padding="same")[0, :, :, 0],
        [[-1, -1, -2], [-1, -1, -2], [-4, -4, -5]])
    inf = np.full((1, 3, 3, 1), -np.inf)
    g = np.arange(1.0, 10.0).reshape(1, 3, 3, 1)
    grad = cnn_core.max_pool2d_backward(inf, g, pool_size=3, strides=1, padding="same")
    np.testing.assert_array_equal(grad[0, :, :, 0], [[12, 9, 0], [15, 9, 0], [0, 0, 0]])
    ties = np.ones((1, 2, 2, 1))
    np.testing.assert_array_equal(cnn_core.max_pool2d_backward(ties, np.full((1, 1, 1, 1), 3.0))
                                  [0, :, :, 0], [[3, 0], [0, 0]])


# ------------------------------------------------------------------------------------------
# Determinism
# ------------------------------------------------------------------------------------------
def _all_six(case, dtype, activation, rng):
    *_, strides, padding = case
    kw = dict(strides=strides, padding=padding, activation=activation)
    x, w, b = _conv_inputs(rng, case, dtype)
    g = rng.standard_normal(_out_shape(case)).astype(dtype)

    def run():
        z = np.empty(_out_shape(case), dtype)
        a = cnn_core.conv2d_forward(x, w, b, z_out=z, **kw)
        arrays = [z, a, *cnn_core.conv2d_backward(x, w, z, a, g, **kw)]
        for kind, pool in (("max", dict(pool_size=3, strides=2, padding="same")),
                           ("avg", dict(pool_size=(3, 2), strides=1, padding="same"))):
            out = getattr(cnn_core, f"{kind}_pool2d_forward")(a, **pool)
            arrays += [out, getattr(cnn_core, f"{kind}_pool2d_backward")(a, out, **pool)]
        return b"".join(arr.tobytes() for arr in arrays)

    return run


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", ["relu", "softmax"])
@pytest.mark.parametrize("case", [BIG, CHUNKED, CONV_CASES[6]],
                         ids=[CONV_IDS[13], CONV_IDS[14], CONV_IDS[6]])
def test_bitwise_identical_for_any_thread_count(restore_threads, case, activation, dtype):
    run = _all_six(case, dtype, activation, np.random.default_rng(11))
    results = []
    for threads in (1, 2, 3, 4):
        cnn_core.set_num_threads(threads)
        assert cnn_core.get_num_threads() == threads
        results.append(run())
    assert all(r == results[0] for r in results[1:])


# ------------------------------------------------------------------------------------------
# Validation: the same exception types as the reference
# ------------------------------------------------------------------------------------------
X = np.ones((2, 5, 5, 3), np.float32)
W = np.ones((3, 3, 3, 4), np.float32)
B = np.ones(4, np.float32)
Z = np.ones((2, 3, 3, 4), np.float32)
P = np.ones((2, 2, 2, 3), np.float32)
READ_ONLY = np.ones((2, 3, 3, 4), np.float32)
READ_ONLY.flags.writeable = False


def _into_one_buffer(module):
    buf = np.empty(Z.shape, np.float32)
    return module.conv2d_forward(X, W, B, out=buf, z_out=buf)

BAD_CALLS = [
    ("x 3-D", lambda m: m.conv2d_forward(X[0], W, B)),
    ("w 3-D", lambda m: m.conv2d_forward(X, W[0], B)),
    ("channel mismatch", lambda m: m.conv2d_forward(X, W[:, :, :2].copy(), B)),
    ("b shape", lambda m: m.conv2d_forward(X, W, B[:3].copy())),
    ("w dtype", lambda m: m.conv2d_forward(X, W.astype(np.float64), B)),
    ("b dtype", lambda m: m.conv2d_forward(X, W, B.astype(np.float64))),
    ("x list", lambda m: m.conv2d_forward(X.tolist(), W, B)),
    ("x int", lambda m: m.conv2d_forward(X.astype(np.int32), W, B)),
    ("x non-contiguous", lambda m: m.conv2d_forward(X.transpose(0, 2, 1, 3), W, B)),
    ("w non-contiguous", lambda m: m.conv2d_forward(X, W.transpose(1, 0, 2, 3), B)),
    ("x empty", lambda m: m.conv2d_forward(X[:0], W, B)),
    ("padding", lambda m: m.conv2d_forward(X, W, B, padding="full")),
    ("strides 0", lambda m: m.conv2d_forward(X, W, B, strides=0)),
    ("strides bool", lambda m: m.conv2d_forward(X, W, B, strides=True)),
    ("strides 3-tuple", lambda m: m.conv2d_forward(X, W, B, strides=(1, 1, 1))),
    ("image < kernel", lambda m: m.conv2d_forward(X[:, :2].copy(), W, B)),
    ("out shape", lambda m: m.conv2d_forward(X, W, B, out=np.empty((2, 5, 5, 4), np.float32))),
    ("out dtype", lambda m: m.conv2d_forward(X, W, B, out=np.empty(Z.shape))),
    ("out read-only", lambda m: m.conv2d_forward(X, W, B, out=READ_ONLY)),
    ("z_out is out", lambda m: _into_one_buffer(m)),
    ("activation", lambda m: m.conv2d_forward(X, W, B, activation="swish")),
    ("activation type", lambda m: m.conv2d_forward(X, W, B, activation=1)),
    ("grad_out shape", lambda m: m.conv2d_backward(X, W, Z, Z, P)),
    ("grad_out dtype", lambda m: m.conv2d_backward(X, W, Z, Z, Z.astype(np.float64))),
    ("z shape", lambda m: m.conv2d_backward(X, W, Z[:1].copy(), Z, Z)),
    ("grad_w shape", lambda m: m.conv2d_backward(X, W, Z, Z, Z, grad_w=np.empty(
        (3, 3, 4, 3), np.float32))),
    ("dz_out shape", lambda m: m.conv2d_backward(X, W, Z, Z, Z, dz_out=P.copy())),
    ("backward activation", lambda m: m.conv2d_backward(X, W, Z, Z, Z, activation="nope")),
    ("pool x 3-D", lambda m: m.max_pool2d_forward(X[0])),
    ("pool x int", lambda m: m.avg_pool2d_forward(X.astype(np.int64))),
    ("pool_size 3-tuple", lambda m: m.max_pool2d_forward(X, pool_size=(2, 2, 2))),
    ("pool_size 0", lambda m: m.avg_pool2d_forward(X, pool_size=0)),
    ("pool padding", lambda m: m.max_pool2d_forward(X, padding="causal")),
    ("pool image < window", lambda m: m.avg_pool2d_forward(X, pool_size=6)),
    ("pool out shape", lambda m: m.max_pool2d_forward(X, out=Z.copy())),
    ("pool grad_out shape", lambda m: m.max_pool2d_backward(X, Z)),
    ("pool grad_out dtype", lambda m: m.avg_pool2d_backward(X, P.astype(np.float64))),
    ("pool grad_x dtype", lambda m: m.max_pool2d_backward(X, P, grad_x=np.empty(X.shape))),
    ("pool non-contiguous", lambda m: m.avg_pool2d_backward(X[:, :, ::-1], P)),
]


def _raised(call, module):
    try:
        call(module)
    except Exception as exc:  # noqa: BLE001 - the type is what is compared
        return exc
    return None


@pytest.mark.parametrize("name,call", BAD_CALLS, ids=[name for name, _ in BAD_CALLS])
def test_same_exception_types_as_reference(name, call):
    want = _raised(call, ref)
    got = _raised(call, cnn_core)
    assert isinstance(want, (TypeError, ValueError)), f"{name}: reference raised {want!r}"
    assert type(got) is type(want), f"{name}: cnn_core raised {got!r}, reference {want!r}"


def test_out_sharing_memory_with_x_is_refused():
    """'same', stride 1, filters == channels: out could be x itself; a kernel writing out while
    still reading x would be wrong, so it is refused (as in dense_forward)."""
    x = np.ones((1, 4, 4, 3), np.float32)
    w = np.ones((3, 3, 3, 3), np.float32)
    with pytest.raises(ValueError, match="share memory with x"):
        cnn_core.conv2d_forward(x, w, None, padding="same", out=x)
    with pytest.raises(ValueError, match="share memory with x"):
        cnn_core.conv2d_forward(x, w, None, padding="same", z_out=x)


@pytest.mark.parametrize("module", [cnn_core, ref], ids=["cnn_core", "reference"])
def test_avg_pool_backward_reads_only_the_shape_of_x(module):
    rng = np.random.default_rng(12)
    x = rng.standard_normal((2, 5, 6, 3))
    g = rng.standard_normal((2, 3, 3, 3))
    want = module.avg_pool2d_backward(x, g, padding="same")
    x[...] = np.nan
    np.testing.assert_array_equal(module.avg_pool2d_backward(x, g, padding="same"), want)
    assert not np.isnan(want).any()


@pytest.mark.parametrize("dtype", DTYPES)
def test_grouped_weight_gradient_sums_match_reference_for_any_thread_count(
        restore_threads, dtype):
    """More chunks than dW groups: the grouping, the per-thread groups and the partial sums."""
    rng = np.random.default_rng(5)
    x, w, b = _conv_inputs(rng, GROUPED, dtype)
    g = rng.standard_normal(_out_shape(GROUPED)).astype(dtype)
    results = []
    for threads in (1, 2, 3):
        cnn_core.set_num_threads(threads)
        z = cnn_core.conv2d_forward(x, w, b, padding="same")
        results.append(cnn_core.conv2d_backward(x, w, z, z, g, padding="same"))
    for got in results[1:]:
        for a, b_ in zip(got, results[0]):
            np.testing.assert_array_equal(a, b_)
    want = ref.conv2d_backward(x.astype(np.float64), w.astype(np.float64),
                               z.astype(np.float64), z.astype(np.float64),
                               g.astype(np.float64), padding="same")
    tol = 1e-4 if dtype == np.float32 else 1e-11
    for got, expected in zip(results[0], want):
        np.testing.assert_allclose(got, expected, rtol=tol, atol=tol * np.abs(expected).max())


# ------------------------------------------------------------------------------------------
# Review additions: outputs aliasing inputs, window bounds, need_grad_x=False paths
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("module", [cnn_core, ref], ids=["cnn_core", "reference"])
def test_outputs_sharing_memory_with_inputs_are_refused(module):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 6, 6, 3))
    same = dict(pool_size=3, strides=1, padding="same")  # output shape == x's shape
    with pytest.raises(ValueError, match="out must not share memory with x"):
        module.max_pool2d_forward(x, out=x, **same)
    with pytest.raises(ValueError, match="out must not share memory with x"):
        module.avg_pool2d_forward(x, out=x, **same)
    g = rng.standard_normal(x.shape)
    for kind in ("max", "avg"):
        backward = getattr(module, f"{kind}_pool2d_backward")
        with pytest.raises(ValueError, match="grad_x must not share memory with grad_out"):
            backward(x, g, grad_x=g, **same)
        with pytest.raises(ValueError, match="grad_x must not share memory with x"):
            backward(x, g, grad_x=x, **same)
    w = rng.standard_normal((1, 1, 3, 3))  # a 1x1 kernel: grad_x has grad_out's shape
    z = module.conv2d_forward(x, w, None)
    with pytest.raises(ValueError, match="grad_x must not share memory with grad_out"):
        module.conv2d_backward(x, w, z, z, g, grad_x=g)
    with pytest.raises(ValueError, match="grad_w must not share memory with w"):
        module.conv2d_backward(x, w, z, z, g, grad_w=w)
    out = np.empty(z.shape)
    with pytest.raises(ValueError, match="out must not share memory with b"):
        module.conv2d_forward(x, w, out.reshape(-1)[:3], out=out)  # b a view of out
    dz = np.empty_like(g)
    with pytest.raises(ValueError, match="grad_x must not share memory with dz_out"):
        module.conv2d_backward(x, w, z, z, g, grad_x=dz, dz_out=dz, activation="tanh")
    # dz_out may be grad_out itself (documented)
    gw, gb, gx = module.conv2d_backward(x, w, z, z, g.copy(), dz_out=None)
    g2 = g.copy()
    got = module.conv2d_backward(x, w, z, z, g2, dz_out=g2)
    np.testing.assert_allclose(got[0], gw, rtol=1e-12)


@pytest.mark.parametrize("module", [cnn_core, ref], ids=["cnn_core", "reference"])
@pytest.mark.parametrize("size", [2**31, 2**62, 2**70])
def test_windows_beyond_the_index_range_are_refused(module, size):
    x = np.ones((1, 2, 2, 1))
    with pytest.raises(ValueError, match="pool_size must be at most"):
        module.max_pool2d_backward(x, x, pool_size=size, strides=1, padding="same")
    with pytest.raises(ValueError, match="strides must be at most"):
        module.avg_pool2d_forward(x, pool_size=1, strides=size)


@pytest.mark.parametrize("case", [(3, 5, 5, 4, 6, (1, 1), (1, 1), "valid"), GROUPED],
                         ids=["1x1", "grouped"])
def test_no_grad_x_paths_match_reference(restore_threads, case):
    rng = np.random.default_rng(9)
    *_, strides, padding = case
    x, w, b = _conv_inputs(rng, case, np.float64)
    g = rng.standard_normal(_out_shape(case))
    z = ref.conv2d_forward(x, w, b, strides=strides, padding=padding)
    want = ref.conv2d_backward(x, w, z, z, g, strides=strides, padding=padding)
    for threads in (1, 2):
        cnn_core.set_num_threads(threads)
        gw, gb, gx = cnn_core.conv2d_backward(x, w, z, z, g, strides=strides, padding=padding,
                                              need_grad_x=False)
        assert gx is None
        np.testing.assert_allclose(gw, want[0], rtol=1e-11, atol=1e-11 * np.abs(want[0]).max())
        np.testing.assert_allclose(gb, want[1], rtol=1e-11, atol=1e-11 * np.abs(want[1]).max())
