"""``BatchNormalization``: normalise each feature on ``axis`` (Keras 3).

Training (``training=True`` on a trainable layer): the mean and the biased variance over every
axis but ``axis`` normalise the batch, ``y = gamma * (x - mean) / sqrt(var + epsilon) + beta``,
and the moving statistics follow ``moving = moving * momentum + batch_stat * (1 - momentum)``
(Keras 3 uses the biased batch variance here too). Inference, and any call of a layer with
``trainable=False`` (Keras 3 freezes BatchNormalization into inference mode), uses the moving
statistics: ``y = x * scale + shift`` with ``scale = gamma / sqrt(moving_var + epsilon)``.

Weights, in Keras' order: gamma, beta (trainable; when ``scale`` / ``center``), moving_mean,
moving_variance (non-trainable), each (features,). Plain NumPy: the input is viewed as
(outer, features) or (outer, features, inner) and every step writes into buffers reused per
batch shape; NumPy's reductions are single-threaded, so results are deterministic.
"""
import numpy as np

from pynn import initializers as _initializers
from pynn import regularizers as _regularizers
from pynn.layers.base import Layer

# tf.keras 2 arguments Keras 3 dropped, with the values that mean "not used".
_UNSUPPORTED_DEFAULTS = {"renorm": False, "renorm_clipping": None, "renorm_momentum": 0.99,
                         "virtual_batch_size": None, "adjustment": None}


