"""The one global random generator of pynn (docs/design.md, "Dtype and randomness").

Initializers without a seed, the per-epoch shuffle of ``fit`` and unseeded Dropout layers all
draw from ``get_rng()``, so ``set_random_seed(seed)`` followed by the same program gives the
same bits.
"""
import numpy as np

# Created on first use: numpy.random costs ~10 ms of `import pynn`.
_rng = None


def set_random_seed(seed):
    """Reset pynn's global generator (and Python's and NumPy's legacy ones, as Keras does)."""
    global _rng
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an integer, got {seed!r}")
    if seed < 0:
        raise ValueError(f"seed must be non-negative, got {seed}")
    seed = int(seed)
    import random  # Python's own generator, seeded as Keras does; ~2 ms of `import pynn`

    _rng = np.random.default_rng(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)


def get_rng():
    """The global ``numpy.random.Generator``."""
    global _rng
    if _rng is None:
        _rng = np.random.default_rng()
    return _rng


def make_rng(seed=None):
    """A generator for an object with an optional seed: its own when seeded, else the global."""
    if seed is None:
        return get_rng()
    if isinstance(seed, np.random.Generator):
        return seed
    return np.random.default_rng(int(seed))
