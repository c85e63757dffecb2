"""Whole-model gradient checks in float64: model.backward (the fit step's gradient, fused and
unfused) against central finite differences of the training loss, for every layer type,
every activation, every loss and the regularizers."""
import os

import numpy as np
import pytest

import pynn
from pynn import layers, losses, regularizers
from pynn.utils import set_floatx, set_random_seed
from finite_differences import numerical_grad

REQUIRED_KERNELS = ("dense_forward", "dense_backward", "activation_forward",
                    "activation_backward", "softmax_cross_entropy_sparse",
                    "softmax_cross_entropy", "mean_squared_error", "mean_absolute_error",
                    "binary_cross_entropy", "binary_cross_entropy_logits")
ACTIVATIONS = ["linear", "relu", "leaky_relu", "elu", "sigmoid", "tanh", "softplus", "gelu",
               "softmax"]
EPS = 1e-6


def _backend_for_tests():
    name = os.environ.get("PYNN_BACKEND")
    if name:
        return name
    import cnn_core

    return "cnn_core" if all(hasattr(cnn_core, k) for k in REQUIRED_KERNELS) else "numpy"


@pytest.fixture(autouse=True)
def _float64_and_backend():
    pynn.set_backend(_backend_for_tests())
    set_floatx("float64")
    yield
    set_floatx("float32")


def _reseed_dropout(model):
    # Seeded Dropout layers draw the same mask on every forward of the check.
    for layer in model.layers:
        if isinstance(layer, layers.Dropout) and layer.seed is not None:
            layer._own_rng = np.random.default_rng(layer.seed)


def _training_loss(model, x, y):
    _reseed_dropout(model)
    y_pred = model.forward(x, training=True)
    loss, _, _ = model._loss_and_grad(y, y_pred)
    return loss + model._regularization_loss()


def _analytic_grads(model, x, y, fused=True):
    _reseed_dropout(model)
    y_pred = model.forward(x, training=True)
    if fused:
        _, grad, wrt_pre = model._loss_and_grad(y, y_pred)
    else:
        _, grad = model._loss_fn.loss_and_grad(y, y_pred)
        wrt_pre = False
    return [g.copy() for g in model.backward(grad, wrt_preactivation=wrt_pre)]


def _numeric_grads(model, x, y):
    return [numerical_grad(lambda: _training_loss(model, x, y), variable.value, EPS)
            for variable in model.trainable_variables]


def check_model(model, x, y, loss, fused=True, rtol=1e-5, atol=1e-7):
    model.compile(optimizer="sgd", loss=loss)
    y = model._prepare_y(y, x.shape[0])
    x = np.ascontiguousarray(x, dtype=np.float64)
    analytic = _analytic_grads(model, x, y, fused=fused)
    numeric = _numeric_grads(model, x, y)
    assert len(analytic) == len(numeric) == len(model.trainable_variables)
    for variable, a, n in zip(model.trainable_variables, analytic, numeric):
        np.testing.assert_allclose(a, n, rtol=rtol, atol=atol,
                                   err_msg=f"gradient of {variable.path}")


