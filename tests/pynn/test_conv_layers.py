"""Conv2D, MaxPooling2D, AveragePooling2D, GlobalAveragePooling2D, GlobalMaxPooling2D: output
shapes, config round-trips, argument errors, float64 gradient checks (each layer's input and
weight gradients, and a whole CNN against finite differences of the loss), a PyTorch training
cross-check, the Keras MNIST CNN program, save/load, buffer reuse and thread counts."""
import gc
import json
import os
import tracemalloc

import numpy as np
import pytest

import pynn
from pynn import layers
from pynn.models import load_model
from pynn.models.fast_path import FastFit, compiled_predictor
from pynn.utils import set_floatx, set_random_seed
from finite_differences import numerical_grad

CONV_KERNELS = ("conv2d_forward", "conv2d_backward", "max_pool2d_forward",
                "max_pool2d_backward", "avg_pool2d_forward", "avg_pool2d_backward")
REQUIRED_KERNELS = CONV_KERNELS + ("dense_forward", "dense_backward", "activation_forward",
                                   "activation_backward", "softmax_cross_entropy_sparse",
                                   "sgd_update", "adam_update")
DATA_DIR = os.environ.get("PYNN_DATA_DIR")
EPS = 1e-6


def _cnn_core_has_conv():
    import cnn_core

    return all(hasattr(cnn_core, k) for k in REQUIRED_KERNELS)


def _backend_for_tests():
    """PYNN_BACKEND when set; otherwise cnn_core once it has the convolution kernels."""
    name = os.environ.get("PYNN_BACKEND")
    if name:
        return name
    return "cnn_core" if _cnn_core_has_conv() else "numpy"


@pytest.fixture(autouse=True)
def _backend():
    pynn.set_backend(_backend_for_tests())
    yield


@pytest.fixture
def float64():
    set_floatx("float64")
    yield
    set_floatx("float32")


def _images(shape, seed=0, dtype=np.float32):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


# ---------------------------------------------------------------------------------------------
# Output shapes
# ---------------------------------------------------------------------------------------------
SHAPE_CASES = [
    # (layer factory, input sample shape, output sample shape)
    (lambda: layers.Conv2D(4, 3), (9, 9, 2), (7, 7, 4)),
    (lambda: layers.Conv2D(4, 3, padding="same"), (9, 9, 2), (9, 9, 4)),
    (lambda: layers.Conv2D(4, (3, 2), strides=(2, 3)), (9, 8, 2), (4, 3, 4)),
    (lambda: layers.Conv2D(4, (2, 3), strides=2, padding="same"), (7, 8, 2), (4, 4, 4)),
    (lambda: layers.Conv2D(3, 1, use_bias=False), (5, 4, 2), (5, 4, 3)),
    (lambda: layers.Conv2D(2, (5, 1), padding="SAME", activation="relu"), (5, 3, 1), (5, 3, 2)),
    (lambda: layers.MaxPooling2D(), (9, 9, 2), (4, 4, 2)),
    (lambda: layers.MaxPooling2D(3, strides=2, padding="same"), (7, 6, 2), (4, 3, 2)),
    (lambda: layers.MaxPool2D((2, 1), strides=1), (4, 5, 3), (3, 5, 3)),
    (lambda: layers.AveragePooling2D((2, 3), strides=1), (5, 6, 2), (4, 4, 2)),
    (lambda: layers.AveragePooling2D(2, padding="same"), (5, 5, 3), (3, 3, 3)),
    (lambda: layers.AvgPool2D(strides=(1, 2)), (4, 7, 1), (3, 3, 1)),
    (lambda: layers.GlobalAveragePooling2D(), (5, 4, 3), (3,)),
    (lambda: layers.GlobalAvgPool2D(keepdims=True), (5, 4, 3), (1, 1, 3)),
    (lambda: layers.GlobalMaxPooling2D(), (5, 4, 3), (3,)),
    (lambda: layers.GlobalMaxPool2D(keepdims=True), (2, 6, 3), (1, 1, 3)),
]


@pytest.mark.parametrize("make, in_shape, out_shape", SHAPE_CASES)
def test_output_shape(make, in_shape, out_shape):
    layer = make()
    y = layer(_images((3,) + in_shape))
    assert y.shape == (3,) + out_shape
    assert layer.compute_output_shape(in_shape) == out_shape
    assert not np.shares_memory(y, layer(_images((3,) + in_shape, seed=1)))  # call copies


