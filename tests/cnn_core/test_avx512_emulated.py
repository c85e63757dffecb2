"""The AVX-512 kernel family on a CPU without AVX-512: its kernels' code compiled against an
AVX2 emulation of the _mm512 intrinsics (avx512_emulation/), driven through the real GEMM
driver with the AVX-512 context (8 x 32 f32 / 8 x 16 f64 tiles, its cache blocks, row
variants, copyb kernels and GEMV). The wheel ships these kernels to every AVX-512 machine;
this checks their logic on one without it. What it cannot check: the compiler's AVX-512 code
generation, the hardware's mask and fault behaviour, and the run-time dispatch to them.

Each element is one FMA chain in increasing k whatever the tile, so with the same K blocks
the emulated AVX-512 results must equal the AVX2 family's bit for bit: always in float64
(KB 256 in both), while K fits one block of both in float32 (KB 384 and 256: K <= 256).
Beyond, float32 is checked against float64 and across thread counts."""
import ctypes
import pathlib
import shutil
import subprocess

import numpy as np
import pytest

import cnn_core
from cnn_core import _gemm

HERE = pathlib.Path(__file__).parent / "avx512_emulation"
INCLUDE = pathlib.Path(cnn_core.__file__).parent / "include"


@pytest.fixture(scope="module")
def emulated(c_toolchain):
    if "avx2" not in _gemm.cpu_kernels():
        pytest.skip("the emulation runs on AVX2; this CPU has no AVX2")
    # The package's flags (setup.py), warnings on but not fatal: a compiler's new warning must
    # not turn into a failure here.
    flags = ["-O3", "-ffp-contract=off", "-fno-math-errno", "-Wno-unknown-pragmas"]
    if c_toolchain.accepts("-fopenmp"):
        flags.append("-fopenmp")
    lib_path = c_toolchain.shared_library([HERE / "gemm_avx512_emulated.c"],
                                          "gemm_avx512_emulated.so", flags, [INCLUDE])
    objdump = shutil.which("objdump")
    if objdump:
        asm = subprocess.run([objdump, "-d", str(lib_path)], capture_output=True,
                             text=True).stdout
        # No zmm or mask register may appear (the avx2 target attribute is what rules out
        # EVEX-encoded ymm instructions; this only catches a header that slipped through).
        for marker in ("%zmm", "%k0", "%k1", "%k2", "%k3", "%k4", "%k5", "%k6", "%k7", "{%"):
            assert marker not in asm, f"an AVX-512 instruction ({marker}) reached the build"
    lib = ctypes.CDLL(str(lib_path))
    i64, ptr = ctypes.c_int64, ctypes.c_void_p
    for name, real in (("emu_gemm_f32", ctypes.c_float), ("emu_gemm_f64", ctypes.c_double)):
        fn = getattr(lib, name)
        fn.restype = ctypes.c_int
        fn.argtypes = [i64, i64, i64, real, ptr, i64, i64, ptr, i64, i64, real, ptr, i64, i64,
                       ctypes.c_int]
    lib.emu_dense_f32.restype = ctypes.c_int
    lib.emu_dense_f32.argtypes = [i64, i64, i64, ptr, ptr, ptr, ptr, ptr, ctypes.c_int,
                                  ctypes.c_int]
    lib.emu_tile_f32.restype = ctypes.c_int
    assert (lib.emu_tile_f32(0), lib.emu_tile_f32(1)) == (8, 32)
    return lib


def _strides(x):
    return x.strides[0] // x.itemsize, x.strides[1] // x.itemsize


def emu_gemm(lib, a, b, trans_a=False, trans_b=False, alpha=1.0, beta=0.0, out=None,
             threads=1):
    """out = alpha op(a) op(b) + beta out through the emulated AVX-512 family."""
    opa, opb = (a.T if trans_a else a), (b.T if trans_b else b)
    m, k = opa.shape
    n = opb.shape[1]
    if out is None:
        out = np.zeros((m, n), a.dtype)
    fn = lib.emu_gemm_f32 if a.dtype == np.float32 else lib.emu_gemm_f64
    status = fn(m, n, k, alpha, opa.ctypes.data, *_strides(opa), opb.ctypes.data,
                *_strides(opb), beta, out.ctypes.data, *_strides(out), threads)
    assert status == 0
    return out


# Shapes around the AVX-512 tiles (MR 8, NR 32 / 16) and its f32 K block (384): single rows
# (GEMV), row tails of 1-7 merged or not, narrow C (N < NR and M > N: computed transposed),
# partial column panels, several K blocks, and a batch-sized and a large M (private, shared
# paths).
SHAPES = [(1, 300, 70), (1, 5, 1), (2, 3, 5), (7, 33, 31), (8, 32, 32), (9, 64, 33),
          (12, 100, 20), (17, 385, 64), (33, 256, 100), (64, 100, 10), (40, 70, 31),
          (64, 784, 128), (100, 40, 250), (300, 500, 20), (300, 500, 257), (600, 200, 96),
          (1100, 70, 900)]
