"""Weight regularizers with Keras 3 names: L1, L2, L1L2 (and l1, l2, l1_l2).

``regularizer(w) -> float`` is the penalty the training loss includes; ``gradient(w, out=None)``
is its derivative, which layers add to their weight gradients in ``backward``.
"""
import numpy as np


class Regularizer:
    def __call__(self, w):
        raise NotImplementedError

    def gradient(self, w, out=None):
        """d penalty / d w, written into ``out`` (same shape and dtype as ``w``) when given."""
        raise NotImplementedError

    def get_config(self):
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


def _factor(value, name):
    value = float(value)
    if not np.isfinite(value) or value < 0.0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value}")
    return value


class L1L2(Regularizer):
    """``l1 * sum(|w|) + l2 * sum(w**2)`` (Keras 3 defaults: 0.0 and 0.0)."""

    def __init__(self, l1=0.0, l2=0.0):
        self.l1 = _factor(l1, "l1")
        self.l2 = _factor(l2, "l2")

    def __call__(self, w):
        w = np.asarray(w)
        penalty = 0.0
        if self.l1:
            penalty += self.l1 * float(np.sum(np.abs(w), dtype=np.float64))
        if self.l2:
            flat = w.reshape(-1)
            penalty += self.l2 * float(np.dot(flat, flat))
        return penalty

    def gradient(self, w, out=None):
        w = np.asarray(w)
        if out is None:
            out = np.empty_like(w)
        if self.l1:
            np.sign(w, out=out)
            out *= self.l1
        else:
            out[...] = 0
        if self.l2:
            # out += 2 l2 w without a temporary: fold the sign term in first.
            if self.l1:
                out /= 2.0 * self.l2
                out += w
                out *= 2.0 * self.l2
            else:
                np.multiply(w, 2.0 * self.l2, out=out)
        return out

    def get_config(self):
        return {"l1": self.l1, "l2": self.l2}


class L1(L1L2):
    """``l1 * sum(|w|)`` (Keras default l1=0.01)."""

    def __init__(self, l1=0.01):
        super().__init__(l1=l1, l2=0.0)

    def get_config(self):
        return {"l1": self.l1}


class L2(L1L2):
    """``l2 * sum(w**2)`` (Keras default l2=0.01)."""

    def __init__(self, l2=0.01):
        super().__init__(l1=0.0, l2=l2)

    def get_config(self):
        return {"l2": self.l2}


l1 = L1
l2 = L2


def l1_l2(l1=0.01, l2=0.01):  # noqa: F811 -- shadows the aliases only inside the signature
    """``L1L2(l1, l2)`` with the classic Keras defaults of 0.01 for both."""
    return L1L2(l1=l1, l2=l2)


_CLASSES = {"L1": L1, "L2": L2, "L1L2": L1L2}
_NAMES = {"l1": L1, "l2": L2, "l1_l2": l1_l2, "l1l2": L1L2}


def serialize(regularizer):
    if regularizer is None:
        return None
    return {"class_name": type(regularizer).__name__, "config": regularizer.get_config()}


def deserialize(config, custom_objects=None):
    if config is None:
        return None
    if isinstance(config, str):
        return get(config)
    if not isinstance(config, dict) or "class_name" not in config:
        raise ValueError(f"cannot deserialize a regularizer from {config!r}")
    name = config["class_name"]
    cls = (custom_objects or {}).get(name) or _CLASSES.get(name)
    if cls is None:
        raise ValueError(f"unknown regularizer class {name!r}; expected one of "
                         f"{sorted(_CLASSES)}")
    return cls.from_config(dict(config.get("config") or {}))


def get(identifier):
    """A Regularizer from None, a name ('l1', 'l2', 'l1_l2'), an instance or a config dict."""
    if identifier is None or isinstance(identifier, Regularizer):
        return identifier
    if isinstance(identifier, dict):
        return deserialize(identifier)
    if isinstance(identifier, str):
        factory = _NAMES.get(identifier.lower()) or _CLASSES.get(identifier)
        if factory is None:
            raise ValueError(f"unknown regularizer {identifier!r}; expected one of "
                             f"{sorted(_NAMES)}")
        return factory()
    raise ValueError(
        f"could not interpret regularizer {identifier!r}: pynn needs a Regularizer (with a "
        "gradient), a name or a config dict"
    )
