"""cnn_core.gemm against the NumPy reference: every kernel family, shapes around the tile and
block sizes, all transposes, strided views; bitwise reproducibility across thread counts."""
import os

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st, HealthCheck

import cnn_core
from cnn_core import _gemm
import pynn.reference as ref

# Shapes chosen to cross the register tiles (MR 4/6/8, NR 8/16/32) and the cache blocks
# (KB 256/384, NB 256/384, MB 1024/1536) from below and above.
SHAPES = [
    (1, 1, 1), (1, 7, 1), (7, 1, 5), (2, 3, 5), (13, 17, 19), (8, 32, 32), (9, 33, 31),
    (31, 385, 33), (64, 784, 128), (97, 257, 389), (1, 1000, 3), (1000, 3, 1), (3, 5, 1100),
    (200, 1, 300), (6, 767, 48), (1537, 20, 7),
]
TOL = {np.float32: 2e-6, np.float64: 1e-13}


def _expected(a, b, trans_a, trans_b, alpha=1.0, beta=0.0, c=None):
    a64 = (a.T if trans_a else a).astype(np.float64)
    b64 = (b.T if trans_b else b).astype(np.float64)
    r = alpha * (a64 @ b64)
    if beta != 0.0:
        r = r + beta * c.astype(np.float64)
    return r


def _assert_close(got, want, dtype, k):
    # float32: error grows with the length of the dot products (K).
    scale = np.abs(want).max() if want.size else 1.0
    tol = TOL[dtype] * max(1.0, np.sqrt(k)) * max(1.0, scale)
    np.testing.assert_allclose(got, want, rtol=0, atol=tol)


def _operands(rng, m, k, n, dtype, trans_a, trans_b):
    a = rng.standard_normal((k, m) if trans_a else (m, k)).astype(dtype)
    b = rng.standard_normal((n, k) if trans_b else (k, n)).astype(dtype)
    return a, b


@pytest.fixture(params=list(_gemm.cpu_kernels()))
def kernel(request):
    """Run the test with each micro-kernel family this CPU supports."""
    previous = _gemm.kernel_name()
    _gemm._select_kernel(request.param)
    yield request.param
    _gemm._select_kernel(previous)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("trans", [(False, False), (True, False), (False, True), (True, True)],
                         ids=["NN", "TN", "NT", "TT"])
def test_gemm_matches_reference(kernel, dtype, shape, trans):
    m, k, n = shape
    rng = np.random.default_rng(hash((shape, trans)) % 2**32)
    a, b = _operands(rng, m, k, n, dtype, *trans)
    got = cnn_core.gemm(a, b, trans_a=trans[0], trans_b=trans[1])
    want = ref.gemm(a, b, trans_a=trans[0], trans_b=trans[1])
    assert got.dtype == dtype and got.shape == (m, n)
    _assert_close(got, want.astype(np.float64), dtype, k)
    _assert_close(got, _expected(a, b, *trans), dtype, k)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_alpha_beta_and_out(kernel, dtype):
    rng = np.random.default_rng(3)
    a, b = _operands(rng, 37, 300, 45, dtype, False, False)
    c0 = rng.standard_normal((37, 45)).astype(dtype)
    out = c0.copy()
    res = cnn_core.gemm(a, b, alpha=-0.5, beta=2.0, out=out)
    assert res is out
    _assert_close(out, _expected(a, b, False, False, -0.5, 2.0, c0), dtype, 300)
    ref_out = c0.copy()
    ref.gemm(a, b, alpha=-0.5, beta=2.0, out=ref_out)
    _assert_close(out, ref_out.astype(np.float64), dtype, 300)


def test_beta_zero_never_reads_out():
    a = np.ones((5, 4), np.float32)
    b = np.ones((4, 3), np.float32)
    out = np.full((5, 3), np.nan, np.float32)
    cnn_core.gemm(a, b, out=out)
    np.testing.assert_array_equal(out, np.full((5, 3), 4.0, np.float32))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_strided_views_and_fortran_order(kernel, dtype):
    rng = np.random.default_rng(4)
    big_a = rng.standard_normal((90, 130)).astype(dtype)
    big_b = rng.standard_normal((140, 70)).astype(dtype)
    a = big_a[::2, 1::3]                       # (45, 43), both strides non-unit
    b = np.asfortranarray(big_b[:43, ::-2])   # F order, reversed columns copied
    b_view = big_b[5:48, ::-2]                 # negative column stride
    out_big = np.zeros((100, 100), dtype)
    out = out_big[:90:2, 3:3 + 35]             # strided output
    cnn_core.gemm(a, b, out=out)
    _assert_close(out, _expected(a, b, False, False), dtype, 43)
    _assert_close(cnn_core.gemm(a, b_view), _expected(a, b_view, False, False), dtype, 43)
    # Elements of out_big outside the view are untouched.
    mask = np.ones(out_big.shape, bool)
    mask[:90:2, 3:38] = False
    assert not out_big[mask].any()