def _inputs(shape=(6, 4), seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def _labels(n=6, classes=3, seed=1):
    return np.random.default_rng(seed).integers(0, classes, n)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_every_activation_in_dense_and_activation_layer(activation):
    set_random_seed(0)
    model = pynn.Sequential([
        layers.Dense(5, activation=activation, input_shape=(4,),
                     bias_initializer="random_normal"),
        layers.Dense(4),
        layers.Activation(activation),
        layers.Dense(2),
    ])
    y = np.random.default_rng(2).standard_normal((6, 2))
    check_model(model, _inputs(), y, "mse")


LOSS_CASES = {
    # name: (output layers, loss, targets)
    "sparse_ce_fused": ([layers.Dense(3, activation="softmax")],
                        "sparse_categorical_crossentropy", _labels()),
    "sparse_ce_logits": ([layers.Dense(3)],
                         losses.SparseCategoricalCrossentropy(from_logits=True), _labels()),
    "sparse_ce_probabilities": ([layers.Dense(3, activation="softmax"),
                                 layers.Activation("linear")],
                                "sparse_categorical_crossentropy", _labels()),
    "ce_fused": ([layers.Dense(3), layers.Softmax()], "categorical_crossentropy",
                 np.eye(3)[_labels()]),
    "ce_logits": ([layers.Dense(3)], losses.CategoricalCrossentropy(from_logits=True),
                  np.random.default_rng(3).dirichlet(np.ones(3), 6)),
    "ce_probabilities": ([layers.Dense(3, activation="softmax"), layers.Activation("linear")],
                         "categorical_crossentropy", np.eye(3)[_labels()]),
    "mse": ([layers.Dense(2)], "mse", np.random.default_rng(4).standard_normal((6, 2))),
    "mae": ([layers.Dense(2)], "mae", np.random.default_rng(4).standard_normal((6, 2))),
    "bce_fused": ([layers.Dense(2, activation="sigmoid")], "binary_crossentropy",
                  np.random.default_rng(5).integers(0, 2, (6, 2))),
    "bce_logits": ([layers.Dense(1)], losses.BinaryCrossentropy(from_logits=True),
                   np.random.default_rng(5).integers(0, 2, (6, 1))),
    "bce_probabilities": ([layers.Dense(2, activation="sigmoid"), layers.Activation("linear")],
                          "binary_crossentropy",
                          np.random.default_rng(6).uniform(0, 1, (6, 2))),
}


def _fresh_float64_copy(layer):
    config = layer.get_config() | {"name": None, "dtype": "float64"}
    return type(layer).from_config(config)


@pytest.mark.parametrize("case", sorted(LOSS_CASES))
def test_every_loss(case):
    head, loss, y = LOSS_CASES[case]
    set_random_seed(1)
    model = pynn.Sequential([layers.Dense(5, activation="tanh", input_shape=(4,))] +
                            [_fresh_float64_copy(layer) for layer in head])
    check_model(model, _inputs(), y, loss)


@pytest.mark.parametrize("loss, head", [
    ("sparse_categorical_crossentropy", "softmax"), ("binary_crossentropy", "sigmoid")])
def test_unfused_path_matches_fused(loss, head):
    """The explicit loop's gradient (through the activation) equals the fused one."""
    set_random_seed(2)
    units = 3 if head == "softmax" else 1
    model = pynn.Sequential([layers.Dense(4, activation="relu", input_shape=(4,)),
                             layers.Dense(units, activation=head)])
    model.compile(optimizer="sgd", loss=loss)
    y = _labels() if head == "softmax" else _labels(classes=2)[:, None]
    y = model._prepare_y(y, 6)
    x = _inputs()
    for a, b in zip(_analytic_grads(model, x, y, fused=True),
                    _analytic_grads(model, x, y, fused=False)):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)


def test_every_layer_type_in_one_model():
    set_random_seed(3)
    model = pynn.Sequential([
        layers.Input(shape=(2, 3)),
        layers.Dense(4, bias_initializer="random_normal"),   # Dense on a 3-D input
        layers.Reshape((8,)),
        layers.Dense(6),
        layers.LeakyReLU(0.1),
        layers.Reshape((3, 2)),
        layers.Flatten(),
        layers.Dropout(0.3, seed=4),
        layers.Dense(5),
        layers.ReLU(),
        layers.Dense(5),
        layers.ReLU(max_value=0.8, negative_slope=0.1, threshold=-0.1),
        layers.Dense(4, activation="elu"),
        layers.Activation("gelu"),
        layers.Dense(3),
        layers.Softmax(),
    ])
    check_model(model, _inputs((6, 2, 3)), _labels(), "sparse_categorical_crossentropy")


def test_functional_model_with_3d_dense_output():
    set_random_seed(4)
    inp = layers.Input(shape=(3, 4))
    h = layers.Dense(5, activation="tanh")(inp)
    out = layers.Dense(2)(h)
    model = pynn.Model(inputs=inp, outputs=out)
    check_model(model, _inputs((6, 3, 4)), np.random.default_rng(7).standard_normal((6, 3, 2)),
                "mse")


@pytest.mark.parametrize("kernel_reg, bias_reg", [
    (regularizers.L1(0.05), None),
    (regularizers.L2(0.1), regularizers.L2(0.2)),
    (regularizers.L1L2(0.03, 0.07), regularizers.L1(0.02)),
])
def test_regularizers(kernel_reg, bias_reg):
    set_random_seed(5)
    model = pynn.Sequential([
        layers.Dense(5, activation="sigmoid", input_shape=(4,), kernel_regularizer=kernel_reg,
                     bias_regularizer=bias_reg, bias_initializer="random_normal"),
        layers.Dense(3, activation="softmax", kernel_regularizer=kernel_reg),
    ])
    check_model(model, _inputs(), _labels(), "sparse_categorical_crossentropy")


def test_frozen_layer_gradients_align_with_trainable_variables():
    set_random_seed(6)
    model = pynn.Sequential([layers.Dense(4, activation="tanh", input_shape=(4,)),
                             layers.Dense(4, activation="tanh"), layers.Dense(2)])
    model.layers[0].trainable = False
    model.layers[2].trainable = False
    assert len(model.trainable_variables) == 2
    check_model(model, _inputs(), np.random.default_rng(8).standard_normal((6, 2)), "mse")
