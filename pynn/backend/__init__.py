"""Backend selection: the compiled core (``cnn_core``) or the NumPy reference.

Both expose the same functions with the same signatures (docs/kernel_api.md), so the rest of
pynn calls ``get_backend().<function>`` and never knows which one runs. The NumPy reference is
the definition of every kernel and the one to switch to when debugging::

    pynn.set_backend("numpy")      # textbook NumPy equations
    pynn.set_backend("cnn_core")   # compiled, parallel (default)
"""
import os

_BACKENDS = ("cnn_core", "numpy")
_current = None


def _load(name):
    if name == "cnn_core":
        import cnn_core

        return cnn_core
    import pynn.reference

    return pynn.reference


def set_backend(name):
    """Select the kernel backend: ``"cnn_core"`` (compiled, default) or ``"numpy"``."""
    global _current
    if not isinstance(name, str) or name.lower() not in _BACKENDS:
        raise ValueError(f"unknown backend {name!r}; expected one of {_BACKENDS}")
    _current = _load(name.lower())
    return _current


def get_backend():
    """The backend module in use (``cnn_core`` or ``pynn.reference``)."""
    global _current
    if _current is None:
        set_backend(os.environ.get("PYNN_BACKEND", "cnn_core"))
    return _current


def backend_name():
    return "numpy" if get_backend().__name__ == "pynn.reference" else "cnn_core"