def test_zero_k_gives_beta_c():
    a = np.empty((3, 0), np.float64)
    b = np.empty((0, 4), np.float64)
    c = np.full((3, 4), 2.0)
    cnn_core.gemm(a, b, beta=0.5, out=c)
    np.testing.assert_array_equal(c, np.full((3, 4), 1.0))
    np.testing.assert_array_equal(cnn_core.gemm(a, b), np.zeros((3, 4)))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    m=st.integers(1, 70), k=st.integers(1, 420), n=st.integers(1, 70),
    trans_a=st.booleans(), trans_b=st.booleans(),
    dtype=st.sampled_from([np.float32, np.float64]),
    alpha=st.sampled_from([1.0, -1.0, 0.25]), beta=st.sampled_from([0.0, 1.0, -3.0]),
    seed=st.integers(0, 2**31 - 1),
)
def test_gemm_property(m, k, n, trans_a, trans_b, dtype, alpha, beta, seed):
    rng = np.random.default_rng(seed)
    a, b = _operands(rng, m, k, n, dtype, trans_a, trans_b)
    c0 = rng.standard_normal((m, n)).astype(dtype)
    out = c0.copy()
    cnn_core.gemm(a, b, trans_a=trans_a, trans_b=trans_b, alpha=alpha, beta=beta, out=out)
    want = ref.gemm(a, b, trans_a=trans_a, trans_b=trans_b, alpha=alpha, beta=beta,
                    out=c0.copy())
    _assert_close(out, want.astype(np.float64), dtype, k)


@pytest.mark.parametrize("shape", [(64, 784, 128), (300, 500, 257), (1100, 70, 900)])
@pytest.mark.parametrize("trans", [(False, False), (True, False), (False, True)])
def test_bitwise_identical_for_any_thread_count(restore_threads, shape, trans):
    m, k, n = shape
    rng = np.random.default_rng(5)
    a, b = _operands(rng, m, k, n, np.float32, *trans)
    results = []
    for threads in (1, 2, 3, 4):
        cnn_core.set_num_threads(threads)
        results.append(cnn_core.gemm(a, b, trans_a=trans[0], trans_b=trans[1]).tobytes())
    assert all(r == results[0] for r in results[1:])


