"""``Variable``: a named, trainable NumPy array (Keras 3's ``keras.Variable`` in spirit).

Layers own their weights as Variables; optimizers update ``variable.value`` in place, so the
compiled core and the Python code see the same memory and nothing is copied per step.
"""
import numpy as np


class Variable:
    """A named array that optimizers update in place.

    value: C-contiguous ndarray (float32 by default). ``assign`` copies into it, keeping the
    buffer (and so any pointer the compiled core holds) valid.
    """

    def __init__(self, value, name="variable", trainable=True, dtype=None):
        arr = np.array(value, dtype=dtype if dtype is not None else getattr(value, "dtype", None),
                       copy=True, order="C")
        if arr.dtype.kind != "f":
            arr = arr.astype(np.float32)
        self.value = arr
        self.name = name
        self.trainable = trainable

    @property
    def shape(self):
        return self.value.shape

    @property
    def dtype(self):
        return self.value.dtype

    @property
    def size(self):
        return self.value.size

    def numpy(self):
        """A copy of the current value."""
        return self.value.copy()

    def assign(self, new_value):
        new_value = np.asarray(new_value)
        if new_value.shape != self.value.shape:
            raise ValueError(
                f"cannot assign a value of shape {new_value.shape} to variable "
                f"'{self.name}' of shape {self.value.shape}"
            )
        self.value[...] = new_value
        return self

    def __array__(self, dtype=None, copy=None):
        return self.value if dtype is None else self.value.astype(dtype)

    def __repr__(self):
        return f"<Variable '{self.name}' shape={self.shape} dtype={self.dtype}>"
