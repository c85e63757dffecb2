"""Activations: forward and backward against the NumPy reference, finite differences, extreme
inputs, bitwise determinism across thread counts, and input validation."""
import math

import numpy as np
import pytest

import cnn_core
from cnn_core import _activations
import pynn.reference as ref

ACTIVATIONS = ["identity", "linear", "relu", "leaky_relu", "elu", "sigmoid", "tanh", "softplus",
               "gelu", "softmax", "log_softmax"]
ROW_WISE = ("softmax", "log_softmax")
SHAPES = [(1, 1), (1, 7), (7, 1), (33, 65), (128, 10), (3, 5000), (4, 5, 6), (9,)]
DTYPES = [np.float32, np.float64]
# float32: a few ulps of each result (libm expf/erff vs NumPy), relative to values of order 1.
RTOL = {np.float32: 1e-5, np.float64: 1e-12}
ATOL = {np.float32: 1e-6, np.float64: 1e-14}


def _close(got, want, dtype):
    assert got.dtype == dtype
    np.testing.assert_allclose(got, want, rtol=RTOL[dtype], atol=ATOL[dtype])


def _with_threads(n, fn):
    """fn() run with n threads (the conftest fixture restores the count afterwards)."""
    cnn_core.set_num_threads(n)
    return fn()


def _inputs(rng, shape, dtype, scale=3.0):
    z = (scale * rng.standard_normal(shape)).astype(dtype)
    g = rng.standard_normal(shape).astype(dtype)
    return z, g


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_forward_and_backward_match_reference(dtype, activation, shape):
    rng = np.random.default_rng(sum(shape))
    z, g = _inputs(rng, shape, dtype)
    a = cnn_core.activation_forward(z, activation)
    _close(a, ref.activation_forward(z, activation), dtype)
    # Feed both backwards the same a (the reference's) so only the backward is compared.
    a_ref = ref.activation_forward(z, activation)
    dz = cnn_core.activation_backward(g, z, a_ref, activation)
    _close(dz, ref.activation_backward(g, z, a_ref, activation), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation,param", [("leaky_relu", 0.01), ("leaky_relu", 1.5),
                                              ("elu", 0.5), ("elu", 2.0)])