# Tall C with a small B (M > N, the packed K block of B <= 128 KiB): threads split the rows
# (cnn_gemm_private_rows). 784x32x128 is dW of a 32-sample batch; 500x600x40 has two K
# blocks (beta applies to the first only) and a partial column panel; 301x64x20 partial
# row and column panels.
@pytest.mark.parametrize("shape", [(784, 32, 128), (500, 600, 40), (301, 64, 20)])
@pytest.mark.parametrize("trans", [(False, False), (True, False), (False, True)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_tall_c_split_by_rows_is_bitwise_identical_for_any_thread_count(
        restore_threads, shape, trans, dtype):
    m, k, n = shape
    rng = np.random.default_rng(7)
    a, b = _operands(rng, m, k, n, dtype, *trans)
    c0 = rng.standard_normal((m, n)).astype(dtype)
    results = []
    for threads in (1, 2, 3, 4):
        cnn_core.set_num_threads(threads)
        out = c0.copy()
        cnn_core.gemm(a, b, trans_a=trans[0], trans_b=trans[1], alpha=0.75, beta=0.5, out=out)
        results.append(out)
    want = ref.gemm(a, b, trans_a=trans[0], trans_b=trans[1], alpha=0.75, beta=0.5,
                    out=c0.copy())
    _assert_close(results[0], want.astype(np.float64), dtype, k)
    assert all(r.tobytes() == results[0].tobytes() for r in results[1:])


def test_tall_c_split_by_rows_applies_the_epilogue_once_per_tile(restore_threads):
    rng = np.random.default_rng(8)
    x = rng.standard_normal((301, 64)).astype(np.float32)
    w = rng.standard_normal((64, 20)).astype(np.float32)
    bias = rng.standard_normal(20).astype(np.float32)
    outs = []
    for threads in (1, 2, 4):
        cnn_core.set_num_threads(threads)
        outs.append(cnn_core.dense_forward(x, w, bias, "relu"))
    np.testing.assert_allclose(outs[0], np.maximum(x.astype(np.float64) @ w + bias, 0),
                               rtol=1e-5, atol=1e-5)
    assert all(o.tobytes() == outs[0].tobytes() for o in outs[1:])


@pytest.mark.parametrize(
    "args, kwargs, exc, words",
    [
        ((np.ones((2, 3), np.float32), np.ones((4, 5), np.float32)), {}, ValueError, "inner"),
        ((np.ones(3, np.float32), np.ones((3, 2), np.float32)), {}, ValueError, "2-D"),
        ((np.ones((2, 3), np.int64), np.ones((3, 2), np.int64)), {}, TypeError, "float32"),
        ((np.ones((2, 3), np.float32), np.ones((3, 2), np.float64)), {}, TypeError, "dtype"),
        (([[1.0]], np.ones((1, 1))), {}, TypeError, "ndarray"),
        ((np.ones((2, 3), np.float32), np.ones((3, 2), np.float32)),
         {"out": np.empty((3, 3), np.float32)}, ValueError, "shape"),
        ((np.ones((2, 3), np.float32), np.ones((3, 2), np.float32)),
         {"out": np.empty((2, 2), np.float64)}, TypeError, "dtype"),
        ((np.ones((2, 3), np.float32), np.ones((3, 2), np.float32)),
         {"alpha": float("nan")}, ValueError, "alpha"),
    ],
)
def test_bad_input_raises_clear_errors(args, kwargs, exc, words):
    with pytest.raises(exc, match=words):
        cnn_core.gemm(*args, **kwargs)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [1, 5, 15, 17, 31, 70, 129])
def test_one_row_writes_its_row_only(kernel, dtype, n):
    # A single sample takes the GEMV, whose last vector of a row is masked: the elements after
    # the row (here the rest of a larger array) must keep their values.
    rng = np.random.default_rng(n)
    x = rng.standard_normal((1, 40)).astype(dtype)
    w = rng.standard_normal((40, n)).astype(dtype)
    big = np.full((2, n + 40), 7.0, dtype)
    cnn_core.gemm(x, w, out=big[:1, :n])
    _assert_close(big[:1, :n], x.astype(np.float64) @ w, dtype, 40)
    assert np.all(big[0, n:] == 7.0) and np.all(big[1] == 7.0)


def test_out_aliasing_input_is_rejected():
    a = np.ones((4, 4), np.float32)
    with pytest.raises(ValueError, match="share memory"):
        cnn_core.gemm(a, a, out=a)


# gemm checks plainly valid operands with a few C tests and leaves everything else to the full
# Python checks: each case below must still raise, or still compute, exactly as they say.
def _ones(shape, dtype=np.float32):
    return np.ones(shape, dtype)


@pytest.mark.parametrize("make, exc, words", [
    (lambda: (_ones((4, 4)), _ones((4, 4)), {"out": _ones((8, 8))[2:6, 3:7]}), None, None),
    (lambda: (_ones((8, 8))[:4, :4], _ones((4, 4)), {"out": _ones((8, 8))[4:, 4:]}), None, None),
    (lambda: (_ones((6, 6)), _ones((6, 6)), {"out": None}), None, None),
    (lambda: (_ones((3, 2)), _ones((3, 2)), {"trans_a": 1, "alpha": 2, "beta": 0}), None, None),
    (lambda: (_ones((2, 3)), _ones((3, 2)), {"alpha": np.float32(0.5)}), None, None),
    (lambda: (_ones((2, 3)).view(_Subclass), _ones((3, 2)), {}), None, None),
    (lambda: (_ones((0, 3)), _ones((3, 2)), {"out": _ones((0, 2))}), None, None),
    (lambda: _sharing_out(), ValueError, "share memory"),
    (lambda: (_ones((2, 3)), _ones((3, 2)),
              {"out": np.lib.stride_tricks.as_strided(_ones(2), (2, 2), (0, 4))}),
     ValueError, "zero stride|read-only"),
    (lambda: (_ones((2, 3)), _ones((3, 2)), {"out": _ones((2, 2)).copy().view()}), None, None),
    (lambda: (_ones((2, 3)), _ones((3, 2)), {"out": _readonly(_ones((2, 2)))}),
     ValueError, "read-only"),
    (lambda: (_ones((2, 3)), _ones((3, 2)), {"beta": float("inf"), "out": _ones((2, 2))}),
     ValueError, "beta"),
    (lambda: (_ones((2, 3)), _ones((2, 3)), {"trans_b": True, "out": _ones((2, 2))}), None, None),
    (lambda: (_ones((2, 3)), _ones((2, 3)), {"trans_b": False}), ValueError, "inner"),
    (lambda: (_odd_strides(), _ones((3, 2)), {}), ValueError, "whole elements"),
])
def test_quick_and_full_checks_agree(make, exc, words):
    a, b, kwargs = make()
    if exc is not None:
        with pytest.raises(exc, match=words):
            cnn_core.gemm(a, b, **kwargs)
        return
    ta, tb = bool(kwargs.get("trans_a")), bool(kwargs.get("trans_b"))
    out = kwargs.get("out")
    before = None if out is None else np.array(out, dtype=np.float64)
    got = cnn_core.gemm(a, b, **kwargs)
    alpha, beta = float(kwargs.get("alpha", 1.0)), float(kwargs.get("beta", 0.0))
    want = alpha * (np.asarray(a).T if ta else np.asarray(a)).astype(np.float64) @ (
        np.asarray(b).T if tb else np.asarray(b))
    if before is not None and beta != 0:
        want = want + beta * before
    assert out is None or got is out
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def _readonly(x):
    x.flags.writeable = False
    return x


def _odd_strides():
    """A float32 view whose row stride (10 bytes) is not a whole number of elements."""
    return np.lib.stride_tricks.as_strided(np.zeros(16, np.float32), (2, 3), (10, 4))


def _sharing_out():
    base = _ones((8, 8))
    return base[:4, :4], _ones((4, 4)), {"out": base[2:6, 2:6]}


class _Subclass(np.ndarray):
    pass


def test_build_info_reports_kernel_and_openmp():
    info = cnn_core.build_info()
    assert info["kernel"] in ("avx512", "avx2", "reference")
    assert info["kernel"] in info["cpu_kernels"]
    assert isinstance(info["openmp"], bool)
    assert info["num_threads"] == cnn_core.get_num_threads()


def test_set_num_threads_validates(restore_threads):
    with pytest.raises(ValueError):
        cnn_core.set_num_threads(0)
    with pytest.raises(TypeError):
        cnn_core.set_num_threads(1.5)
    cnn_core.set_num_threads(3)
    assert cnn_core.get_num_threads() == 3


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [70, 10], ids=["n70", "narrow_n10"])
def test_a_row_gives_the_same_bits_in_any_batch(kernel, dtype, n):
    """Row i of op(a) @ b does not depend on how many rows come with it (full or partial
    register tiles do the same FMAs in the same order; a narrow C computed as C^T = B^T A^T
    too): predict(x[:1]) == predict(x)[:1]."""
    rng = np.random.default_rng(8)
    a = rng.standard_normal((37, 300)).astype(dtype)
    b = rng.standard_normal((300, n)).astype(dtype)
    full = cnn_core.gemm(a, b)
    for rows in (1, 2, 3, 5, 7, 8, 9, 17):
        assert cnn_core.gemm(a[:rows], b).tobytes() == full[:rows].tobytes()


def test_a_smaller_openmp_team_than_asked_still_computes_everything(tmp_path):
    """OMP_THREAD_LIMIT (or OMP_DYNAMIC) can give a parallel region fewer threads than
    set_num_threads asks for: the work split must follow the team, not the request. N = 10
    splits rows between threads (fewer column panels than threads), N = 128 columns."""
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent("""
        import numpy as np, cnn_core
        cnn_core.set_num_threads(4)
        rng = np.random.default_rng(0)
        for m, k, n in [(256, 300, 10), (64, 784, 128), (1000, 64, 32)]:
            a = rng.standard_normal((m, k)).astype(np.float32)
            b = rng.standard_normal((k, n)).astype(np.float32)
            want = a.astype(np.float64) @ b.astype(np.float64)
            np.testing.assert_allclose(cnn_core.gemm(a, b), want, rtol=1e-4, atol=1e-3)
        print("ok")
    """)
    env = dict(os.environ, OMP_THREAD_LIMIT="1")
    # Outside the source tree, so the child imports the cnn_core this test runs against.
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=env, cwd=tmp_path, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]
