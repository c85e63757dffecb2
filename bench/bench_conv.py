"""Convolution and pooling: cnn_core against the NumPy reference and PyTorch (F.conv2d /
F.max_pool2d / F.avg_pool2d on NCHW tensors, its native layout), forward and backward timed
separately.

    pytest bench/bench_conv.py --benchmark-columns=median,ops --benchmark-group-by=func,param:shape,param:threads

GFLOPS in extra_info: forward 2*b*oh*ow*kh*kw*c*f, backward twice that (dW and dx).
"""
import numpy as np
import pytest

import cnn_core
import pynn.reference

# (batch, height, width, channels, filters, kernel, padding): the two layers of Keras' MNIST
# convnet example, and a deeper 'same' layer.
CONV_SHAPES = [(128, 28, 28, 1, 32, 3, "valid"), (128, 13, 13, 32, 64, 3, "valid"),
               (64, 14, 14, 64, 64, 3, "same")]
POOL_SHAPES = [(128, 26, 26, 32), (128, 11, 11, 64)]  # 2x2 windows, stride 2
IMPLS = ["cnn_core", "numpy", pytest.param("torch", marks=pytest.mark.torch)]
KERNELS = {"cnn_core": cnn_core, "numpy": pynn.reference}


def _shape_id(shape):
    return "x".join(map(str, shape))


def _conv_layer(batch, height, width, channels, filters, kernel, padding):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((batch, height, width, channels)).astype(np.float32)
    w = (rng.standard_normal((kernel, kernel, channels, filters))
         / np.sqrt(kernel * kernel * channels)).astype(np.float32)
    b = (rng.standard_normal(filters) * 0.05).astype(np.float32)
    return x, w, b


def _conv_flops(shape):
    batch, height, width, channels, filters, kernel, padding = shape
    out_h = height if padding == "same" else height - kernel + 1
    out_w = width if padding == "same" else width - kernel + 1
    return 2.0 * batch * out_h * out_w * kernel * kernel * channels * filters


def _torch_conv(torch, x, w, b, kernel, padding):
    xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))).requires_grad_(True)
    wt = torch.from_numpy(np.ascontiguousarray(w.transpose(3, 2, 0, 1))).requires_grad_(True)
    bt = torch.from_numpy(b).requires_grad_(True)
    pad = kernel // 2 if padding == "same" else 0  # odd kernels: 'same' is symmetric
    return xt, wt, bt, lambda: torch.relu(torch.nn.functional.conv2d(xt, wt, bt, padding=pad))


@pytest.mark.parametrize("shape", CONV_SHAPES, ids=_shape_id)
@pytest.mark.parametrize("impl", IMPLS)
def test_conv2d_forward(benchmark, record_rates, threads, request, shape, impl):
    x, w, b = _conv_layer(*shape)
    kernel, padding = shape[5], shape[6]
    if impl == "torch":
        torch = request.getfixturevalue("torch_threads")
        _, _, _, forward = _torch_conv(torch, x, w, b, kernel, padding)

        def run():
            with torch.no_grad():
                return forward()
        benchmark(run)
    else:
        kernels = KERNELS[impl]
        a = kernels.conv2d_forward(x, w, b, padding=padding, activation="relu")
        z = np.empty_like(a)
        benchmark(lambda: kernels.conv2d_forward(x, w, b, padding=padding, activation="relu",
                                                 out=a, z_out=z))
    record_rates(benchmark, gflops=_conv_flops(shape) / 1e9)


@pytest.mark.parametrize("shape", CONV_SHAPES, ids=_shape_id)
@pytest.mark.parametrize("impl", IMPLS)
def test_conv2d_backward(benchmark, record_rates, threads, request, shape, impl):
    x, w, b = _conv_layer(*shape)
    kernel, padding = shape[5], shape[6]
    if impl == "torch":
        torch = request.getfixturevalue("torch_threads")
        xt, wt, bt, forward = _torch_conv(torch, x, w, b, kernel, padding)
        at = forward()
        gt = torch.ones_like(at)
        benchmark(lambda: torch.autograd.grad(at, (xt, wt, bt), gt, retain_graph=True))
    else:
        kernels = KERNELS[impl]
        z = kernels.conv2d_forward(x, w, b, padding=padding)
        a = kernels.conv2d_forward(x, w, b, padding=padding, activation="relu")
        g = np.ones_like(a)
        gw, gb, gx, dz = np.empty_like(w), np.empty_like(b), np.empty_like(x), np.empty_like(a)
        benchmark(lambda: kernels.conv2d_backward(
            x, w, z, a, g, padding=padding, activation="relu", grad_w=gw, grad_b=gb, grad_x=gx,
            dz_out=dz))
    record_rates(benchmark, gflops=2 * _conv_flops(shape) / 1e9)


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("shape", POOL_SHAPES, ids=_shape_id)
@pytest.mark.parametrize("impl", IMPLS)
def test_pool2d_forward_backward(benchmark, threads, request, shape, impl, kind):
    x = np.random.default_rng(2).standard_normal(shape).astype(np.float32)
    if impl == "torch":
        torch = request.getfixturevalue("torch_threads")
        pool = getattr(torch.nn.functional, f"{kind}_pool2d")
        xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))).requires_grad_(True)

        def run():
            out = pool(xt, 2)
            return torch.autograd.grad(out, (xt,), torch.ones_like(out))
    else:
        kernels = KERNELS[impl]
        forward = getattr(kernels, f"{kind}_pool2d_forward")
        backward = getattr(kernels, f"{kind}_pool2d_backward")
        out = forward(x)
        g, gx = np.ones_like(out), np.empty_like(x)

        def run():
            forward(x, out=out)
            return backward(x, g, grad_x=gx)
    benchmark(run)
