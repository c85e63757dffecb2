import os

import pytest

import cnn_core


@pytest.fixture(autouse=True)
def _restore_global_state():
    """Tests may change the thread count or backend; put them back afterwards."""
    threads = cnn_core.get_num_threads()
    yield
    cnn_core.set_num_threads(threads)
    try:
        import pynn.backend

        pynn.backend.set_backend(os.environ.get("PYNN_BACKEND", "cnn_core"))
    except Exception:
        pass
