"""pynn: fast, deterministic neural networks on the CPU with a Keras-compatible API."""
__version__ = "0.1.0"

from pynn.backend import set_backend, get_backend
