"""pynn: fast, deterministic neural networks on the CPU with a Keras-compatible API."""
__version__ = "0.1.0"

from pynn.backend import set_backend, get_backend
from pynn.variables import Variable
from pynn import activations, initializers, regularizers, utils, layers, models
from pynn.models import Model, Sequential
from pynn import losses, metrics, optimizers, callbacks


def __getattr__(name):
    # pynn.datasets pulls in gzip/hashlib and the network stack: load it on first use.
    if name == "datasets":
        import importlib

        return importlib.import_module("pynn.datasets")
    raise AttributeError(f"module 'pynn' has no attribute {name!r}")
