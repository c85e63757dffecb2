"""General matrix multiply: ``out = alpha * op(a) @ op(b) + beta * out``."""
import numpy as np

from cnn_core import _checks


def gemm(a, b, *, trans_a=False, trans_b=False, alpha=1.0, beta=0.0, out=None):
    """``alpha * op(a) @ op(b) + beta * out`` with ``op(x) = x.T if trans else x``.

    a: (M, K), or (K, M) when trans_a; b: (K, N), or (N, K) when trans_b; float32 or float64
    (both the same), any strides. out: (M, N), same dtype, any non-overlapping strides;
    allocated when None (then beta is taken as 0). With beta == 0 the old content of ``out``
    is never read, so NaN or garbage in it cannot leak into the result. Returns out.
    """
    _checks.check_array(a, "a", ndim=2, allow_empty=True)
    _checks.check_array(b, "b", ndim=2, dtype=a.dtype, allow_empty=True)
    alpha = _checks.check_finite_scalar(alpha, "alpha")
    beta = _checks.check_finite_scalar(beta, "beta")
    op_a = a.T if trans_a else a
    op_b = b.T if trans_b else b
    (m, k), (k_b, n) = op_a.shape, op_b.shape
    if k != k_b:
        raise ValueError(
            f"gemm: op(a) has shape ({m}, {k}) but op(b) has shape ({k_b}, {n}): "
            f"inner dimensions {k} and {k_b} differ"
        )
    if out is None:
        out = np.empty((m, n), dtype=a.dtype)
        beta = 0.0
    else:
        _checks.check_out(out, "out", (m, n), a.dtype, contiguous=False)
        if out.size > 1 and 0 in out.strides:
            raise ValueError("out has a zero stride: its elements overlap")
        if np.may_share_memory(out, a) or np.may_share_memory(out, b):
            raise ValueError("out must not share memory with a or b")

    product = op_a @ op_b  # (M, N); zeros when K == 0
    if beta == 0.0:
        out[...] = alpha * product  # never 0 * out: 0 * NaN would be NaN
    else:
        out[...] = alpha * product + beta * out
    return out
