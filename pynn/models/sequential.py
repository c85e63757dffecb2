"""``Sequential``: a plain stack of layers (Keras 3).

The input shape comes from ``Input(...)``/``InputLayer`` as first element, ``input_shape=`` on
the first layer, ``model.build((None, ...))``, or the first data seen (lazy build).
"""
from pynn.layers.base import Layer, standardize_shape
from pynn.layers.input_layer import InputLayer, KerasTensor
from pynn.models.model import Model


class Sequential(Model):
    _is_sequential = True

    def __init__(self, layers=None, trainable=True, name=None):
        super().__init__(name=name, trainable=trainable)
        for layer in layers or []:
            self.add(layer, rebuild=False)
        self._maybe_build()

    @property
    def layers(self):
        # Keras: Sequential.layers excludes the InputLayer.
        return list(self._layers)

    def add(self, layer, rebuild=True):
        """Append a layer (or set the input with ``Input(...)`` / an InputLayer)."""
        if isinstance(layer, KerasTensor):
            if layer.parent is not None or not isinstance(layer.layer, InputLayer):
                raise ValueError("Sequential.add accepts Input(...) tensors, not outputs of "
                                 "other layers")
            layer = layer.layer
        if isinstance(layer, InputLayer):
            if self._layers or self._input_layer is not None:
                raise ValueError("an Input/InputLayer can only be the first element of a "
                                 "Sequential model")
            self._input_layer = layer
            return
        if isinstance(layer, Model):
            raise NotImplementedError("nesting models inside a Sequential is not supported; "
                                      "add the inner model's layers instead")
        if not isinstance(layer, Layer):
            raise TypeError(f"Sequential.add expects a Layer, got {type(layer).__name__}: "
                            f"{layer!r}")
        if any(existing.name == layer.name for existing in self._layers):
            raise ValueError(f"all layers added to a Sequential model should have unique "
                             f"names; name '{layer.name}' is already used")
        if any(existing is layer for existing in self._layers):
            raise NotImplementedError(f"layer '{layer.name}' is already in this model")
        if not self._layers and self._input_layer is None and layer.input_shape_arg is not None:
            self._input_layer = InputLayer(shape=layer.input_shape_arg, dtype=layer.dtype)
        if not self.trainable:
            layer.trainable = False  # a frozen model freezes what it holds (Model.trainable)
        self._layers.append(layer)
        if rebuild:
            self._maybe_build()

    def pop(self, rebuild=True):
        """Remove and return the last layer."""
        if not self._layers:
            raise TypeError("There are no layers in the model.")
        layer = self._layers.pop()
        self.built = False
        if rebuild:
            self._maybe_build()
        return layer

    def _maybe_build(self):
        if self._input_layer is not None and self._layers:
            self._build_layers(tuple(self._input_layer.input_shape_arg))

    def _build_for(self, sample_shape):
        if not self._layers:
            raise ValueError(f"Sequential model '{self.name}' has no layers")
        if self._input_layer is None:
            self._input_layer = InputLayer(shape=tuple(sample_shape), dtype=self._layers[0].dtype)
        self._build_layers(tuple(self._input_layer.input_shape_arg))

    def _build_layers(self, shape):
        """Build every layer for its input shape, checking already-built layers fit."""
        for layer in self._layers:
            if layer.built and layer.input_shape is not None:
                known = layer.input_shape
                if len(known) != len(shape) or any(
                        a is not None and b is not None and a != b for a, b in zip(known, shape)):
                    raise ValueError(
                        f"layer '{layer.name}' was built for inputs of shape "
                        f"{(None,) + tuple(known)} but receives {(None,) + tuple(shape)}")
            layer._ensure_built(shape)
            shape = tuple(layer.compute_output_shape(shape))
        self.built = True

    def build(self, input_shape=None):
        """Build for ``input_shape`` including the batch axis, e.g. ``(None, 784)``."""
        if input_shape is None:
            if self._input_layer is None:
                raise ValueError("build() needs an input_shape, e.g. (None, 784)")
            self._maybe_build()
            return
        shape = standardize_shape(input_shape)
        if len(shape) < 2:
            raise ValueError(f"input_shape must include the batch axis, e.g. (None, 4); got "
                             f"{input_shape}")
        if self._input_layer is not None and tuple(self._input_layer.input_shape_arg) != shape[1:]:
            raise ValueError(f"model '{self.name}' already has input shape "
                             f"{self.input_shape}, cannot build it for {shape}")
        self._build_for(shape[1:])

    def get_config(self):
        from pynn.layers import serialize as serialize_layer

        layers = ([serialize_layer(self._input_layer)] if self._input_layer is not None else [])
        layers += [serialize_layer(layer) for layer in self._layers]
        return {"name": self.name, "trainable": self.trainable, "layers": layers,
                "build_input_shape": None if self.input_shape is None else list(self.input_shape)}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        from pynn.layers import deserialize as deserialize_layer

        model = cls(name=config.get("name"), trainable=config.get("trainable", True))
        for entry in config.get("layers", []):
            model.add(deserialize_layer(entry, custom_objects), rebuild=False)
        build_shape = config.get("build_input_shape")
        if model._input_layer is None and build_shape is not None:
            model.build(tuple(build_shape))
        else:
            model._maybe_build()
        return model
