"""Training MLPs (pynn.benchmark.TRAIN_MODELS; Adam, sparse softmax cross-entropy, relu hidden
layers, softmax output) on synthetic MNIST-shaped data: pynn with the cnn_core backend, pynn
with the NumPy reference backend, and PyTorch.

    pytest bench/bench_train.py --benchmark-columns=median,ops --benchmark-group-by=func,param:model,param:threads

test_train_step: one ``model.train_on_batch(x, y)`` (torch: zero_grad, forward, cross_entropy,
backward, step). test_fit_epoch: one ``model.fit(..., epochs=1)`` over EPOCH_SAMPLES samples
(torch: the same epoch loop as pynn.benchmark), 3 rounds; the NumPy reference only for the
smallest model (it is slow). extra_info holds samples_per_s and gflops (model FLOPs per sample
from pynn.benchmark._model_flops_per_sample).
"""
import functools

import pytest

import pynn
from pynn.benchmark import (TRAIN_MODELS, _model_flops_per_sample, _pynn_model,
                            _synthetic_mnist, _torch_epoch, _torch_model)

EPOCH_SAMPLES = 6000
MODEL_IDS = [name for name, _, _ in TRAIN_MODELS]
TORCH = pytest.mark.torch


@pytest.fixture(autouse=True)
def _restore_backend(request):
    """Cases switch pynn's backend (pynn.benchmark._pynn_model sets it): back to cnn_core after."""
    request.addfinalizer(lambda: pynn.set_backend("cnn_core"))


@functools.lru_cache(maxsize=None)
def _data(n):
    return _synthetic_mnist(n)


def _torch_setup(torch, hidden):
    model = _torch_model(hidden)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, foreach=True)
    return model, opt


@pytest.mark.parametrize("model", TRAIN_MODELS, ids=MODEL_IDS)
@pytest.mark.parametrize("impl", ["cnn_core", "numpy", pytest.param("torch", marks=TORCH)])
def test_train_step(benchmark, record_rates, threads, request, model, impl):
    _, hidden, batch = model
    x, y = _data(EPOCH_SAMPLES)
    x, y = x[:batch], y[:batch]
    if impl == "torch":
        torch = request.getfixturevalue("torch_threads")
        tm, opt = _torch_setup(torch, hidden)
        xt, yt = torch.from_numpy(x), torch.from_numpy(y)

        def torch_step():
            opt.zero_grad(set_to_none=True)
            loss = torch.nn.functional.cross_entropy(tm(xt), yt)
            loss.backward()
            opt.step()
            return loss

        torch_step()  # optimizer state is created on the first step
        benchmark(torch_step)
    else:
        pm = _pynn_model(hidden, impl)
        pm.train_on_batch(x, y)  # builds the optimizer slots
        benchmark(lambda: pm.train_on_batch(x, y))
    record_rates(benchmark, samples_per_s=batch,
                 gflops=_model_flops_per_sample(hidden) * batch / 1e9)


def _epoch_cases():
    cases = []
    for i, (name, hidden, batch) in enumerate(TRAIN_MODELS):
        impls = ["cnn_core", "numpy", "torch"] if i == 0 else ["cnn_core", "torch"]
        for impl in impls:
            marks = [TORCH] if impl == "torch" else []
            cases.append(pytest.param((name, hidden, batch), impl, id=f"{impl}-{name}",
                                      marks=marks))
    return cases


@pytest.mark.parametrize("model,impl", _epoch_cases())
def test_fit_epoch(benchmark, record_rates, threads, request, model, impl):
    _, hidden, batch = model
    x, y = _data(EPOCH_SAMPLES)
    warm = batch * 4
    if impl == "torch":
        torch = request.getfixturevalue("torch_threads")
        tm, opt = _torch_setup(torch, hidden)
        xt, yt = torch.from_numpy(x), torch.from_numpy(y)
        _torch_epoch(tm, opt, xt, yt, batch, steps=4)
        benchmark.pedantic(_torch_epoch, args=(tm, opt, xt, yt, batch), rounds=3, iterations=1)
    else:
        pm = _pynn_model(hidden, impl)
        pm.fit(x[:warm], y[:warm], batch_size=batch, epochs=1, verbose=0)
        benchmark.pedantic(pm.fit, args=(x, y), rounds=3, iterations=1,
                           kwargs=dict(batch_size=batch, epochs=1, verbose=0))
    record_rates(benchmark, samples_per_s=x.shape[0],
                 gflops=_model_flops_per_sample(hidden) * x.shape[0] / 1e9)