def test_param(dtype, activation, param):
    rng = np.random.default_rng(1)
    z, g = _inputs(rng, (17, 19), dtype)
    a = cnn_core.activation_forward(z, activation, param=param)
    _close(a, ref.activation_forward(z, activation, param=param), dtype)
    _close(cnn_core.activation_backward(g, z, a, activation, param=param),
           ref.activation_backward(g, z, a, activation, param=param), dtype)
    default = cnn_core.activation_forward(z, activation)
    assert not np.array_equal(a, default)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_out_buffers_and_in_place(dtype, activation):
    rng = np.random.default_rng(2)
    z, g = _inputs(rng, (6, 11), dtype)
    want_a = ref.activation_forward(z, activation)
    want_dz = ref.activation_backward(g, z, want_a, activation)
    out = np.full_like(z, np.nan)
    assert cnn_core.activation_forward(z, activation, out=out) is out
    _close(out, want_a, dtype)
    x = z.copy()
    assert cnn_core.activation_forward(x, activation, out=x) is x  # in place
    _close(x, want_a, dtype)
    g2 = g.copy()
    assert cnn_core.activation_backward(g2, z, want_a, activation, out=g2) is g2
    _close(g2, want_dz, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_extreme_inputs_stay_finite(dtype, activation):
    z = np.array([[-1000.0, 1000.0, 0.0, 999.0], [1000.0, 1000.0, -1000.0, 88.0],
                  [-1000.0, -1000.0, -999.5, -1000.0]], dtype=dtype)
    a = cnn_core.activation_forward(z, activation)
    assert np.all(np.isfinite(a)), a
    _close(a, ref.activation_forward(z, activation), dtype)
    dz = cnn_core.activation_backward(np.ones_like(z), z, a, activation)
    assert np.all(np.isfinite(dz)), dz
    if activation == "softmax":
        np.testing.assert_allclose(a.sum(axis=-1), 1, rtol=RTOL[dtype])


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_finite_difference_backward_float64(activation):
    """activation_backward equals central differences of L = sum(g * f(z))."""
    rng = np.random.default_rng(3)
    z, g = _inputs(rng, (3, 5), np.float64, scale=1.5)
    z[np.abs(z) < 0.05] += 0.2  # keep relu/leaky_relu/elu away from their kink
    a = cnn_core.activation_forward(z, activation)
    dz = cnn_core.activation_backward(g, z, a, activation)
    h = 1e-6
    numeric = np.empty_like(z)
    for idx in np.ndindex(z.shape):
        zp, zm = z.copy(), z.copy()
        zp[idx] += h
        zm[idx] -= h
        numeric[idx] = (np.sum(g * cnn_core.activation_forward(zp, activation))
                        - np.sum(g * cnn_core.activation_forward(zm, activation))) / (2 * h)
    np.testing.assert_allclose(dz, numeric, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("dtype", DTYPES)
def test_zero_dim_input_elementwise(dtype):
    z = np.array(-0.5, dtype=dtype)
    a = cnn_core.activation_forward(z, "elu")
    assert a.shape == ()
    _close(a, ref.activation_forward(z, "elu"), dtype)
    with pytest.raises(ValueError):
        cnn_core.activation_forward(z, "softmax")


@pytest.mark.parametrize("activation", ["gelu", "softmax", "log_softmax", "sigmoid", "elu"])
def test_bitwise_identical_for_any_thread_count(activation):
    rng = np.random.default_rng(4)
    z, g = _inputs(rng, (256, 1200), np.float32)  # 307k elements: several threads' worth
    a = cnn_core.activation_forward(z, activation)

    def run():
        return (cnn_core.activation_forward(z, activation).tobytes(),
                cnn_core.activation_backward(g, z, a, activation).tobytes())

    first = _with_threads(1, run)
    for n in (2, 3):
        assert _with_threads(n, run) == first


def test_bad_inputs():
    x = np.ones((4, 5), np.float32)
    with pytest.raises(TypeError, match="float32 or float64"):
        cnn_core.activation_forward(np.ones((4, 5), np.int32), "relu")
    with pytest.raises(TypeError):
        cnn_core.activation_forward(x.astype(np.float16), "relu")
    with pytest.raises(TypeError):
        cnn_core.activation_forward(x.tolist(), "relu")
    with pytest.raises(ValueError, match="unknown activation 'swish2'"):
        cnn_core.activation_forward(x, "swish2")
    with pytest.raises(ValueError, match="empty"):
        cnn_core.activation_forward(np.ones((0, 5), np.float32), "relu")
    with pytest.raises(ValueError, match="contiguous"):
        cnn_core.activation_forward(np.ones((5, 4), np.float32).T, "relu")
    with pytest.raises(ValueError, match=r"\(4, 6\).*\(4, 5\)"):
        cnn_core.activation_forward(x, "relu", out=np.ones((4, 6), np.float32))
    with pytest.raises(TypeError):
        cnn_core.activation_forward(x, "relu", out=np.ones((4, 5), np.float64))
    with pytest.raises(ValueError, match="read-only"):
        ro = np.ones((4, 5), np.float32)
        ro.flags.writeable = False
        cnn_core.activation_forward(x, "relu", out=ro)
    with pytest.raises(ValueError, match=r"\(4, 4\).*\(4, 5\)"):
        cnn_core.activation_backward(x, np.ones((4, 4), np.float32), x, "relu")
    with pytest.raises(ValueError, match=r"\(5,\).*\(4, 5\)"):
        cnn_core.activation_backward(x, x, np.ones(5, np.float32), "tanh")
    with pytest.raises(TypeError, match="float64"):
        cnn_core.activation_backward(x, x.astype(np.float64), x, "tanh")
    with pytest.raises(ValueError, match="contiguous"):
        cnn_core.activation_backward(x, x, np.ones((5, 4), np.float32).T, "softmax")
    with pytest.raises(ValueError, match="finite"):
        cnn_core.activation_forward(x, "leaky_relu", param=float("nan"))


def _float32_grid():
    """About 230,000 float32 values from -104 to 89, every 9973rd bit pattern, and the
    boundaries of the range where exp is finite and normal."""
    neg = np.arange(0x80000001, np.float32(-104.0).view(np.uint32), 9973, dtype=np.uint32)
    pos = np.arange(0, np.float32(89.0).view(np.uint32), 9973, dtype=np.uint32)
    edges = np.array([-87.3365478515625, -87.33654, -87.3366, 88.72283172607421875,
                      88.72283935546875, 88.7229, 88.3762626647949, 0.0, -0.0, 1e-30, -1e-30],
                     np.float32)
    return np.concatenate([neg.view(np.float32), pos.view(np.float32), edges])


def test_softmax_exp_is_within_one_ulp_and_the_same_in_vector_and_scalar_code():
    """The float32 exp of the softmax rows (include/exp_math.h): relative error at most
    1.2e-7 (1 ulp) against float64 exp, and bit for bit the same whether an element goes
    through the AVX2 lanes or the scalar tail (the row length is not a multiple of 8)."""
    x = _float32_grid()
    one, row, total = _activations._softmax_exp_paths(x)
    assert one.tobytes() == row.tobytes()
    exact = np.exp(x.astype(np.float64))
    normal = (x > -87.3365478515625) & (x <= 88.72283172607421875)
    rel = np.abs(one[normal] - exact[normal]) / exact[normal]
    assert rel.max() <= 1.2e-7, (rel.max(), x[normal][rel.argmax()])
    assert np.all(one[x < -87.3365478515625] == 0)
    assert np.all(np.isposinf(one[x > 88.72283172607421875]))


def test_softmax_exp_row_sum_is_float64_in_eight_fixed_lanes():
    """exp_sum_row's total: lane k sums the terms j = k (mod 8) in increasing j, the lanes
    are combined pairwise, then the n % 8 last terms are added in order (a finite row, so
    the comparison is exact and not inf == inf)."""
    x = np.random.default_rng(3).uniform(-20, 5, 1003).astype(np.float32)
    _, row, total = _activations._softmax_exp_paths(x)
    terms = row.astype(np.float64)
    full = len(x) // 8 * 8
    lanes = [0.0] * 8
    for j in range(full):
        lanes[j % 8] += terms[j]
    want = ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) + ((lanes[4] + lanes[5])
                                                              + (lanes[6] + lanes[7]))
    for j in range(full, len(x)):
        want += terms[j]
    assert total == want


def test_softmax_exp_special_values():
    x = np.array([-np.inf, np.inf, np.nan, -1000.0, 1000.0, 0.0] * 3, np.float32)
    one, row, _ = _activations._softmax_exp_paths(x)
    for got in (one, row):
        np.testing.assert_array_equal(got[:6], [0.0, np.inf, np.nan, 0.0, np.inf, 1.0])
        assert got.tobytes() == np.tile(got[:6], 3).tobytes()


def _gelu64(v):
    # erfc(-x) rather than 1 + erf(x): exact where 1 + erf(x) is tiny.
    return np.array([0.5 * t * math.erfc(-t / math.sqrt(2.0)) for t in v])


# float32 tanh / sigmoid / elu / gelu / softplus (include/act_vec_math.h): largest error in
# ulps of the result against float64. The bounds are the maxima over every float32 with
# |x| < 60 (measured once: 1.33, 2.40, 1.42, 7.30, 3.33), with a little margin; the test
# checks a grid of them.
VECTOR_ACTIVATIONS = {
    "tanh": (np.tanh, 1.5),
    "sigmoid": (lambda v: 1.0 / (1.0 + np.exp(-v)), 2.5),
    "elu": (lambda v: np.where(v > 0, v, np.expm1(np.minimum(v, 0))), 1.5),
    "gelu": (_gelu64, 7.5),
    "softplus": (lambda v: np.maximum(v, 0) + np.log1p(np.exp(-np.abs(v))), 3.5),
}


@pytest.mark.parametrize("activation", sorted(VECTOR_ACTIVATIONS))
def test_float32_transcendental_activations_are_within_a_few_ulps(activation):
    exact_fn, max_ulps = VECTOR_ACTIVATIONS[activation]
    x = _float32_grid()
    x = x[np.abs(x) < 60]  # past that every one of them is saturated or linear
    got = cnn_core.activation_forward(x, activation)
    exact = exact_fn(x.astype(np.float64))
    # Results near float32's smallest normal lose bits to the exp's scaling: from 1e-37 up.
    normal = np.abs(exact) >= 1e-37
    ulp = np.spacing(np.abs(exact[normal]).astype(np.float32)).astype(np.float64)
    err = np.abs(got[normal] - exact[normal]) / ulp
    assert err.max() <= max_ulps, (err.max(), x[normal][err.argmax()])
    # Either side of each switch between the two formulas (tanh 0.625, elu 0.35).
    for edge in (0.625, 0.35):
        near = np.array([np.nextafter(np.float32(edge), np.float32(0)), edge,
                         np.nextafter(np.float32(edge), np.float32(1))], np.float32)
        for v in (near, -near):
            want = exact_fn(v.astype(np.float64))
            np.testing.assert_allclose(cnn_core.activation_forward(v, activation), want,
                                       rtol=3e-7)


@pytest.mark.parametrize("activation", sorted(VECTOR_ACTIVATIONS))
def test_float32_activations_same_bits_in_vector_and_scalar_code(activation):
    """An element gets the same bits from the AVX2 lanes, the scalar tail of a row whose
    length is not a multiple of 8, and the scalar function the baseline CPU runs; and the
    dense forward's epilogue gives the same bits as the elementwise kernel."""
    x = _float32_grid()
    scalar = _activations._activation_scalar_f32(x, activation)
    assert cnn_core.activation_forward(x, activation).tobytes() == scalar.tobytes()
    for n in (1, 7, 9, 15, 17):
        assert cnn_core.activation_forward(x[:n], activation).tobytes() == \
            scalar[:n].tobytes()
    # The backward pass: dz = g * f'(z), g = 1 so dz is f'(z) itself.
    a = cnn_core.activation_forward(x, activation)
    dz = cnn_core.activation_backward(np.ones_like(x), x, a, activation)
    assert dz.tobytes() == _activations._activation_scalar_f32(x, activation,
                                                               derivative=True).tobytes()
    rng = np.random.default_rng(1)
    xin = rng.standard_normal((13, 37)).astype(np.float32)
    w = rng.standard_normal((37, 21)).astype(np.float32)
    b = rng.standard_normal(21).astype(np.float32)
    z = cnn_core.dense_forward(xin, w, b, "identity")
    a = cnn_core.dense_forward(xin, w, b, activation)
    assert a.tobytes() == _activations._activation_scalar_f32(z.ravel(), activation).reshape(
        z.shape).tobytes()


def test_float32_gelu_derivative_is_accurate():
    """gelu'(z) = Phi(z) + z phi(z) against float64: absolutely within 2 ulps of 1, and
    relatively where it is not near its zero crossing (z = -0.75)."""
    x = _float32_grid()
    x = x[np.abs(x) < 12]
    a = cnn_core.activation_forward(x, "gelu")
    got = cnn_core.activation_backward(np.ones_like(x), x, a, "gelu")
    x64 = x.astype(np.float64)
    exact = np.array([0.5 * math.erfc(-t / math.sqrt(2.0)) for t in x64]) + \
        x64 * np.exp(-0.5 * x64 * x64) / math.sqrt(2.0 * math.pi)
    err = np.abs(got - exact)
    assert err.max() <= 2.5e-7, err.max()  # absolute (measured 1.3e-7): it is of order 1
    big = np.abs(exact) >= 0.1  # away from the zero crossing, where Phi and z phi cancel
    assert (err[big] / np.abs(exact[big])).max() <= 1e-6


@pytest.mark.parametrize("activation", sorted(VECTOR_ACTIVATIONS))
def test_float32_activation_special_values(activation):
    x = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-30, -1e-30, 100.0, -100.0] * 2,
                 np.float32)  # 18 values: vector lanes and a scalar tail
    got = cnn_core.activation_forward(x, activation)
    want = {"tanh": [0.0, -0.0, 1.0, -1.0, np.nan, 1e-30, -1e-30, 1.0, -1.0],
            "sigmoid": [0.5, 0.5, 1.0, 0.0, np.nan, 0.5, 0.5, 1.0, 0.0],
            "elu": [0.0, -0.0, np.inf, -1.0, np.nan, 1e-30, -1e-30, 100.0, -1.0],
            "gelu": [0.0, -0.0, np.inf, np.nan, np.nan, 5e-31, -5e-31, 100.0, -0.0],
            "softplus": [np.log(2), np.log(2), np.inf, 0.0, np.nan, np.log(2), np.log(2),
                         100.0, 0.0]}[activation]  # exp(-100) is below FLT_MIN: 0
    want = np.array(want * 2, np.float32)
    np.testing.assert_array_equal(got, want)
    # Signed zeros keep their sign (tanh(-0) = elu(-0) = -0), as the NumPy reference.
    assert np.signbit(got[1]) == np.signbit(want[1])