TRANS = [(False, False), (True, False), (False, True), (True, True)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("trans", TRANS, ids=["NN", "TN", "NT", "TT"])
def test_emulated_avx512_matches_float64_and_avx2_bits(emulated, dtype, shape, trans):
    m, k, n = shape
    rng = np.random.default_rng(m * 10007 + k * 101 + n)
    a = rng.standard_normal((k, m) if trans[0] else (m, k)).astype(dtype)
    b = rng.standard_normal((n, k) if trans[1] else (k, n)).astype(dtype)
    got = emu_gemm(emulated, a, b, *trans)
    want = (a.T if trans[0] else a).astype(np.float64) @ (b.T if trans[1] else b)
    tol = (2e-6 if dtype == np.float32 else 1e-13) * max(1.0, np.sqrt(k)) * np.abs(want).max()
    np.testing.assert_allclose(got, want, rtol=0, atol=tol)
    if k <= 256 or dtype == np.float64:
        previous = _gemm.kernel_name()
        try:
            _gemm._select_kernel("avx2")
            avx2 = cnn_core.gemm(a, b, trans_a=trans[0], trans_b=trans[1])
        finally:
            _gemm._select_kernel(previous)
        assert got.tobytes() == avx2.tobytes()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_emulated_avx512_alpha_beta_and_strided_out(emulated, dtype):
    rng = np.random.default_rng(3)
    a = rng.standard_normal((50, 700)).astype(dtype)
    b = rng.standard_normal((700, 45)).astype(dtype)
    big = rng.standard_normal((60, 100)).astype(dtype)
    out = big[5:55, 10:100:2]  # strided columns: the edge-tile path
    before = out.astype(np.float64)
    emu_gemm(emulated, a, b, alpha=0.5, beta=-2.0, out=out)
    want = 0.5 * (a.astype(np.float64) @ b) - 2.0 * before
    tol = (2e-6 if dtype == np.float32 else 1e-13) * np.sqrt(700) * np.abs(want).max()
    np.testing.assert_allclose(out, want, rtol=0, atol=tol)
    untouched = big.copy()
    untouched[5:55, 10:100:2] = out
    assert big.tobytes() == untouched.tobytes()  # nothing written outside the view


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [1, 5, 15, 17, 31, 70, 129])
def test_emulated_avx512_gemv_writes_its_row_only(emulated, dtype, n):
    # One sample takes the GEMV, whose last vector of each row is masked: the elements after
    # the row (here the rest of a larger array) must keep their values.
    rng = np.random.default_rng(n)
    x = rng.standard_normal((1, 40)).astype(dtype)
    w = rng.standard_normal((40, n)).astype(dtype)
    big = np.full((2, n + 40), 7.0, dtype)
    emu_gemm(emulated, x, w, out=big[:1, :n])
    np.testing.assert_allclose(big[0, :n], (x.astype(np.float64) @ w)[0], rtol=1e-5,
                               atol=1e-5)
    assert np.all(big[0, n:] == 7.0) and np.all(big[1] == 7.0)


@pytest.mark.skipif(not cnn_core.has_openmp(), reason="built without OpenMP")
@pytest.mark.parametrize("shape", [(64, 784, 128), (784, 32, 128), (300, 500, 257),
                                   (1100, 70, 900)])
@pytest.mark.parametrize("trans", TRANS[:3], ids=["NN", "TN", "NT"])
def test_emulated_avx512_bitwise_identical_for_any_thread_count(emulated, shape, trans):
    m, k, n = shape
    rng = np.random.default_rng(11)
    a = rng.standard_normal((k, m) if trans[0] else (m, k)).astype(np.float32)
    b = rng.standard_normal((n, k) if trans[1] else (k, n)).astype(np.float32)
    results = [emu_gemm(emulated, a, b, *trans, threads=t).tobytes() for t in (1, 2, 3, 4)]
    assert all(r == results[0] for r in results[1:])


@pytest.mark.parametrize("shape", [(1, 784, 128), (37, 100, 64), (256, 300, 40),
                                   (256, 300, 10)])
def test_emulated_avx512_dense_epilogue(emulated, shape):
    m, k, n = shape
    rng = np.random.default_rng(4)
    x = rng.standard_normal((m, k)).astype(np.float32)
    w = rng.standard_normal((k, n)).astype(np.float32)
    bias = rng.standard_normal(n).astype(np.float32)
    out = np.empty((m, n), np.float32)
    z = np.empty((m, n), np.float32)
    relu = 1
    assert emulated.emu_dense_f32(m, n, k, x.ctypes.data, w.ctypes.data, bias.ctypes.data,
                                  out.ctypes.data, z.ctypes.data, relu, 2) == 0
    want_z = x.astype(np.float64) @ w + bias
    np.testing.assert_allclose(z, want_z, rtol=0, atol=2e-6 * np.sqrt(k) * np.abs(want_z).max())
    assert np.array_equal(out, np.maximum(z, 0))
