"""Layers: shapes, config round-trips, Dropout, Flatten/Reshape backward, Dense on >2-D input,
initializers, regularizers and activations by name."""
import math
import os

import numpy as np
import pytest

import pynn
from pynn import activations, initializers, layers, regularizers
from pynn.utils import set_random_seed

REQUIRED_KERNELS = ("dense_forward", "dense_backward", "activation_forward",
                    "activation_backward")


def _backend_for_tests():
    """PYNN_BACKEND when set; otherwise cnn_core once it has the kernels layers need."""
    name = os.environ.get("PYNN_BACKEND")
    if name:
        return name
    import cnn_core

    return "cnn_core" if all(hasattr(cnn_core, k) for k in REQUIRED_KERNELS) else "numpy"


@pytest.fixture(autouse=True)
def _backend():
    pynn.set_backend(_backend_for_tests())
    yield


ALL_LAYERS = [
    (lambda: layers.Dense(3, activation="relu"), (4,), (3,)),
    (lambda: layers.Dense(5, use_bias=False), (2, 4), (2, 5)),
    (lambda: layers.Flatten(), (2, 3, 4), (24,)),
    (lambda: layers.Dropout(0.3, seed=1), (6,), (6,)),
    (lambda: layers.Activation("tanh"), (5,), (5,)),
    (lambda: layers.ReLU(), (5,), (5,)),
    (lambda: layers.ReLU(max_value=6.0, threshold=0.5), (5,), (5,)),
    (lambda: layers.LeakyReLU(), (5,), (5,)),
    (lambda: layers.Softmax(), (5,), (5,)),
    (lambda: layers.Reshape((3, -1)), (12,), (3, 4)),
]


@pytest.mark.parametrize("make, in_shape, out_shape", ALL_LAYERS)
def test_output_shape_and_call(make, in_shape, out_shape):
    layer = make()
    x = np.random.default_rng(0).standard_normal((7,) + in_shape).astype(np.float32)
    y = layer(x)
    assert y.shape == (7,) + out_shape
    assert layer.compute_output_shape(in_shape) == out_shape
    # call() returns fresh arrays: a second call must not overwrite the first result
    y_again = layer(x * 2)
    assert not np.shares_memory(y, y_again)


@pytest.mark.parametrize("make, in_shape, out_shape", ALL_LAYERS)
def test_config_round_trip(make, in_shape, out_shape):
    layer = make()
    x = np.random.default_rng(1).standard_normal((3,) + in_shape).astype(np.float32)
    layer(x)
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert clone.get_config() == config
    clone(x)
    if layer.weights:
        clone.set_weights(layer.get_weights())
    np.testing.assert_array_equal(clone(x), layer(x))
    assert layers.deserialize(layers.serialize(layer)).get_config() == config


def test_dense_kernel_shape_keras_order_and_defaults():
    layer = layers.Dense(4)
    layer(np.zeros((2, 3), np.float32))
    kernel, bias = layer.get_weights()
    assert kernel.shape == (3, 4) and bias.shape == (4,)
    assert np.all(bias == 0)
    assert layer.activation == "linear"
    config = layer.get_config()
    assert config["kernel_initializer"]["class_name"] == "GlorotUniform"
    assert config["bias_initializer"]["class_name"] == "Zeros"
    limit = math.sqrt(6 / (3 + 4))
    assert np.all(np.abs(kernel) <= limit)
    assert layer.count_params() == 16


def test_dense_forward_matches_numpy_and_auto_names_are_unique():
    a, b = layers.Dense(3, activation="tanh"), layers.Dense(3)
    assert a.name != b.name and a.name.startswith("dense")
    x = np.random.default_rng(2).standard_normal((5, 4)).astype(np.float32)
    y = a(x)
    kernel, bias = a.get_weights()
    np.testing.assert_allclose(y, np.tanh(x @ kernel + bias), rtol=1e-5, atol=1e-6)


