"""Inference with the 784-128-10 MLP: ``model.predict(x, verbose=0)`` latency for 1 sample and
throughput for 10,000 samples, pynn with the cnn_core backend (compiled predict path), pynn
with the NumPy reference backend, and PyTorch (inference_mode forward + softmax).

    pytest bench/bench_predict.py --benchmark-columns=median,ops --benchmark-group-by=param:samples,param:threads

pynn's predict uses its default batch_size (32, as Keras); torch runs the whole input as one
batch. extra_info holds samples_per_s.
"""
import functools

import pytest

import pynn
from pynn.benchmark import _pynn_model, _synthetic_mnist, _torch_model

HIDDEN = (128,)
SAMPLES = [1, 10_000]
IMPLS = ["cnn_core", "numpy", pytest.param("torch", marks=pytest.mark.torch)]


@pytest.fixture(autouse=True)
def _restore_backend(request):
    """Cases switch pynn's backend (pynn.benchmark._pynn_model sets it): back to cnn_core after."""
    request.addfinalizer(lambda: pynn.set_backend("cnn_core"))


@functools.lru_cache(maxsize=None)
def _inputs(n):
    return _synthetic_mnist(n)[0]


@pytest.mark.parametrize("samples", SAMPLES)
@pytest.mark.parametrize("impl", IMPLS)
def test_predict(benchmark, record_rates, threads, request, samples, impl):
    x = _inputs(samples)
    if impl == "torch":
        torch = request.getfixturevalue("torch_threads")
        tm = _torch_model(HIDDEN).eval()
        xt = torch.from_numpy(x)

        def torch_predict():
            with torch.inference_mode():
                return torch.softmax(tm(xt), dim=1).numpy()

        torch_predict()
        benchmark(torch_predict)
    else:
        model = _pynn_model(HIDDEN, impl)
        model.predict(x, verbose=0)  # builds (and caches) the compiled predictor
        benchmark(lambda: model.predict(x, verbose=0))
    record_rates(benchmark, samples_per_s=samples)
