"""Dense (fully connected) layer: ``z = x W + b``, ``a = f(z)``, and its gradients."""
import numpy as np

from cnn_core import _checks
from pynn.reference.activations import _backward, _forward


def dense_forward(x, w, b, activation="identity", *, param=None, out=None, z_out=None):
    """``a = f(x @ w + b)``.

    x: (batch, in), w: (in, units), b: (units,) or None; all float32 or all float64.
    out: (batch, units) receives a; z_out, when given, (batch, units) receives z.
    Returns out.
    """
    _checks.check_dense_inputs(x, w, b)
    name, _, param = _checks.resolve_activation(activation, param)
    batch, units = x.shape[0], w.shape[1]
    out = _checks.check_out(out, "out", (batch, units), x.dtype)
    if z_out is not None:
        _checks.check_out(z_out, "z_out", (batch, units), x.dtype)
        if np.may_share_memory(z_out, out):
            raise ValueError("z_out must not share memory with out")
    for arr, arr_name in ((x, "x"), (w, "w")):
        if np.may_share_memory(out, arr) or (z_out is not None and np.may_share_memory(z_out, arr)):
            raise ValueError(f"out/z_out must not share memory with {arr_name}")

    z = x @ w
    if b is not None:
        z += b  # broadcast over the batch rows
    if z_out is not None:
        z_out[...] = z
    out[...] = _forward(name, z, param)
    return out


def dense_backward(x, w, z, a, grad_out, activation="identity", *, param=None, grad_w=None,
                   grad_b=None, grad_x=None, need_grad_x=True, dz_out=None):
    """Gradients of a dense layer from ``grad_out = dL/da``.

    x: (batch, in), w: (in, units); z, a, grad_out: (batch, units) C-contiguous, as
    dense_forward produced them (pass the same array twice for identity).
        dz     = grad_out * f'(z)        (batch, units)
        grad_w = x^T dz                  (in, units)
        grad_b = sum(dz, axis=0)         (units,)
        grad_x = dz W^T                  (batch, in), None when need_grad_x is False
    grad_w / grad_b / grad_x: optional output buffers. dz_out: optional (batch, units) buffer
    that receives dz (may be grad_out itself). Returns (grad_w, grad_b, grad_x).
    """
    _checks.check_dense_inputs(x, w, None)
    batch, n_in = x.shape
    units = w.shape[1]
    for arr, arr_name in ((z, "z"), (a, "a"), (grad_out, "grad_out")):
        _checks.check_array(arr, arr_name, ndim=2, dtype=x.dtype)
        _checks.check_contiguous(arr, arr_name)
        if arr.shape != (batch, units):
            raise ValueError(f"{arr_name} has shape {arr.shape}, expected {(batch, units)}")
    name, _, param = _checks.resolve_activation(activation, param)
    grad_w = _checks.check_out(grad_w, "grad_w", (n_in, units), x.dtype)
    grad_b = _checks.check_out(grad_b, "grad_b", (units,), x.dtype)
    if need_grad_x:
        grad_x = _checks.check_out(grad_x, "grad_x", (batch, n_in), x.dtype)
    else:
        grad_x = None
    if dz_out is not None:
        _checks.check_out(dz_out, "dz_out", (batch, units), x.dtype)

    dz = _backward(name, grad_out, z, a, param)
    if dz_out is not None:
        dz_out[...] = dz
    grad_w[...] = x.T @ dz
    grad_b[...] = np.sum(dz, axis=0)
    if grad_x is not None:
        grad_x[...] = dz @ w.T
    return grad_w, grad_b, grad_x