def test_unknown_spatial_sizes_stay_unknown():
    assert layers.Conv2D(2, 3, strides=2).compute_output_shape((None, 9, 1)) == (None, 4, 2)
    assert layers.MaxPooling2D().compute_output_shape((7, None, 3)) == (3, None, 3)
    assert layers.GlobalMaxPooling2D().compute_output_shape((None, None, 3)) == (3,)
    # A model for any image size: conv -> global pooling -> dense
    model = pynn.Sequential([layers.Input((None, None, 2)), layers.Conv2D(3, 3, padding="same"),
                             layers.GlobalAveragePooling2D(), layers.Dense(2)])
    assert model.output_shape == (None, 2)
    assert model.predict(_images((2, 5, 7, 2)), verbose=0).shape == (2, 2)
    assert model.predict(_images((2, 8, 4, 2)), verbose=0).shape == (2, 2)


def _naive_conv(x, kernel, bias, strides, padding):
    """The convolution as a loop over output pixels (TensorFlow's padding rules)."""
    kh, kw, _, filters = kernel.shape
    n, h, w, _ = x.shape
    if padding == "same":
        out_h, out_w = -(-h // strides[0]), -(-w // strides[1])
        pad_h = max((out_h - 1) * strides[0] + kh - h, 0)
        pad_w = max((out_w - 1) * strides[1] + kw - w, 0)
        x = np.pad(x, ((0, 0), (pad_h // 2, pad_h - pad_h // 2),
                       (pad_w // 2, pad_w - pad_w // 2), (0, 0)))
    else:
        out_h, out_w = (h - kh) // strides[0] + 1, (w - kw) // strides[1] + 1
    out = np.empty((n, out_h, out_w, filters))
    for p in range(out_h):
        for q in range(out_w):
            patch = x[:, p * strides[0]:p * strides[0] + kh, q * strides[1]:q * strides[1] + kw]
            out[:, p, q] = np.einsum("nijc,ijcf->nf", patch, kernel) + bias
    return out


@pytest.mark.parametrize("kernel_size, strides, padding", [
    (3, (1, 1), "valid"), ((3, 2), (2, 1), "same"), ((2, 4), (2, 3), "same"),
    ((1, 3), (3, 2), "valid")])
def test_conv2d_output_equals_a_direct_loop(kernel_size, strides, padding):
    layer = layers.Conv2D(3, kernel_size, strides=strides, padding=padding, activation="tanh",
                          bias_initializer="random_normal")
    x = _images((2, 7, 8, 2))
    y = layer(x)
    kernel, bias = layer.get_weights()
    expected = np.tanh(_naive_conv(x.astype(np.float64), kernel, bias, strides, padding))
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-6)


def test_kernel_layout_and_glorot_fans_are_keras():
    layer = layers.Conv2D(16, (3, 5), kernel_initializer="glorot_uniform")
    layer.build((10, 10, 4))
    assert layer.kernel.shape == (3, 5, 4, 16) and layer.bias.shape == (16,)
    # Keras' fans for a conv kernel: receptive field times in/out channels
    limit = np.sqrt(6.0 / (3 * 5 * 4 + 3 * 5 * 16))
    kernel = layer.kernel.numpy()
    assert np.abs(kernel).max() <= limit
    assert np.abs(kernel).max() > 0.9 * limit
    assert np.all(layer.bias.numpy() == 0)


def test_keras_default_names():
    pynn.utils.clear_session()
    assert layers.Conv2D(2, 3).name == "conv2d"
    assert layers.Conv2D(2, 3).name == "conv2d_1"
    assert layers.MaxPool2D().name == "max_pooling2d"
    assert layers.AveragePooling2D().name == "average_pooling2d"
    assert layers.GlobalAveragePooling2D().name == "global_average_pooling2d"
    assert layers.GlobalMaxPooling2D(name="top").name == "top"


def test_aliases_are_the_keras_classes():
    assert layers.MaxPool2D is layers.MaxPooling2D
    assert layers.AvgPool2D is layers.AveragePooling2D
    assert layers.GlobalAvgPool2D is layers.GlobalAveragePooling2D
    assert layers.GlobalMaxPool2D is layers.GlobalMaxPooling2D
    assert {"Conv2D", "MaxPool2D", "AvgPool2D", "GlobalAvgPool2D",
            "GlobalMaxPool2D"} <= set(layers.__all__)


# ---------------------------------------------------------------------------------------------
# Config round-trips
# ---------------------------------------------------------------------------------------------
CONFIG_CASES = [
    (lambda: layers.Conv2D(4, (3, 2), strides=(2, 1), padding="same", activation="relu",
                           kernel_initializer="he_normal", bias_initializer="ones",
                           kernel_regularizer="l2", name="c"), (7, 6, 2)),
    (lambda: layers.Conv2D(2, 3, use_bias=False, activation="leaky_relu"), (5, 5, 1)),
    (lambda: layers.MaxPooling2D(3, strides=2, padding="same"), (7, 7, 2)),
    (lambda: layers.AveragePooling2D((2, 1)), (4, 4, 2)),
    (lambda: layers.GlobalAveragePooling2D(keepdims=True), (4, 3, 2)),
    (lambda: layers.GlobalMaxPooling2D(), (4, 3, 2)),
]


@pytest.mark.parametrize("make, in_shape", CONFIG_CASES)
def test_config_round_trip(make, in_shape):
    layer = make()
    x = _images((2,) + in_shape)
    layer(x)
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert clone.get_config() == config
    # through JSON (tuples come back as lists), as model files store it
    from_json = layers.deserialize(json.loads(json.dumps(layers.serialize(layer))))
    assert type(from_json) is type(layer) and from_json.get_config() == config
    for other in (clone, from_json):
        other(x)
        if layer.weights:
            other.set_weights(layer.get_weights())
        np.testing.assert_array_equal(other(x), layer(x))


def test_configs_hold_keras_keys():
    conv = layers.Conv2D(4, 3).get_config()
    assert conv["kernel_size"] == (3, 3) and conv["strides"] == (1, 1)
    assert conv["padding"] == "valid" and conv["data_format"] == "channels_last"
    assert conv["dilation_rate"] == (1, 1) and conv["groups"] == 1
    assert conv["activation"] == "linear" and conv["use_bias"] is True
    pool = layers.MaxPooling2D(3).get_config()
    assert pool["pool_size"] == (3, 3) and pool["strides"] == (3, 3)  # Keras: default = pool
    assert layers.GlobalMaxPooling2D().get_config()["keepdims"] is False
    assert layers.deserialize({"class_name": "MaxPool2D", "config": pool}).pool_size == (3, 3)


# ---------------------------------------------------------------------------------------------
# Argument and input errors
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("make", [
    lambda: layers.Conv2D(0, 3), lambda: layers.Conv2D(2.5, 3), lambda: layers.Conv2D(True, 3),
    lambda: layers.Conv2D("8", 3), lambda: layers.Conv2D(4, 0), lambda: layers.Conv2D(4, (3,)),
    lambda: layers.Conv2D(4, (3, 3, 3)), lambda: layers.Conv2D(4, "3"),
    lambda: layers.Conv2D(4, 3.0), lambda: layers.Conv2D(4, 3, strides=0),
    lambda: layers.Conv2D(4, 3, strides=(1, -1)), lambda: layers.Conv2D(4, 3, padding="full"),
    lambda: layers.Conv2D(4, 3, padding=None), lambda: layers.Conv2D(4, 3, data_format="nhwc"),
    lambda: layers.Conv2D(4, 3, activation="nope"),
    lambda: layers.MaxPooling2D(0), lambda: layers.MaxPooling2D((2, 2), strides=(1, 0)),
    lambda: layers.MaxPooling2D(padding="causal"), lambda: layers.AveragePooling2D((2, 2, 2)),
    lambda: layers.AveragePooling2D(strides="2"),
    lambda: layers.GlobalAveragePooling2D(data_format="NHWC"),
])
def test_bad_arguments_raise_value_error(make):
    with pytest.raises(ValueError):
        make()


def test_bad_argument_messages_name_the_value():
    with pytest.raises(ValueError, match="filters.*-1"):
        layers.Conv2D(-1, 3)
    with pytest.raises(ValueError, match=r"kernel_size.*\(3, 0\)"):
        layers.Conv2D(2, (3, 0))
    with pytest.raises(ValueError, match="padding.*'full'"):
        layers.MaxPooling2D(padding="full")


@pytest.mark.parametrize("make", [
    lambda: layers.Conv2D(2, 3, data_format="channels_first"),
    lambda: layers.MaxPooling2D(data_format="channels_first"),
    lambda: layers.AveragePooling2D(data_format="channels_first"),
    lambda: layers.GlobalAveragePooling2D(data_format="channels_first"),
    lambda: layers.GlobalMaxPooling2D(data_format="channels_first"),
    lambda: layers.Conv2D(2, 3, dilation_rate=2),
    lambda: layers.Conv2D(2, 3, groups=2),
    lambda: layers.Conv2D(2, 3, kernel_constraint="non_neg"),
    lambda: layers.Conv2D(2, 3, bias_constraint="non_neg"),
    lambda: layers.Conv2D(2, 3, activity_regularizer="l2"),
])
def test_unsupported_options_raise_not_implemented(make):
    with pytest.raises(NotImplementedError):
        make()


def test_channels_first_message_says_what_to_do():
    with pytest.raises(NotImplementedError, match="channels_last"):
        layers.Conv2D(2, 3, data_format="channels_first")


RANK_LAYERS = [lambda: layers.Conv2D(2, 3), lambda: layers.MaxPooling2D(),
               lambda: layers.AveragePooling2D(), lambda: layers.GlobalAveragePooling2D(),
               lambda: layers.GlobalMaxPooling2D()]


@pytest.mark.parametrize("make", RANK_LAYERS)
@pytest.mark.parametrize("shape", [(2, 6, 6), (2, 6, 6, 1, 1), (6,)])
def test_input_must_be_4d(make, shape):
    with pytest.raises(ValueError, match="4-D"):
        make()(np.zeros(shape, np.float32))  # at build (first call)
    with pytest.raises(ValueError, match="4-D"):
        pynn.Sequential([layers.Input(shape[1:]), make()])  # at build, symbolic
    built = make()
    built(np.zeros((2, 6, 6, 1), np.float32))
    with pytest.raises(ValueError, match="4-D"):
        built.forward(np.zeros(shape, np.float32))  # at forward, once built


def test_image_smaller_than_window_and_channel_mismatch():
    with pytest.raises(ValueError, match="does not fit"):
        layers.Conv2D(2, 5)(np.zeros((1, 3, 6, 1), np.float32))
    with pytest.raises(ValueError, match="does not fit"):
        pynn.Sequential([layers.Input((4, 4, 1)), layers.MaxPooling2D(5)])
    layers.Conv2D(2, 5, padding="same")(np.zeros((1, 3, 3, 1), np.float32))  # same: fine
    conv = layers.Conv2D(2, 3)
    conv(np.zeros((1, 5, 5, 3), np.float32))
    with pytest.raises(ValueError, match="3 input channels"):
        conv(np.zeros((1, 5, 5, 2), np.float32))


# ---------------------------------------------------------------------------------------------
# Gradients (float64, central finite differences)
# ---------------------------------------------------------------------------------------------
GRAD_LAYERS = {
    "conv_valid_tanh": lambda: layers.Conv2D(3, (3, 2), activation="tanh",
                                             bias_initializer="random_normal"),
    "conv_same_stride2": lambda: layers.Conv2D(2, (2, 3), strides=2, padding="same",
                                               activation="sigmoid",
                                               bias_initializer="random_normal"),
    "conv_same_stride_1x2_linear": lambda: layers.Conv2D(2, 3, strides=(1, 2), padding="same"),
    "conv_no_bias_elu": lambda: layers.Conv2D(2, 2, use_bias=False, activation="elu"),
    "max_pool": lambda: layers.MaxPooling2D(),
    "max_pool_same_overlapping": lambda: layers.MaxPooling2D(3, strides=2, padding="same"),
    "avg_pool": lambda: layers.AveragePooling2D((2, 3), strides=(1, 2)),
    "avg_pool_same": lambda: layers.AveragePooling2D(2, padding="same"),
    "global_avg": lambda: layers.GlobalAveragePooling2D(),
    "global_avg_keepdims": lambda: layers.GlobalAveragePooling2D(keepdims=True),
    "global_max": lambda: layers.GlobalMaxPooling2D(),
}


def _layer_loss(layer, x, r):
    return float(np.sum(layer.forward(x, training=True) * r))


@pytest.mark.parametrize("case", sorted(GRAD_LAYERS))
def test_layer_gradients_match_finite_differences(case, float64):
    set_random_seed(3)
    layer = GRAD_LAYERS[case]()
    x = _images((2, 5, 7, 2), seed=4, dtype=np.float64)
    layer(x)
    r = _images((2,) + layer.compute_output_shape(x.shape[1:]), seed=5, dtype=np.float64)
    layer.forward(x, training=True)
    grad_x = layer.backward(r.copy()).copy()
    grads = [g.copy() for g in layer.grads]
    assert grad_x.shape == x.shape and len(grads) == len(layer.trainable_weights)

    def numeric(array):
        return numerical_grad(lambda: _layer_loss(layer, x, r), array, EPS)

    np.testing.assert_allclose(grad_x, numeric(x), rtol=1e-6, atol=1e-8)
    for variable, grad in zip(layer.trainable_weights, grads):
        np.testing.assert_allclose(grad, numeric(variable.value), rtol=1e-6, atol=1e-8,
                                   err_msg=variable.path)


def test_conv_backward_wrt_preactivation_and_without_grad_x(float64):
    set_random_seed(0)
    x = _images((3, 6, 5, 2), dtype=np.float64)
    tanh = layers.Conv2D(4, 3, padding="same", activation="tanh")
    linear = layers.Conv2D(4, 3, padding="same")
    tanh(x)
    linear(x)
    linear.set_weights(tanh.get_weights())
    dz = _images((3, 6, 5, 4), seed=1, dtype=np.float64)
    tanh.forward(x)
    linear.forward(x)
    np.testing.assert_allclose(tanh.preactivation, linear.forward(x), rtol=1e-12)
    expected_x = linear.backward(dz.copy()).copy()
    expected = [g.copy() for g in linear.grads]
    got_x = tanh.backward(dz.copy(), wrt_preactivation=True)
    np.testing.assert_allclose(got_x, expected_x, rtol=1e-12, atol=1e-14)
    for g, e in zip(tanh.grads, expected):
        np.testing.assert_allclose(g, e, rtol=1e-12, atol=1e-14)
    # need_grad_x=False (the first trainable layer): the same weight gradients, no dL/dx
    tanh.backward(dz.copy())
    with_x = [g.copy() for g in tanh.grads]
    assert tanh.backward(dz.copy(), need_grad_x=False) is None
    for g, e in zip(tanh.grads, with_x):
        np.testing.assert_array_equal(g, e)


def test_global_max_gradient_goes_to_first_maximum_and_nan():
    x = np.zeros((1, 2, 3, 3), np.float32)
    x[0, :, :, 0] = [[1, 5, 5], [5, 0, 2]]           # tie: first in row-major order
    x[0, :, :, 1] = [[-1, -2, np.nan], [7, np.nan, 0]]  # NaN is the max: the first NaN
    x[0, :, :, 2] = [[3, 3, 3], [3, 3, 3]]
    layer = layers.GlobalMaxPooling2D()
    y = layer.forward(x)
    assert y[0, 0] == 5 and np.isnan(y[0, 1]) and y[0, 2] == 3
    grad = layer.backward(np.array([[10.0, 20.0, 30.0]], np.float32))
    expected = np.zeros_like(x)
    expected[0, 0, 1, 0] = 10
    expected[0, 0, 2, 1] = 20
    expected[0, 0, 0, 2] = 30
    np.testing.assert_array_equal(grad, expected)


# Whole models: model.backward (the gradient fit uses, softmax fused with the loss) against
# central differences of the training loss (tests/pynn/test_gradcheck_models.py's approach).
def _training_loss(model, x, y):
    y_pred = model.forward(x, training=True)
    loss, _, _ = model._loss_and_grad(y, y_pred)
    return loss + model._regularization_loss()


def _check_model_gradients(model, x, labels, loss="sparse_categorical_crossentropy"):
    model.compile(optimizer="sgd", loss=loss)
    y = model._prepare_y(labels, x.shape[0])
    y_pred = model.forward(x, training=True)
    _, grad, fused = model._loss_and_grad(y, y_pred)
    assert fused == (model.layers[-1].output_activation == "softmax")
    analytic = [g.copy() for g in model.backward(grad, wrt_preactivation=fused)]
    assert len(analytic) == len(model.trainable_variables)
    for variable, a in zip(model.trainable_variables, analytic):
        numeric = numerical_grad(lambda: _training_loss(model, x, y), variable.value, EPS)
        np.testing.assert_allclose(a, numeric, rtol=1e-5, atol=1e-8,
                                   err_msg=f"gradient of {variable.path}")


def _small_cnn(hidden_activation="tanh", head="flatten", input_shape=(9, 8, 2), **conv_args):
    return pynn.Sequential([
        layers.Input(input_shape),
        layers.Conv2D(3, 3, activation=hidden_activation, bias_initializer="random_normal",
                      **conv_args),
        layers.MaxPooling2D(),
        layers.Conv2D(4, 3, strides=2, padding="same", activation=hidden_activation,
                      bias_initializer="random_normal"),
        layers.AveragePooling2D(2, strides=1, padding="same"),
        layers.Flatten() if head == "flatten" else layers.GlobalAveragePooling2D(),
        layers.Dense(3, activation="softmax"),
    ])


@pytest.mark.parametrize("hidden_activation, head, conv_args", [
    ("tanh", "flatten", {}),
    ("relu", "global_average", {"kernel_regularizer": "l2", "bias_regularizer": "l1"}),
])
def test_small_cnn_gradients_match_finite_differences(float64, hidden_activation, head,
                                                      conv_args):
    set_random_seed(0)
    model = _small_cnn(hidden_activation, head, **conv_args)
    x = _images((4, 9, 8, 2), seed=1, dtype=np.float64)
    labels = np.random.default_rng(2).integers(0, 3, 4)
    _check_model_gradients(model, x, labels)


def test_cnn_with_global_max_and_mse_gradients(float64):
    set_random_seed(1)
    model = pynn.Sequential([
        layers.Input((6, 7, 1)),
        layers.Conv2D(3, (2, 3), strides=(2, 1), padding="same", activation="sigmoid",
                      bias_initializer="random_normal"),
        layers.GlobalMaxPooling2D(),
        layers.Dense(2),
    ])
    x = _images((3, 6, 7, 1), seed=3, dtype=np.float64)
    _check_model_gradients(model, x, _images((3, 2), seed=4, dtype=np.float64), loss="mse")


# ---------------------------------------------------------------------------------------------
# PyTorch cross-check: the same CNN, weights and batches trained a few steps
# ---------------------------------------------------------------------------------------------
def _same_pad(size, window, stride):
    """(before, after) padding of TensorFlow's 'same': the smaller half before."""
    out = -(-size // stride)
    total = max((out - 1) * stride + window - size, 0)
    return total // 2, total - total // 2


def _torch_forward(torch, model, params, x):
    """The pynn Sequential of Conv2D/pooling/Flatten/Dense run with torch ops on NCHW
    tensors, params: torch tensors in model.weights order (kernels in pynn's layout)."""
    F = torch.nn.functional
    h = x.permute(0, 3, 1, 2)
    index = 0
    for layer in model.layers:
        if isinstance(layer, layers.Conv2D):
            kernel = params[index].permute(3, 2, 0, 1)  # (kh, kw, in, out) -> (out, in, kh, kw)
            bias = params[index + 1] if layer.use_bias else None
            index += 2 if layer.use_bias else 1
            if layer.padding == "same":
                top, bottom = _same_pad(h.shape[2], layer.kernel_size[0], layer.strides[0])
                left, right = _same_pad(h.shape[3], layer.kernel_size[1], layer.strides[1])
                h = F.pad(h, (left, right, top, bottom))
            h = F.conv2d(h, kernel, bias, stride=layer.strides)
            h = {"relu": torch.relu, "tanh": torch.tanh, "linear": lambda t: t}[layer.activation](h)
        elif isinstance(layer, (layers.MaxPooling2D, layers.AveragePooling2D)):
            is_max = isinstance(layer, layers.MaxPooling2D)
            pads = (0, 0, 0, 0)
            if layer.padding == "same":
                top, bottom = _same_pad(h.shape[2], layer.pool_size[0], layer.strides[0])
                left, right = _same_pad(h.shape[3], layer.pool_size[1], layer.strides[1])
                pads = (left, right, top, bottom)
            if is_max:
                h = F.max_pool2d(F.pad(h, pads, value=-float("inf")), layer.pool_size,
                                 layer.strides)
            else:  # padding not counted: window sums over window counts of real pixels
                sums = F.avg_pool2d(F.pad(h, pads), layer.pool_size, layer.strides,
                                    divisor_override=1)
                ones = F.pad(torch.ones_like(h[:1, :1]), pads)
                h = sums / F.avg_pool2d(ones, layer.pool_size, layer.strides,
                                        divisor_override=1)
        elif isinstance(layer, layers.GlobalAveragePooling2D):
            h = h.mean(dim=(2, 3))
        elif isinstance(layer, layers.Flatten):
            h = h.permute(0, 2, 3, 1).flatten(1)  # Keras flattens NHWC in (h, w, c) order
        elif isinstance(layer, layers.Dense):
            h = h @ params[index] + params[index + 1]  # logits: CrossEntropyLoss applies softmax
            index += 2
        else:
            raise NotImplementedError(type(layer).__name__)
    return h


def _torch_cnn_model(seed):
    set_random_seed(seed)
    return pynn.Sequential([
        layers.Input((11, 10, 2)),
        layers.Conv2D(4, 3, activation="relu", bias_initializer="random_normal"),
        layers.MaxPooling2D(),
        layers.Conv2D(5, (3, 2), strides=2, padding="same", activation="tanh",
                      bias_initializer="random_normal"),
        layers.AveragePooling2D(2, strides=1, padding="same"),
        layers.Flatten(),
        layers.Dense(3, activation="softmax"),
    ])


@pytest.mark.torch
@pytest.mark.parametrize("optimizer", ["sgd_momentum", "adam"])
def test_training_matches_torch(optimizer):
    torch = pytest.importorskip("torch")
    model = _torch_cnn_model(seed=7)
    params = [torch.tensor(w.copy(), requires_grad=True) for w in model.get_weights()]
    x = _images((24, 11, 10, 2), seed=8)
    y = np.random.default_rng(9).integers(0, 3, 24)
    # forward outputs agree before training
    np.testing.assert_allclose(
        model.predict(x, verbose=0),
        torch.softmax(_torch_forward(torch, model, params, torch.from_numpy(x)), -1)
        .detach().numpy(), rtol=1e-4, atol=1e-6)
    if optimizer == "adam":
        # Keras and torch place epsilon differently; with a tiny one they coincide.
        model.compile(optimizer=pynn.optimizers.Adam(0.01, epsilon=1e-12),
                      loss="sparse_categorical_crossentropy")
        torch_opt = torch.optim.Adam(params, lr=0.01, eps=1e-12)
    else:
        model.compile(optimizer=pynn.optimizers.SGD(0.1, momentum=0.9),
                      loss="sparse_categorical_crossentropy")
        torch_opt = torch.optim.SGD(params, lr=0.1, momentum=0.9)
    history = model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)

    loss_fn = torch.nn.CrossEntropyLoss()
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    epoch_losses = []
    for _ in range(2):
        total = 0.0
        for start in range(0, 24, 8):
            torch_opt.zero_grad()
            loss = loss_fn(_torch_forward(torch, model, params, xt[start:start + 8]),
                           yt[start:start + 8])
            loss.backward()
            torch_opt.step()
            total += loss.item() * 8
        epoch_losses.append(total / 24)
    np.testing.assert_allclose(history.history["loss"], epoch_losses, rtol=1e-4)
    for variable, param in zip(model.weights, params):
        np.testing.assert_allclose(variable.value, param.detach().numpy(), rtol=1e-4,
                                   atol=2e-5, err_msg=variable.path)


# ---------------------------------------------------------------------------------------------
# The Keras MNIST CNN program
# ---------------------------------------------------------------------------------------------
@pytest.mark.skipif(not DATA_DIR or not os.path.isdir(os.path.join(DATA_DIR, "mnist")),
                    reason="needs PYNN_DATA_DIR with mnist/ (CI sets it to ../shared/data)")
def test_keras_mnist_cnn_program(tmp_path):
    pynn.utils.clear_session()
    pynn.utils.set_random_seed(0)
    (x_train, y_train), (x_test, y_test) = pynn.datasets.mnist.load_data()
    # 2000 training images, 1000 test images (channels_last: add the channel axis)
    x_train = x_train[:2000, :, :, None] / 255.0
    x_test = x_test[:1000, :, :, None] / 255.0
    y_train, y_test = y_train[:2000], y_test[:1000]
    model = pynn.Sequential([
        pynn.layers.Conv2D(8, 3, activation="relu", input_shape=(28, 28, 1)),
        pynn.layers.MaxPooling2D(),
        pynn.layers.Flatten(),
        pynn.layers.Dense(10, activation="softmax"),
    ])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    lines = []
    model.summary(print_fn=lines.append)
    summary = lines[0]
    for row in ("conv2d (Conv2D)", "(None, 26, 26, 8)", "max_pooling2d (MaxPooling2D)",
                "(None, 13, 13, 8)", "(None, 1352)", "Total params: 13,610"):
        assert row in summary, summary
    x_fit = model._prepare_x(x_train)
    assert FastFit.prepare(model, x_fit, model._prepare_y(y_train, 2000), 32) is None
    # One epoch of 2000 images (63 Adam steps) reaches only ~0.77 test accuracy; three
    # reach ~0.85 (as Keras' own program does, with this tiny model).
    history = model.fit(x_train, y_train, epochs=3, batch_size=32, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    loss, accuracy = model.evaluate(x_test, y_test, verbose=0)
    assert accuracy > 0.8, f"test accuracy {accuracy:.4f} (loss {loss:.4f})"

    path = tmp_path / "mnist_cnn.keras"
    model.save(path)
    loaded = load_model(path)
    np.testing.assert_array_equal(loaded.predict(x_test, verbose=0),
                                  model.predict(x_test, verbose=0))


# ---------------------------------------------------------------------------------------------
# Saving, fit's per-layer loop, buffers, threads
# ---------------------------------------------------------------------------------------------
def _every_layer_model(functional=False):
    set_random_seed(2)
    stack = [
        layers.Conv2D(4, 3, activation="relu", padding="same", kernel_regularizer="l2"),
        layers.MaxPool2D(),
        layers.Conv2D(6, (3, 2), strides=(2, 1), use_bias=False),
        layers.AvgPool2D((1, 2), padding="same"),
        layers.GlobalMaxPooling2D(keepdims=True),
        layers.Flatten(),
        layers.Dense(3, activation="softmax"),
    ]
    if functional:
        inputs = layers.Input((12, 10, 1))
        h = inputs
        for layer in stack:
            h = layer(h)
        return pynn.Model(inputs=inputs, outputs=h)
    return pynn.Sequential([layers.Input((12, 10, 1))] + stack)


def _classification_data(n=48, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 12, 10, 1)).astype(np.float32)
    y = np.digitize(x[:, :6, :5].mean(axis=(1, 2, 3)), [-0.1, 0.1]).astype(np.int64)
    return x, y


@pytest.mark.parametrize("functional", [False, True])
def test_save_load_round_trip_identical_predictions(tmp_path, functional):
    model = _every_layer_model(functional)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    x, y = _classification_data()
    model.fit(x, y, batch_size=16, epochs=2, verbose=0)
    path = tmp_path / "cnn.keras"
    model.save(path)
    loaded = load_model(path)
    assert [type(l).__name__ for l in loaded.layers] == [type(l).__name__ for l in model.layers]
    assert [l.get_config() for l in loaded.layers] == [l.get_config() for l in model.layers]
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    # training continues identically from the saved optimizer state
    model.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
    loaded.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
    for a, b in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_cnn_takes_the_per_layer_loop():
    model = _every_layer_model()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    x, y = _classification_data()
    xs, ys = model._prepare_x(x), model._prepare_y(y, len(x))
    assert FastFit.prepare(model, xs, ys, 16) is None
    assert compiled_predictor(model, 16) is None
    # a pooling-only front (no Conv2D) is not a dense chain either
    pooled = pynn.Sequential([layers.Input((4, 4, 1)), layers.MaxPooling2D(), layers.Flatten(),
                              layers.Dense(2, activation="softmax")])
    pooled.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    assert FastFit.prepare(pooled, np.zeros((4, 4, 4, 1), np.float32),
                           np.zeros(4, np.int64), 4) is None
    assert compiled_predictor(pooled, 4) is None


def _all_buffers(model):
    return {(layer.name, key): buf for layer in model.layers for key, buf in
            layer._buffers.items()} | {("model", key): buf for key, buf in model._buffers.items()}


def test_training_loop_allocates_no_new_buffers_after_the_first_step():
    model = _every_layer_model()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    x, y = _classification_data(n=64)
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    first = _all_buffers(model)
    assert any(key[1][0] == "grad_x" for key in first)
    model.fit(x, y, batch_size=16, epochs=2, verbose=0)
    again = _all_buffers(model)
    assert again.keys() == first.keys()
    assert all(again[key] is first[key] for key in first)
    # and nothing accumulates: a run of steps leaves the traced memory where it was (the
    # NumPy reference makes temporaries, and cyclic garbage, but keeps none)
    xs, ys = model._prepare_x(x[:16]), model._prepare_y(y[:16], 16)
    model._train_step(xs, ys)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for _ in range(50):
        model._train_step(xs, ys)
    gc.collect()
    growth = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert growth < 64 * 1024, f"{growth} bytes kept over 50 steps"
    assert _all_buffers(model).keys() == first.keys()


@pytest.mark.skipif(not _cnn_core_has_conv(), reason="cnn_core has no conv2d kernels yet")
def test_same_bits_for_thread_counts_1_and_2():
    import cnn_core

    pynn.set_backend("cnn_core")
    saved = cnn_core.get_num_threads()
    rng = np.random.default_rng(3)
    x = rng.standard_normal((256, 16, 16, 3)).astype(np.float32)
    y = rng.integers(0, 4, 256)
    weights = []
    try:
        for threads in (1, 2):
            cnn_core.set_num_threads(threads)
            assert cnn_core.get_num_threads() == threads
            set_random_seed(0)
            model = pynn.Sequential([
                layers.Input((16, 16, 3)),
                layers.Conv2D(16, 3, padding="same", activation="relu"),
                layers.MaxPooling2D(),
                layers.Conv2D(32, 3, strides=2, padding="same", activation="tanh"),
                layers.AveragePooling2D(3, strides=1, padding="same"),
                layers.GlobalAveragePooling2D(),
                layers.Dense(4, activation="softmax"),
            ])
            model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
            model.fit(x, y, batch_size=64, epochs=2, verbose=0)
            weights.append(b"".join(w.tobytes() for w in model.get_weights()))
    finally:
        cnn_core.set_num_threads(saved)
    assert weights[0] == weights[1]
