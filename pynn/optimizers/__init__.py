"""Optimizers with Keras 3 names and defaults, updating variables in place via the backend.

``get("adam")``, ``get(Adam(...))``, ``get({"class_name": "Adam", "config": {...}})``.
"""
from pynn.optimizers import schedules
from pynn.optimizers.base import Optimizer
from pynn.optimizers.sgd import SGD
from pynn.optimizers.adam import Adam
from pynn.optimizers.adamw import AdamW
from pynn.optimizers.rmsprop import RMSprop
from pynn.optimizers.adagrad import Adagrad

_CLASSES = {cls.__name__: cls for cls in (SGD, Adam, AdamW, RMSprop, Adagrad)}
_BY_LOWER_NAME = {name.lower(): cls for name, cls in _CLASSES.items()}


def serialize(optimizer):
    """``{"module", "class_name", "config"}`` (Keras' layout)."""
    return {"module": "pynn.optimizers", "class_name": type(optimizer).__name__,
            "config": optimizer.get_config(), "registered_name": None}


def deserialize(config, custom_objects=None):
    """An optimizer from ``serialize``'s dict; class names match case-insensitively."""
    if not isinstance(config, dict) or "class_name" not in config:
        raise ValueError(f"cannot deserialize an optimizer from {config!r}")
    name = config["class_name"]
    cls = (custom_objects or {}).get(name) or _CLASSES.get(name) or _BY_LOWER_NAME.get(
        str(name).lower())
    if cls is None:
        raise ValueError(f"unknown optimizer {name!r}; expected one of {sorted(_BY_LOWER_NAME)}")
    return cls.from_config(dict(config.get("config") or {}), custom_objects)


def get(identifier):
    """An Optimizer from a name ('sgd', 'adam', 'adamw', 'rmsprop', 'adagrad'), an instance or a
    config dict. Unknown names raise ValueError listing the known ones."""
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, type) and issubclass(identifier, Optimizer):
        return identifier()
    if isinstance(identifier, dict):
        return deserialize(identifier)
    if isinstance(identifier, str):
        cls = _BY_LOWER_NAME.get(identifier.lower())
        if cls is None:
            raise ValueError(
                f"unknown optimizer {identifier!r}; expected one of {sorted(_BY_LOWER_NAME)}")
        return cls()
    raise ValueError(f"could not interpret optimizer identifier {identifier!r}")


__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "schedules", "get",
           "serialize", "deserialize"]