class BatchNormalization(Layer):
    def __init__(self, axis=-1, momentum=0.99, epsilon=0.001, center=True, scale=True,
                 beta_initializer="zeros", gamma_initializer="ones",
                 moving_mean_initializer="zeros", moving_variance_initializer="ones",
                 beta_regularizer=None, gamma_regularizer=None, beta_constraint=None,
                 gamma_constraint=None, synchronized=False, **kwargs):
        for name, default in _UNSUPPORTED_DEFAULTS.items():
            if name in kwargs:
                value = kwargs.pop(name)
                if value is not None and value != default:
                    raise NotImplementedError(
                        f"BatchNormalization({name}={value!r}) is not supported (Keras 3 has "
                        "no batch renormalization, virtual batches or adjustment)")
        super().__init__(**kwargs)
        if isinstance(axis, (list, tuple)):
            raise NotImplementedError(
                f"BatchNormalization normalises one axis; got axis={list(axis)!r} "
                "(pass a single int)")
        if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
            raise TypeError(f"BatchNormalization axis must be an int, got {axis!r}")
        if beta_constraint is not None or gamma_constraint is not None:
            raise NotImplementedError(
                "BatchNormalization beta_constraint / gamma_constraint are not supported "
                f"(got beta_constraint={beta_constraint!r}, "
                f"gamma_constraint={gamma_constraint!r})")
        if synchronized:
            raise NotImplementedError(
                "BatchNormalization(synchronized=True) is not supported: pynn trains on one "
                "CPU process, there are no replicas to synchronise")
        self.axis = int(axis)
        self.momentum = float(momentum)
        self.epsilon = float(epsilon)
        self.center = bool(center)
        self.scale = bool(scale)
        self.synchronized = False
        self.beta_initializer = _initializers.get(beta_initializer)
        self.gamma_initializer = _initializers.get(gamma_initializer)
        self.moving_mean_initializer = _initializers.get(moving_mean_initializer)
        self.moving_variance_initializer = _initializers.get(moving_variance_initializer)
        self.beta_regularizer = _regularizers.get(beta_regularizer)
        self.gamma_regularizer = _regularizers.get(gamma_regularizer)
        self.gamma = self.beta = self.moving_mean = self.moving_variance = None
        self._axis = None          # non-negative, counting the batch axis
        self._rank = None          # rank of the input, batch axis included
        self._mode = None          # "batch" or "moving": the statistics of the last forward

    # --- shapes ----------------------------------------------------------------------------
    def _normalized_axis(self, input_shape):
        """(axis counted with the batch axis, features) for ``input_shape`` (batch excluded)."""
        input_shape = tuple(input_shape)
        rank = len(input_shape) + 1
        shown = (None,) + input_shape
        if not -rank <= self.axis < rank:
            raise ValueError(
                f"BatchNormalization '{self.name}': axis={self.axis} is out of range for "
                f"inputs of shape {shown} (rank {rank})")
        axis = self.axis % rank
        if axis == 0:
            raise ValueError(
                f"BatchNormalization '{self.name}': axis={self.axis} is the batch axis of "
                f"inputs of shape {shown}; normalise a feature axis (e.g. -1)")
        features = input_shape[axis - 1]
        if features is None:
            raise ValueError(
                f"BatchNormalization '{self.name}': axis={self.axis} of inputs of shape "
                f"{shown} must have a known size")
        return axis, int(features)

    def build(self, input_shape):
        self._axis, features = self._normalized_axis(input_shape)
        self._rank = len(input_shape) + 1
        shape = (features,)
        if self.scale:
            self.gamma = self.add_weight(shape=shape, initializer=self.gamma_initializer,
                                         regularizer=self.gamma_regularizer, name="gamma")
        if self.center:
            self.beta = self.add_weight(shape=shape, initializer=self.beta_initializer,
                                        regularizer=self.beta_regularizer, name="beta")
        self.moving_mean = self.add_weight(shape=shape, initializer=self.moving_mean_initializer,
                                           trainable=False, name="moving_mean")
        self.moving_variance = self.add_weight(shape=shape,
                                               initializer=self.moving_variance_initializer,
                                               trainable=False, name="moving_variance")
        # Gradients live across steps (the optimizer reads them after backward returns).
        self._sum_dy_xhat = np.zeros(shape, dtype=self.dtype)   # dgamma
        self._sum_dy = np.zeros(shape, dtype=self.dtype)        # dbeta
        self.built = True

    def compute_output_shape(self, input_shape):
        self._normalized_axis(input_shape)
        return tuple(input_shape)

    def _layout(self, shape):
        """(view shape, reduced axes, broadcast shape of a (features,) array) for ``shape``.

        The input is viewed as (outer, features[, inner]): reductions then run over one or two
        axes of a contiguous view, whatever ``axis`` is."""
        if len(shape) != self._rank or shape[self._axis] != self.moving_mean.shape[0]:
            raise ValueError(
                f"BatchNormalization '{self.name}' was built for inputs of shape "
                f"{(None,) + tuple(self.input_shape)} (axis={self.axis}), got shape {shape}")
        outer = int(np.prod(shape[:self._axis]))
        inner = int(np.prod(shape[self._axis + 1:]))
        features = shape[self._axis]
        if inner == 1:
            return (outer, features), (0,), (features,)
        return (outer, features, inner), (0, 2), (features, 1)

    def _feature_buffer(self, tag):
        return self._buffer(tag, self.moving_mean.shape)

    # --- Keras call ------------------------------------------------------------------------
    def call(self, inputs, training=None, mask=None):
        if mask is not None:
            raise NotImplementedError("BatchNormalization does not support masks")
        x = self._as_compute(np.asarray(inputs))
        return np.array(self.forward(x, training=bool(training)), copy=True)

    # --- forward / backward ----------------------------------------------------------------
    def forward(self, x, training=False):
        """x: (batch, ...) of the layer dtype -> same shape; a buffer reused per batch shape."""
        x = self._as_compute(x)
        if not self.built:
            self._ensure_built(x.shape[1:])
        view_shape, axes, param_shape = self._layout(x.shape)
        xv = x.reshape(view_shape)
        if training and self.trainable:  # Keras 3: a frozen layer runs in inference mode
            y = self._forward_batch_stats(xv, axes, param_shape)
        else:
            y = self._forward_moving_stats(xv, param_shape)
        self._view_shape, self._axes, self._param_shape = view_shape, axes, param_shape
        self._out_shape = x.shape
        return y.reshape(x.shape)

    def _forward_batch_stats(self, xv, axes, param_shape):
        mean = self._feature_buffer("mean")
        var = self._feature_buffer("var")
        inv_std = self._feature_buffer("inv_std")
        xhat = self._buffer("xhat", xv.shape)
        y = self._buffer("y", xv.shape)
        np.mean(xv, axis=axes, out=mean)
        np.subtract(xv, mean.reshape(param_shape), out=xhat)
        # Two passes (mean, then the mean of squared deviations): the biased variance Keras
        # uses, without the cancellation of E[x^2] - E[x]^2.
        np.multiply(xhat, xhat, out=y)
        np.mean(y, axis=axes, out=var)
        np.add(var, self.epsilon, out=inv_std)
        np.sqrt(inv_std, out=inv_std)
        np.divide(1.0, inv_std, out=inv_std)
        np.multiply(xhat, inv_std.reshape(param_shape), out=xhat)
        if self.scale:
            np.multiply(xhat, self.gamma.value.reshape(param_shape), out=y)
        else:
            np.copyto(y, xhat)
        if self.center:
            np.add(y, self.beta.value.reshape(param_shape), out=y)
        self._update_moving(self.moving_mean.value, mean)
        self._update_moving(self.moving_variance.value, var)
        self._mode, self._xhat, self._inv_std = "batch", xhat, inv_std
        self._count = xv.size // mean.shape[0]
        return y

    def _update_moving(self, moving, batch_stat):
        """moving = moving * momentum + batch_stat * (1 - momentum), in Keras' order, in place."""
        scratch = self._feature_buffer("moving_scratch")
        np.multiply(batch_stat, 1.0 - self.momentum, out=scratch)
        np.multiply(moving, self.momentum, out=moving)
        np.add(moving, scratch, out=moving)

    def _forward_moving_stats(self, xv, param_shape):
        inv_std = self._feature_buffer("inv_std")
        scale = self._feature_buffer("scale")
        shift = self._feature_buffer("shift")
        y = self._buffer("y", xv.shape)
        np.add(self.moving_variance.value, self.epsilon, out=inv_std)
        np.sqrt(inv_std, out=inv_std)
        np.divide(1.0, inv_std, out=inv_std)
        if self.scale:
            np.multiply(inv_std, self.gamma.value, out=scale)
        else:
            np.copyto(scale, inv_std)
        # Keras' batch_normalization: x * scale + (beta - mean * scale).
        np.multiply(self.moving_mean.value, scale, out=shift)
        np.negative(shift, out=shift)
        if self.center:
            np.add(shift, self.beta.value, out=shift)
        np.multiply(xv, scale.reshape(param_shape), out=y)
        np.add(y, shift.reshape(param_shape), out=y)
        self._mode, self._x, self._inv_std, self._scale_factor = "moving", xv, inv_std, scale
        return y

    def backward(self, grad_y, wrt_preactivation=False, need_grad_x=True):
        """dL/dx from dL/dy (same shape); fills grads [gamma, beta] (those that exist)."""
        if self._mode is None:
            raise RuntimeError(f"BatchNormalization '{self.name}': backward called before "
                               "forward")
        if grad_y.shape != self._out_shape:
            raise ValueError(f"BatchNormalization '{self.name}': gradient of shape "
                             f"{grad_y.shape} for an output of shape {self._out_shape}")
        dy = self._as_compute(grad_y).reshape(self._view_shape)
        axes, param_shape = self._axes, self._param_shape
        wants_grads = bool(self.trainable_weights)
        grad_x = self._buffer("grad_x", self._view_shape)
        if self._mode == "batch":
            self._backward_batch_stats(dy, grad_x, axes, param_shape, need_grad_x)
        else:
            self._backward_moving_stats(dy, grad_x, axes, param_shape, need_grad_x,
                                        wants_grads)
        self.grads = []
        if wants_grads:
            if self.scale and self.gamma.trainable:
                self.grads.append(self._sum_dy_xhat)
            if self.center and self.beta.trainable:
                self.grads.append(self._sum_dy)
            self._add_regularizer_grads()
        if not need_grad_x:
            return None
        return grad_x.reshape(self._out_shape)

    def _backward_batch_stats(self, dy, grad_x, axes, param_shape, need_grad_x):
        # dx = gamma * inv_std * (dy - (sum(dy) + xhat * sum(dy * xhat)) / N): the mean and
        # variance depend on x, so both sums are needed even without gamma/beta weights.
        sum_dy, sum_dy_xhat = self._sum_dy, self._sum_dy_xhat
        np.sum(dy, axis=axes, out=sum_dy)
        np.multiply(dy, self._xhat, out=grad_x)
        np.sum(grad_x, axis=axes, out=sum_dy_xhat)
        if not need_grad_x:
            return
        mean_dy = self._feature_buffer("mean_dy")
        mean_dy_xhat = self._feature_buffer("mean_dy_xhat")
        factor = self._feature_buffer("dx_factor")
        np.multiply(sum_dy, 1.0 / self._count, out=mean_dy)
        np.multiply(sum_dy_xhat, 1.0 / self._count, out=mean_dy_xhat)
        np.multiply(self._xhat, mean_dy_xhat.reshape(param_shape), out=grad_x)
        np.add(grad_x, mean_dy.reshape(param_shape), out=grad_x)
        np.subtract(dy, grad_x, out=grad_x)
        if self.scale:
            np.multiply(self.gamma.value, self._inv_std, out=factor)
        else:
            np.copyto(factor, self._inv_std)
        np.multiply(grad_x, factor.reshape(param_shape), out=grad_x)

    def _backward_moving_stats(self, dy, grad_x, axes, param_shape, need_grad_x, wants_grads):
        # The statistics are constants here: y = x * scale + shift.
        if wants_grads:
            np.sum(dy, axis=axes, out=self._sum_dy)
            np.subtract(self._x, self.moving_mean.value.reshape(param_shape), out=grad_x)
            np.multiply(grad_x, self._inv_std.reshape(param_shape), out=grad_x)
            np.multiply(grad_x, dy, out=grad_x)
            np.sum(grad_x, axis=axes, out=self._sum_dy_xhat)
        if need_grad_x:
            np.multiply(dy, self._scale_factor.reshape(param_shape), out=grad_x)

    # --- config ----------------------------------------------------------------------------
    def get_config(self):
        config = super().get_config()
        config.update({
            "axis": self.axis,
            "momentum": self.momentum,
            "epsilon": self.epsilon,
            "center": self.center,
            "scale": self.scale,
            "beta_initializer": _initializers.serialize(self.beta_initializer),
            "gamma_initializer": _initializers.serialize(self.gamma_initializer),
            "moving_mean_initializer": _initializers.serialize(self.moving_mean_initializer),
            "moving_variance_initializer": _initializers.serialize(
                self.moving_variance_initializer),
            "beta_regularizer": _regularizers.serialize(self.beta_regularizer),
            "gamma_regularizer": _regularizers.serialize(self.gamma_regularizer),
            "beta_constraint": None,
            "gamma_constraint": None,
            "synchronized": self.synchronized,
        })
        return config
