import pytest

try:
    from threadpoolctl import threadpool_limits
except ImportError:  # pragma: no cover - optional
    threadpool_limits = None

import cnn_core


@pytest.fixture(params=[1, 2], ids=lambda n: f"{n}thr")
def threads(request):
    """Run a case with n threads for cnn_core and for NumPy's BLAS alike."""
    n = request.param
    previous = cnn_core.get_num_threads()
    cnn_core.set_num_threads(n)
    if threadpool_limits is not None:
        with threadpool_limits(limits=n):
            yield n
    else:
        yield n
    cnn_core.set_num_threads(previous)


@pytest.fixture
def torch_threads(threads):
    """PyTorch at the case's thread count (skips when torch is absent); restored afterwards."""
    torch = pytest.importorskip("torch")
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    yield torch
    torch.set_num_threads(previous)


@pytest.fixture
def record_rates():
    """record_rates(benchmark, name=amount, ...): extra_info[name] = amount per second of the
    median call (nothing under --benchmark-disable, where there are no stats)."""
    def record(benchmark, **amounts):
        if benchmark.stats is None:
            return
        for name, amount in amounts.items():
            benchmark.extra_info[name] = amount / benchmark.stats["median"]
    return record