def test_dense_on_3d_input_applies_to_last_axis_forward_and_backward():
    layer = layers.Dense(5, activation="sigmoid")
    x = np.random.default_rng(3).standard_normal((2, 3, 4)).astype(np.float32)
    y = layer.forward(x, training=True)
    kernel, bias = layer.get_weights()
    expected = 1 / (1 + np.exp(-(x @ kernel + bias)))
    assert y.shape == (2, 3, 5)
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-6)
    grad_y = np.random.default_rng(4).standard_normal(y.shape).astype(np.float32)
    grad_x = layer.backward(grad_y)
    dz = grad_y * expected * (1 - expected)
    assert grad_x.shape == x.shape
    np.testing.assert_allclose(grad_x, dz @ kernel.T, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(layer.grads[0], np.einsum("bti,btu->iu", x, dz), rtol=1e-4,
                               atol=1e-5)
    np.testing.assert_allclose(layer.grads[1], dz.sum(axis=(0, 1)), rtol=1e-4, atol=1e-5)


def test_dense_forward_reuses_buffers_for_equal_batch_sizes():
    layer = layers.Dense(3, activation="relu")
    x = np.ones((8, 2), np.float32)
    out1 = layer.forward(x, training=True)
    g1 = layer.backward(np.ones_like(out1))
    out2 = layer.forward(x * 2, training=True)
    g2 = layer.backward(np.ones_like(out2))
    assert out1 is out2 and g1 is g2
    assert layer.grads[0] is layer._grad_w


def test_dropout_inactive_at_inference_and_scaled_in_training():
    layer = layers.Dropout(0.25, seed=0)
    x = np.ones((400, 50), np.float32)
    np.testing.assert_array_equal(layer(x), x)
    np.testing.assert_array_equal(layer(x, training=False), x)
    y = layer(x, training=True)
    kept = y != 0
    np.testing.assert_allclose(y[kept], 1 / 0.75)
    assert abs(kept.mean() - 0.75) < 0.02
    # backward uses the same mask
    out = layer.forward(x, training=True)
    grad = layer.backward(np.ones_like(x))
    np.testing.assert_array_equal(grad, out)


def test_dropout_unseeded_follows_global_seed():
    x = np.ones((10, 10), np.float32)
    set_random_seed(5)
    a = layers.Dropout(0.5)(x, training=True)
    set_random_seed(5)
    b = layers.Dropout(0.5)(x, training=True)
    np.testing.assert_array_equal(a, b)


def test_flatten_and_reshape_backward_restore_shapes():
    x = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    flatten = layers.Flatten()
    y = flatten.forward(x)
    assert y.shape == (2, 12)
    np.testing.assert_array_equal(flatten.backward(y), x)
    reshape = layers.Reshape((4, 3))
    z = reshape.forward(x)
    assert z.shape == (2, 4, 3)
    np.testing.assert_array_equal(reshape.backward(z), x)
    channels_first = layers.Flatten(data_format="channels_first")
    w = channels_first.forward(x)
    np.testing.assert_array_equal(w, np.moveaxis(x, 1, -1).reshape(2, -1))
    np.testing.assert_array_equal(channels_first.backward(w), x)


def test_reshape_rejects_incompatible_size():
    with pytest.raises(ValueError, match="reshape"):
        layers.Reshape((5,)).compute_output_shape((12,))


def test_activation_layers_values():
    x = np.linspace(-3, 3, 12, dtype=np.float32).reshape(2, 6)
    np.testing.assert_allclose(layers.ReLU()(x), np.maximum(x, 0))
    np.testing.assert_allclose(layers.LeakyReLU()(x), np.where(x > 0, x, 0.3 * x), rtol=1e-6)
    np.testing.assert_allclose(layers.ReLU(max_value=1.0)(x), np.clip(x, 0, 1))
    e = np.exp(x - x.max(axis=1, keepdims=True))
    np.testing.assert_allclose(layers.Softmax()(x), e / e.sum(axis=1, keepdims=True),
                               rtol=1e-5, atol=1e-7)
    e0 = np.exp(x - x.max(axis=0, keepdims=True))
    np.testing.assert_allclose(layers.Softmax(axis=0)(x), e0 / e0.sum(axis=0, keepdims=True),
                               rtol=1e-5, atol=1e-7)
    assert layers.LeakyReLU(alpha=0.1).negative_slope == 0.1


@pytest.mark.parametrize("name", ["linear", "relu", "leaky_relu", "elu", "sigmoid", "tanh",
                                  "softplus", "gelu", "softmax"])
def test_activations_by_name_and_function(name):
    x = np.random.default_rng(6).standard_normal((4, 5)).astype(np.float32)
    fn = activations.get(name)
    assert activations.get(fn) is fn
    layer = layers.Dense(5, activation=fn)
    assert layer.activation == name
    out = layers.Activation(name)(x)
    np.testing.assert_allclose(out, fn(x), rtol=1e-6)


def test_activation_none_is_linear_and_unknown_names_list_valid_ones():
    assert layers.Dense(2, activation=None).activation == "linear"
    with pytest.raises(ValueError, match="relu"):
        layers.Dense(2, activation="swishh")
    with pytest.raises(ValueError, match="built-in"):
        layers.Dense(2, activation=lambda t: t)


@pytest.mark.parametrize("name, mode, scale, dist", [
    ("glorot_uniform", "fan_avg", 1.0, "uniform"),
    ("glorot_normal", "fan_avg", 1.0, "truncated_normal"),
    ("he_normal", "fan_in", 2.0, "truncated_normal"),
    ("he_uniform", "fan_in", 2.0, "uniform"),
    ("lecun_normal", "fan_in", 1.0, "truncated_normal"),
])
def test_variance_scaling_initializers_statistics(name, mode, scale, dist):
    fan_in, fan_out = 400, 200
    values = initializers.get(name)((fan_in, fan_out), dtype="float64")
    fan = {"fan_in": fan_in, "fan_avg": (fan_in + fan_out) / 2}[mode]
    std = math.sqrt(scale / fan)
    assert abs(values.std() - std) / std < 0.03
    if dist == "uniform":
        assert np.abs(values).max() <= math.sqrt(3 * scale / fan)
    else:  # truncated at two standard deviations of the underlying normal
        assert np.abs(values).max() <= 2 * std / 0.87962566103423978 + 1e-12


def test_initializers_seeds_configs_and_simple_ones():
    a = initializers.GlorotUniform(seed=3)
    np.testing.assert_array_equal(a((5, 4)), a((5, 4)))  # seeded: same values every call
    assert a((5, 4)).dtype == np.float32
    clone = initializers.get(initializers.serialize(a))
    np.testing.assert_array_equal(clone((5, 4)), a((5, 4)))
    assert np.all(initializers.get("zeros")((3,)) == 0)
    assert np.all(initializers.get("ones")((3,)) == 1)
    normal = initializers.RandomNormal(seed=1)((20000,), dtype="float64")
    assert abs(normal.std() - 0.05) < 0.002
    uniform = initializers.RandomUniform(seed=1)((20000,))
    assert uniform.min() >= -0.05 and uniform.max() <= 0.05
    assert initializers.RandomUniform(minval=-1, maxval=2).get_config() == {
        "minval": -1.0, "maxval": 2.0, "seed": None}
    with pytest.raises(ValueError, match="glorot_uniform"):
        initializers.get("glorot_uniformm")


def test_unseeded_initializers_follow_global_seed():
    set_random_seed(11)
    a = layers.Dense(3)
    a.build((4,))
    set_random_seed(11)
    b = layers.Dense(3)
    b.build((4,))
    np.testing.assert_array_equal(a.kernel.value, b.kernel.value)


def test_regularizers_values_gradients_and_configs():
    w = np.array([[1.0, -2.0], [0.5, 0.0]])
    assert regularizers.L1()(w) == pytest.approx(0.01 * 3.5)
    assert regularizers.L2()(w) == pytest.approx(0.01 * 5.25)
    both = regularizers.l1_l2()
    assert both(w) == pytest.approx(0.01 * 3.5 + 0.01 * 5.25)
    np.testing.assert_allclose(both.gradient(w), 0.01 * np.sign(w) + 0.02 * w)
    np.testing.assert_allclose(regularizers.l2(0.1).gradient(w), 0.2 * w)
    for reg in (regularizers.L1(0.2), regularizers.L2(0.3), regularizers.L1L2(0.1, 0.2)):
        clone = regularizers.deserialize(regularizers.serialize(reg))
        assert type(clone) is type(reg) and clone.get_config() == reg.get_config()
    assert regularizers.get("l2").l2 == 0.01
    with pytest.raises(ValueError, match="l1_l2"):
        regularizers.get("l3")


def test_dense_regularizer_adds_loss_and_gradient():
    layer = layers.Dense(2, kernel_regularizer=regularizers.L2(0.5),
                         bias_regularizer="l1", bias_initializer="ones")
    x = np.ones((3, 4), np.float32)
    out = layer.forward(x, training=True)
    layer.backward(np.zeros_like(out))
    kernel, bias = layer.get_weights()
    np.testing.assert_allclose(layer.grads[0], 2 * 0.5 * kernel, rtol=1e-6)
    np.testing.assert_allclose(layer.grads[1], 0.01 * np.sign(bias), rtol=1e-6)
    assert layer.regularization_loss() == pytest.approx(
        0.5 * float((kernel.astype(np.float64) ** 2).sum()) + 0.01 * 2, rel=1e-5)


def test_non_trainable_layer_has_no_trainable_weights():
    layer = layers.Dense(2)
    layer.build((3,))
    layer.trainable = False
    assert layer.trainable_weights == [] and len(layer.non_trainable_weights) == 2


def test_set_weights_checks_shapes():
    layer = layers.Dense(2)
    layer.build((3,))
    with pytest.raises(ValueError, match=r"\(3, 2\)"):
        layer.set_weights([np.zeros((2, 2)), np.zeros(2)])
    with pytest.raises(ValueError, match="expects 2"):
        layer.set_weights([np.zeros((3, 2))])


def test_input_returns_keras_tensor_and_layers_chain_symbolically():
    inp = layers.Input(shape=(4,))
    assert inp.shape == (None, 4)
    out = layers.Dense(3)(inp)
    assert isinstance(out, layers.KerasTensor) and out.shape == (None, 3)
    flat = layers.Flatten()(layers.Input(shape=(2, 3)))
    assert flat.shape == (None, 6)
    with pytest.raises(ValueError, match="shape"):
        layers.Input()


def test_float64_layers_follow_floatx():
    pynn.utils.set_floatx("float64")
    try:
        layer = layers.Dense(2)
        out = layer(np.ones((1, 3)))
        assert out.dtype == np.float64 and layer.kernel.dtype == np.float64
    finally:
        pynn.utils.set_floatx("float32")
    assert layers.Dense(2).dtype == "float32"


def test_custom_layer_with_only_call_runs_forward():
    class Double(layers.Layer):
        def call(self, x):
            return x * 2

    model = pynn.Sequential([layers.Dense(2, input_shape=(3,)), Double()])
    x = np.ones((4, 3), np.float32)
    np.testing.assert_allclose(model.predict(x, verbose=0), 2 * model.layers[0](x), rtol=1e-6)
    assert Double()(x).shape == (4, 3)


def test_model_backward_accepts_layers_with_two_argument_backward():
    class Scale(layers.Layer):
        """A layer written to docs/design.md's backward(grad_y, wrt_preactivation=False)."""

        def forward(self, x, training=False):
            return x * 3

        def backward(self, grad_y, wrt_preactivation=False):
            self.grads = []
            return grad_y * 3

    model = pynn.Sequential([layers.Dense(2, input_shape=(3,)), Scale(), layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    history = model.fit(np.ones((4, 3)), np.ones((4, 1)), epochs=2, verbose=0)
    assert len(history.history["loss"]) == 2


def test_to_categorical():
    out = pynn.utils.to_categorical([0, 2, 1], num_classes=4)
    np.testing.assert_array_equal(out, np.eye(4, dtype=np.float32)[[0, 2, 1]])
    assert pynn.utils.to_categorical(np.array([[1], [0]])).shape == (2, 2)
    with pytest.raises(ValueError):
        pynn.utils.to_categorical([3], num_classes=2)
