"""Layers with Keras 3 names (one per file)."""
from pynn.layers.base import Layer
from pynn.layers.input_layer import Input, InputLayer, KerasTensor
from pynn.layers.dense import Dense
from pynn.layers.flatten import Flatten
from pynn.layers.dropout import Dropout
from pynn.layers.activation import Activation
from pynn.layers.relu import ReLU
from pynn.layers.leaky_relu import LeakyReLU
from pynn.layers.softmax import Softmax
from pynn.layers.reshape import Reshape
from pynn.layers.conv2d import Conv2D
from pynn.layers.max_pooling2d import MaxPooling2D, MaxPool2D
from pynn.layers.average_pooling2d import AveragePooling2D, AvgPool2D
from pynn.layers.global_average_pooling2d import GlobalAveragePooling2D, GlobalAvgPool2D
from pynn.layers.global_max_pooling2d import GlobalMaxPooling2D, GlobalMaxPool2D
from pynn.layers.batch_normalization import BatchNormalization

_LAYER_CLASSES = {cls.__name__: cls for cls in (
    InputLayer, Dense, Flatten, Dropout, Activation, ReLU, LeakyReLU, Softmax, Reshape, Conv2D,
    MaxPooling2D, AveragePooling2D, GlobalAveragePooling2D, GlobalMaxPooling2D,
    BatchNormalization)}
# Keras' short aliases name the same classes (configs store the long names).
_LAYER_CLASSES.update({"MaxPool2D": MaxPool2D, "AvgPool2D": AvgPool2D,
                       "GlobalAvgPool2D": GlobalAvgPool2D, "GlobalMaxPool2D": GlobalMaxPool2D})


def serialize(layer):
    """``{"class_name", "config"}`` for a layer (Keras' layout)."""
    return {"class_name": type(layer).__name__, "config": layer.get_config()}


def deserialize(config, custom_objects=None):
    """A layer from ``serialize``'s dict."""
    if not isinstance(config, dict) or "class_name" not in config:
        raise ValueError(f"cannot deserialize a layer from {config!r}")
    name = config["class_name"]
    cls = (custom_objects or {}).get(name) or _LAYER_CLASSES.get(name)
    if cls is None:
        raise ValueError(f"unknown layer class {name!r}; known: {sorted(_LAYER_CLASSES)}")
    return cls.from_config(dict(config.get("config") or {}))


__all__ = ["Layer", "Input", "InputLayer", "KerasTensor", "Dense", "Flatten", "Dropout",
           "Activation", "ReLU", "LeakyReLU", "Softmax", "Reshape", "Conv2D", "MaxPooling2D",
           "MaxPool2D", "AveragePooling2D", "AvgPool2D", "GlobalAveragePooling2D",
           "GlobalAvgPool2D", "GlobalMaxPooling2D", "GlobalMaxPool2D", "serialize",
           "deserialize", "BatchNormalization"]
