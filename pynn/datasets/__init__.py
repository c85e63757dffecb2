"""Data sets: ``mnist.load_data()`` (Keras-compatible) and ``digits.load_data()`` (small,
bundled with scikit-learn)."""
from pynn.datasets._errors import DatasetUnavailableError
from pynn.datasets import mnist, digits

__all__ = ["mnist", "digits", "DatasetUnavailableError"]