ELEMENTWISE = [a for a in ACTIVATIONS if a not in ROW_WISE and a != "linear"]


@pytest.mark.parametrize("activation", ELEMENTWISE)
def test_float32_element_bits_do_not_depend_on_its_position(activation):
    """Forward and backward of every elementwise float32 activation: an element computed in
    a vector lane (a long array) has the bits of the same element computed by the scalar
    loop (arrays of 7, below one vector). g holds negative values, zeros of both signs, inf
    and NaN, so `z > 0 ? g : 0` and `g * 0` would differ."""
    rng = np.random.default_rng(7)
    x = _float32_grid()[::3]
    x = x[np.abs(x) < 30]
    # NaNs of both signs with payloads: each must come out as the same NaN everywhere.
    nans = np.array([0x7fc00000, 0xffc00000, 0x7fc12345, 0xfff670a0, 0x7f800001, 0xff812345],
                    np.uint32).view(np.float32)
    x = np.concatenate([np.tile(nans, 8), x])
    n = len(x) // 7 * 7
    x = np.ascontiguousarray(x[:n])
    g = rng.standard_normal(n).astype(np.float32)
    g[::11] = -0.0
    g[5::13] = np.inf
    g[7::17] = np.nan
    # Not NaN where z is: with two NaN operands IEEE leaves open which one comes out.
    g[:48] = rng.standard_normal(48).astype(np.float32)
    a = cnn_core.activation_forward(x, activation)
    dz = cnn_core.activation_backward(g, x, a, activation)
    a7 = np.concatenate([cnn_core.activation_forward(x[i:i + 7], activation)
                         for i in range(0, n, 7)])
    dz7 = np.concatenate([cnn_core.activation_backward(g[i:i + 7], x[i:i + 7], a[i:i + 7],
                                                       activation) for i in range(0, n, 7)])
    assert a.tobytes() == a7.tobytes()
    assert dz.tobytes() == dz7.tobytes()


def test_the_avx2_spellings_run_where_the_cpu_has_avx2():
    # Otherwise the same-bits tests above compare the scalar code with itself.
    from cnn_core import _dense, _gemm

    has_avx2 = any(k in ("avx2", "avx512") for k in cnn_core.build_info()["cpu_kernels"])
    for module in (_activations, _dense, _gemm):
        assert module._act_vec_enabled() == has_avx2, module.__name__
