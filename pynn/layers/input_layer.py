"""``Input`` / ``InputLayer`` and ``KerasTensor``: the symbolic values of the functional API.

``inp = Input(shape=(2,))`` is a KerasTensor of shape ``(None, 2)``; calling a layer on a
KerasTensor builds the layer and returns a new KerasTensor that remembers (layer, parent), so a
``Model(inputs, outputs)`` can walk the chain back from its outputs.
"""
import numpy as np

from pynn.layers.base import Layer, standardize_shape


class KerasTensor:
    """Symbolic tensor: ``shape`` (with the batch axis, None when unknown), ``dtype``, and the
    (layer, parent tensor) that produced it."""

    def __init__(self, shape, dtype="float32", layer=None, parent=None, name=None):
        self.shape = tuple(shape)
        self.dtype = dtype
        self.ndim = len(self.shape)
        self._keras_history = (layer, parent)
        self.name = name or (layer.name if layer is not None else "keras_tensor")

    @property
    def layer(self):
        return self._keras_history[0]

    @property
    def parent(self):
        return self._keras_history[1]

    def __repr__(self):
        return f"<KerasTensor shape={self.shape}, dtype={self.dtype}, name={self.name}>"


class InputLayer(Layer):
    """The entry of a model: identity on data of shape ``shape`` (batch axis excluded)."""

    def __init__(self, shape=None, batch_size=None, dtype=None, sparse=None, batch_shape=None,
                 input_tensor=None, name=None, **kwargs):
        kwargs.pop("input_shape", None)
        super().__init__(name=name, dtype=dtype, **kwargs)
        if sparse:
            raise NotImplementedError("sparse inputs are not supported")
        if batch_shape is not None:
            batch_shape = standardize_shape(batch_shape, "batch_shape")
            shape, batch_size = batch_shape[1:], batch_shape[0]
        if shape is None:
            raise ValueError("Input needs a shape, e.g. Input(shape=(784,))")
        shape = standardize_shape(shape, "shape")
        self.batch_size = batch_size
        self.input_shape_arg = shape
        self._ensure_built(shape)
        self.output = KerasTensor((batch_size,) + shape, dtype=self.dtype, layer=self,
                                  parent=None, name=self.name)

    @property
    def batch_shape(self):
        return (self.batch_size,) + tuple(self.input_shape_arg)

    def forward(self, x, training=False):
        return x

    def call(self, x, training=False):
        return np.array(x, copy=True)

    def backward(self, grad_y, wrt_preactivation=False, need_grad_x=True):
        self.grads = []
        return grad_y if need_grad_x else None

    def get_config(self):
        return {"batch_shape": list(self.batch_shape), "dtype": self.dtype, "sparse": False,
                "name": self.name}


def Input(shape=None, batch_size=None, dtype=None, sparse=None, batch_shape=None, name=None,
          tensor=None, optional=False):
    """A KerasTensor standing for the model input (Keras' ``keras.Input``)."""
    if tensor is not None or optional:
        raise NotImplementedError("Input(tensor=...) and optional inputs are not supported")
    layer = InputLayer(shape=shape, batch_size=batch_size, dtype=dtype, sparse=sparse,
                       batch_shape=batch_shape, name=name)
    return layer.output
