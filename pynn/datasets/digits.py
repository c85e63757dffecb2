"""The 8x8 handwritten digits bundled with scikit-learn (1797 images), MNIST-style.

A small data set that needs no download: handy for examples and tests. Requires the optional
``scikit-learn`` package.
"""
import numpy as np


def load_data(test_split=0.2, seed=0):
    """``((x_train, y_train), (x_test, y_test))``: uint8 images (n, 8, 8) scaled from the
    original 0-16 to 0-255 like MNIST (so the same ``x / 255.0`` preprocessing applies) and
    uint8 labels 0-9, shuffled with ``seed`` and split ``test_split`` for testing."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise ImportError(
            "pynn.datasets.digits needs scikit-learn (pip install scikit-learn); "
            "use pynn.datasets.mnist for the full MNIST set") from None
    if not 0.0 <= test_split < 1.0:
        raise ValueError(f"test_split must be in [0, 1), got {test_split}")
    digits = load_digits()
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)
    labels = digits.target.astype(np.uint8)
    order = np.random.default_rng(seed).permutation(len(labels))
    images, labels = images[order], labels[order]
    n_test = int(round(len(labels) * test_split))
    n_train = len(labels) - n_test
    return (images[:n_train], labels[:n_train]), (images[n_train:], labels[n_train:])
