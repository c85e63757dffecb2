"""BatchNormalization: training/inference forward against the NumPy formula, moving statistics,
finite-difference gradients (float64), PyTorch cross-check, training in a Sequential model,
save/load, the frozen-layer (trainable=False) semantics, buffers, config and errors."""
import os
import tracemalloc

import numpy as np
import pytest

import pynn
from pynn import layers, regularizers
from pynn.layers import BatchNormalization
from pynn.utils import set_random_seed
from finite_differences import numerical_grad

TOL = {"float32": dict(rtol=2e-5, atol=2e-5), "float64": dict(rtol=1e-12, atol=1e-12)}

# (input shape with batch, axis)
LAYOUTS = [((16, 5), -1), ((4, 3, 5, 6), -1), ((4, 6, 3, 5), 1), ((5, 4, 6), 1),
           ((5, 4, 6), -2)]
LAYOUT_IDS = ["2d", "nhwc", "nchw-axis1", "3d-axis1", "3d-axis-2"]


@pytest.fixture(autouse=True)
def _backend():
    pynn.set_backend(os.environ.get("PYNN_BACKEND", "cnn_core"))
    yield


def _reduced_axes(shape, axis):
    axis = axis % len(shape)
    return tuple(i for i in range(len(shape)) if i != axis)


def _param(values, shape, axis):
    """A (features,) array shaped to broadcast against inputs of ``shape`` on ``axis``."""
    view = [1] * len(shape)
    view[axis % len(shape)] = -1
    return values.reshape(view)


def _reference_train(x, gamma, beta, axis, eps):
    axes = _reduced_axes(x.shape, axis)
    mean = x.mean(axis=axes)
    var = x.var(axis=axes)  # biased, as Keras
    y = (x - _param(mean, x.shape, axis)) / np.sqrt(_param(var, x.shape, axis) + eps)
    return y * _param(gamma, x.shape, axis) + _param(beta, x.shape, axis), mean, var


def _reference_inference(x, gamma, beta, moving_mean, moving_var, axis, eps):
    y = (x - _param(moving_mean, x.shape, axis)) / np.sqrt(_param(moving_var, x.shape, axis)
                                                            + eps)
    return y * _param(gamma, x.shape, axis) + _param(beta, x.shape, axis)


def _built_layer(shape, axis, dtype="float64", seed=0, **kwargs):
    """A built layer with random gamma/beta (and moving stats) so nothing is 0 or 1."""
    layer = BatchNormalization(axis=axis, dtype=dtype, **kwargs)
    layer.build(shape[1:])
    rng = np.random.default_rng(seed)
    features = shape[axis % len(shape)]
    values = {"gamma": rng.uniform(0.5, 2.0, features), "beta": rng.normal(0, 1, features),
              "moving_mean": rng.normal(0, 1, features),
              "moving_variance": rng.uniform(0.5, 2.0, features)}
    layer.set_weights([values[v.name] for v in layer.weights])
    return layer


def _data(shape, seed, dtype="float64"):
    rng = np.random.default_rng(seed)
    # Per-feature offsets and scales far from 0/1, so normalisation visibly does something.
    return (rng.standard_normal(shape) * 3.0 + 2.0).astype(dtype)


# ---------------------------------------------------------------------------------------------
# Forward and moving statistics
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape, axis", LAYOUTS, ids=LAYOUT_IDS)
def test_training_forward_matches_formula(shape, axis, dtype):
    layer = _built_layer(shape, axis, dtype=dtype, epsilon=1e-3)
    gamma, beta = layer.gamma.numpy(), layer.beta.numpy()
    x = _data(shape, 1, dtype)
    y = layer.forward(x, training=True)
    expected, _, _ = _reference_train(x.astype(np.float64), gamma.astype(np.float64),
                                      beta.astype(np.float64), axis, 1e-3)
    assert y.shape == x.shape and y.dtype == np.dtype(dtype)
    np.testing.assert_allclose(y, expected, **TOL[dtype])
    # The output is normalised per feature (before gamma/beta): mean beta, std ~gamma.
    axes = _reduced_axes(shape, axis)
    np.testing.assert_allclose(y.mean(axis=axes), beta, atol=1e-5)


@pytest.mark.parametrize("shape, axis", LAYOUTS, ids=LAYOUT_IDS)
def test_moving_statistics_follow_keras_formula_and_drive_inference(shape, axis):
    momentum, eps = 0.9, 1e-3
    layer = _built_layer(shape, axis, momentum=momentum, epsilon=eps)
    gamma, beta = layer.gamma.numpy(), layer.beta.numpy()
    moving_mean, moving_var = layer.moving_mean.numpy(), layer.moving_variance.numpy()
    for step in range(5):
        x = _data(shape, 10 + step) * (1 + step)
        layer.forward(x, training=True)
        _, mean, var = _reference_train(x, gamma, beta, axis, eps)
        moving_mean = moving_mean * momentum + mean * (1.0 - momentum)
        moving_var = moving_var * momentum + var * (1.0 - momentum)
        np.testing.assert_allclose(layer.moving_mean.value, moving_mean, rtol=1e-13, atol=1e-13)
        np.testing.assert_allclose(layer.moving_variance.value, moving_var, rtol=1e-13)
    x = _data(shape, 99)
    before = [w.copy() for w in layer.get_weights()]
    y = layer.forward(x, training=False)
    np.testing.assert_allclose(
        y, _reference_inference(x, gamma, beta, moving_mean, moving_var, axis, eps),
        rtol=1e-12, atol=1e-12)
    for old, new in zip(before, layer.get_weights()):
        np.testing.assert_array_equal(old, new)  # inference changes nothing
    # Inference is per sample: one row alone gives the same output as inside its batch.
    np.testing.assert_allclose(layer.forward(x[:1], training=False)[0], y[0], rtol=1e-14)


def test_float32_is_the_default_and_weights_follow_the_layer_dtype():
    layer = BatchNormalization()
    y = layer(_data((8, 3), 0, "float64"), training=True)
    assert y.dtype == np.float32
    assert all(v.dtype == np.float32 for v in layer.weights)
    layer64 = BatchNormalization(dtype="float64")
    assert layer64(_data((8, 3), 0), training=True).dtype == np.float64
    assert all(v.dtype == np.float64 for v in layer64.weights)


def test_weights_names_order_and_trainability():
    layer = BatchNormalization()
    layer.build((4, 7))
    assert [v.name for v in layer.weights] == ["gamma", "beta", "moving_mean",
                                               "moving_variance"]
    assert [v.shape for v in layer.weights] == [(7,)] * 4
    assert [v.name for v in layer.trainable_weights] == ["gamma", "beta"]
    assert [v.name for v in layer.non_trainable_weights] == ["moving_mean", "moving_variance"]
    np.testing.assert_array_equal(layer.gamma.value, 1)
    np.testing.assert_array_equal(layer.beta.value, 0)
    np.testing.assert_array_equal(layer.moving_mean.value, 0)
    np.testing.assert_array_equal(layer.moving_variance.value, 1)
    no_beta = BatchNormalization(center=False)
    no_beta.build((3,))
    assert [v.name for v in no_beta.weights] == ["gamma", "moving_mean", "moving_variance"]
    no_gamma = BatchNormalization(scale=False, axis=1)
    no_gamma.build((3, 4))
    assert [v.name for v in no_gamma.weights] == ["beta", "moving_mean", "moving_variance"]
    assert no_gamma.weights[0].shape == (3,)
    assert no_gamma.count_params() == 9


# ---------------------------------------------------------------------------------------------
# Gradients (float64 central differences; loss = sum(upstream * y))
# ---------------------------------------------------------------------------------------------
GRAD_CASES = [((6, 4), -1, {}), ((3, 2, 3, 4), -1, {}), ((3, 4, 2, 3), 1, {}),
              ((6, 4), -1, {"center": False}), ((6, 4), -1, {"scale": False}),
              ((3, 4, 2, 3), 1, {"center": False, "scale": False})]
GRAD_IDS = ["2d", "nhwc", "nchw-axis1", "no-center", "no-scale", "neither"]


@pytest.mark.parametrize("training", [True, False], ids=["training", "inference"])
@pytest.mark.parametrize("shape, axis, kwargs", GRAD_CASES, ids=GRAD_IDS)
def test_gradients_match_finite_differences(shape, axis, kwargs, training):
    layer = _built_layer(shape, axis, **kwargs)
    x = _data(shape, 3)
    upstream = np.random.default_rng(4).standard_normal(shape)
    layer.forward(x, training=training)
    grad_x = layer.backward(upstream).copy()
    grads = [g.copy() for g in layer.grads]
    trainable = layer.trainable_weights
    assert len(grads) == len(trainable) == int(layer.scale) + int(layer.center)

    def loss():
        return float(np.sum(upstream * layer.forward(x, training=training)))

    np.testing.assert_allclose(grad_x, numerical_grad(loss, x), rtol=1e-6, atol=1e-7)
    for variable, grad in zip(trainable, grads):
        np.testing.assert_allclose(grad, numerical_grad(loss, variable.value), rtol=1e-6,
                                   atol=1e-7, err_msg=variable.name)
    if training:
        # The batch-statistics dx is not the inference one: it removes the mean and the
        # xhat-direction of dy (so it sums to zero over the reduced axes).
        np.testing.assert_allclose(grad_x.sum(axis=_reduced_axes(shape, axis)), 0, atol=1e-9)


def test_need_grad_x_false_gives_the_same_weight_gradients():
    shape = (8, 5)
    layer = _built_layer(shape, -1)
    x, upstream = _data(shape, 5), _data(shape, 6)
    layer.forward(x, training=True)
    layer.backward(upstream)
    full = [g.copy() for g in layer.grads]
    layer.forward(x, training=True)
    assert layer.backward(upstream, need_grad_x=False) is None
    for a, b in zip(full, layer.grads):
        np.testing.assert_array_equal(a, b)


def test_regularizers_add_their_gradient_and_loss():
    shape = (8, 5)
    plain = _built_layer(shape, -1)
    reg = _built_layer(shape, -1, gamma_regularizer=regularizers.L2(0.1),
                       beta_regularizer=regularizers.L1(0.05))
    x, upstream = _data(shape, 7), _data(shape, 8)
    for layer in (plain, reg):
        layer.forward(x, training=True)
        layer.backward(upstream)
    gamma, beta = reg.gamma.value, reg.beta.value
    np.testing.assert_allclose(reg.grads[0] - plain.grads[0], 0.2 * gamma, rtol=1e-12)
    np.testing.assert_allclose(reg.grads[1] - plain.grads[1], 0.05 * np.sign(beta), rtol=1e-12)
    assert reg.regularization_loss() == pytest.approx(
        0.1 * np.sum(gamma ** 2) + 0.05 * np.sum(np.abs(beta)))


def test_frozen_layer_runs_in_inference_mode_even_when_training():
    shape = (6, 3, 4)
    layer = _built_layer(shape, 1)
    layer.trainable = False
    x, upstream = _data(shape, 9), _data(shape, 10)
    before = [w.copy() for w in layer.get_weights()]
    y = layer.forward(x, training=True).copy()
    gamma, beta, mean, var = before
    np.testing.assert_allclose(y, _reference_inference(x, gamma, beta, mean, var, 1, 1e-3),
                               rtol=1e-12, atol=1e-12)
    grad_x = layer.backward(upstream)
    assert layer.grads == [] and layer.trainable_weights == []
    np.testing.assert_allclose(grad_x, upstream * _param(gamma / np.sqrt(var + 1e-3), shape, 1),
                               rtol=1e-12)
    for old, new in zip(before, layer.get_weights()):
        np.testing.assert_array_equal(old, new)
    layer.trainable = True  # unfrozen: batch statistics again
    assert not np.allclose(layer.forward(x, training=True), y)


# ---------------------------------------------------------------------------------------------
# Buffers: a training step allocates nothing of the batch's size after the first
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape, axis", [((256, 1024), -1), ((64, 8, 8, 64), -1),
                                         ((64, 64, 8, 8), 1)], ids=["2d", "nhwc", "nchw"])
def test_training_steps_reuse_buffers(shape, axis):
    layer = BatchNormalization(axis=axis)
    x, upstream = _data(shape, 11, "float32"), _data(shape, 12, "float32")
    y0 = layer.forward(x, training=True)
    g0 = layer.backward(upstream)
    tracemalloc.start()
    try:
        for _ in range(3):
            y = layer.forward(x, training=True)
            g = layer.backward(upstream)
            layer.forward(x, training=False)
            layer.backward(upstream)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert np.shares_memory(y, y0) and np.shares_memory(g, g0)
    # Only NumPy's own iterator buffers (at most 8192 elements per broadcasting ufunc call),
    # never an array of x's size (1 MiB here).
    assert peak < 96 * 1024, f"a step allocated {peak} bytes (x is {x.nbytes})"


# ---------------------------------------------------------------------------------------------
# PyTorch cross-check
# ---------------------------------------------------------------------------------------------
TORCH_CASES = [((32, 6), -1, "1d"), ((8, 5, 4, 6), 1, "2d"), ((8, 4, 6, 5), -1, "2d-nhwc")]


@pytest.mark.parametrize("shape, axis, kind", TORCH_CASES, ids=[c[2] for c in TORCH_CASES])
def test_matches_torch_in_training_mode(shape, axis, kind):
    torch = pytest.importorskip("torch")
    momentum, eps = 0.9, 1e-3
    layer = _built_layer(shape, axis, momentum=momentum, epsilon=eps)
    features = shape[axis % len(shape)]
    layer.set_weights([layer.gamma.value, layer.beta.value, np.zeros(features),
                       np.ones(features)])  # torch's initial running statistics
    module = (torch.nn.BatchNorm1d if kind == "1d" else torch.nn.BatchNorm2d)(
        features, eps=eps, momentum=1.0 - momentum).double()
    with torch.no_grad():
        module.weight.copy_(torch.from_numpy(layer.gamma.numpy()))
        module.bias.copy_(torch.from_numpy(layer.beta.numpy()))
    module.train()

    def to_torch_layout(a):  # torch wants channels on axis 1
        return a.transpose(0, 3, 1, 2) if kind == "2d-nhwc" else a

    n = int(np.prod(shape)) // features
    expected_torch_var = np.ones(features)
    for step in range(3):
        x = _data(shape, 20 + step) * (step + 1)
        upstream = np.random.default_rng(30 + step).standard_normal(shape)
        y = layer.forward(x, training=True)
        grad_x = layer.backward(upstream)
        xt = torch.tensor(to_torch_layout(x), requires_grad=True)
        module.zero_grad()
        yt = module(xt)
        yt.backward(torch.from_numpy(np.ascontiguousarray(to_torch_layout(upstream))))
        np.testing.assert_allclose(to_torch_layout(y), yt.detach().numpy(), rtol=1e-10,
                                   atol=1e-12)
        np.testing.assert_allclose(to_torch_layout(grad_x), xt.grad.numpy(), rtol=1e-9,
                                   atol=1e-11)
        np.testing.assert_allclose(layer.grads[0], module.weight.grad.numpy(), rtol=1e-10)
        np.testing.assert_allclose(layer.grads[1], module.bias.grad.numpy(), rtol=1e-10)
        # Same moving mean (torch momentum = 1 - Keras momentum).
        np.testing.assert_allclose(layer.moving_mean.value, module.running_mean.numpy(),
                                   rtol=1e-12, atol=1e-14)
        # Moving variance: torch averages the unbiased batch variance, Keras the biased one.
        batch_var = x.var(axis=_reduced_axes(shape, axis))
        expected_torch_var = (expected_torch_var * momentum
                              + batch_var * n / (n - 1) * (1.0 - momentum))
        np.testing.assert_allclose(module.running_var.numpy(), expected_torch_var, rtol=1e-12)
        assert np.all(module.running_var.numpy() > layer.moving_variance.value)
    # After one step from ones the update terms differ by exactly n / (n - 1).
    fresh = _built_layer(shape, axis, momentum=momentum, epsilon=eps)
    fresh.set_weights([fresh.gamma.value, fresh.beta.value, np.zeros(features),
                       np.ones(features)])
    module.reset_running_stats()
    x = _data(shape, 40)
    fresh.forward(x, training=True)
    module(torch.from_numpy(np.ascontiguousarray(to_torch_layout(x))))
    ratio = (module.running_var.numpy() - momentum) / (fresh.moving_variance.value - momentum)
    np.testing.assert_allclose(ratio, n / (n - 1), rtol=1e-9)


# ---------------------------------------------------------------------------------------------
# In a model: fit, evaluate, predict, save/load
# ---------------------------------------------------------------------------------------------
def _problem(samples=480, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((samples, 20))
    weights = rng.standard_normal((20, 3))
    y = np.argmax(x @ weights, axis=1).astype(np.int64)
    # Badly scaled inputs: the layer's normalisation is what makes this easy to learn.
    x = (x * rng.uniform(0.5, 20.0, 20) + rng.uniform(-30, 30, 20)).astype(np.float32)
    return x, y


def _model(bn=None):
    set_random_seed(0)
    bn = bn if bn is not None else BatchNormalization()
    model = pynn.Sequential([layers.Input((20,)), layers.Dense(32), bn,
                             layers.Activation("relu"), layers.Dense(3, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model, bn


def test_model_uses_the_python_loop_not_the_dense_fast_path():
    from pynn.models.fast_path import FastFit, _dense_chain, compiled_predictor

    model, _ = _model()
    x, y = _problem(64)
    xs, ys = model._prepare_x(x), model._prepare_y(y, len(x))
    assert _dense_chain(model) is None and _dense_chain(model, inference=True) is None
    assert FastFit.prepare(model, xs, ys, 32) is None
    assert compiled_predictor(model, 512) is None


def test_model_trains_and_inference_uses_moving_statistics(tmp_path):
    model, bn = _model()
    x, y = _problem()
    history = model.fit(x, y, batch_size=32, epochs=8, verbose=0)
    losses, accuracy = history.history["loss"], history.history["accuracy"]
    assert all(b < a for a, b in zip(losses, losses[1:])), losses
    assert losses[-1] < 0.7 * losses[0], losses
    assert accuracy[-1] > accuracy[0] + 0.2, accuracy
    # fit moved the statistics toward the Dense outputs (far from the 0/1 initial values).
    assert np.abs(bn.moving_mean.value).max() > 0.5
    assert not np.allclose(bn.moving_variance.value, 1.0)

    stats = [w.copy() for w in bn.get_weights()]
    first = model.predict(x, verbose=0)
    second = model.predict(x, verbose=0)
    np.testing.assert_array_equal(first, second)
    # Per-sample outputs (moving statistics), not batch statistics.
    np.testing.assert_allclose(model.predict(x[:3], verbose=0), first[:3], rtol=1e-6,
                               atol=1e-7)
    loss, accuracy = model.evaluate(x, y, verbose=0)
    for old, new in zip(stats, bn.get_weights()):
        np.testing.assert_array_equal(old, new)  # predict/evaluate leave the state alone
    # evaluate's loss is the inference-mode loss of predict's outputs.
    expected = -np.mean(np.log(first[np.arange(len(y)), y]))
    assert loss == pytest.approx(expected, rel=1e-4)

    path = tmp_path / "bn_model.keras"
    model.save(path)
    loaded = pynn.models.load_model(path)
    loaded_bn = [l for l in loaded.layers if isinstance(l, BatchNormalization)][0]
    for old, new in zip(bn.get_weights(), loaded_bn.get_weights()):
        np.testing.assert_array_equal(old, new)  # moving statistics are saved too
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), first)
    assert loaded_bn.get_config() == bn.get_config()
    # The loaded model keeps training (optimizer state restored, same layer behaviour).
    loaded.fit(x, y, batch_size=32, epochs=1, verbose=0)
    assert not np.array_equal(loaded_bn.moving_mean.value, bn.moving_mean.value)
    # Calling in training mode uses batch statistics (other outputs, so the checks above are
    # not vacuous) and, as in Keras, updates the moving statistics.
    assert not np.allclose(model(x[:32], training=True), first[:32], atol=1e-3)
    assert not np.array_equal(bn.moving_mean.value, stats[2])


def test_frozen_batch_normalization_does_not_change_during_fit():
    frozen = BatchNormalization(trainable=False)
    model, bn = _model(frozen)
    x, y = _problem(256)
    rng = np.random.default_rng(3)
    values = [rng.uniform(0.5, 2.0, 32), rng.normal(0, 1, 32), rng.normal(0, 5, 32),
              rng.uniform(10.0, 50.0, 32)]
    bn.set_weights(values)
    dense_before = model.layers[0].kernel.numpy()
    assert len(model.trainable_weights) == 4  # the two Dense layers only
    assert len(model.non_trainable_weights) == 4
    history = model.fit(x, y, batch_size=32, epochs=3, verbose=0)
    for old, new in zip(values, bn.get_weights()):
        np.testing.assert_array_equal(np.asarray(old, np.float32), new)
    # The rest of the model trained through the frozen layer's (inference) gradient.
    assert not np.array_equal(model.layers[0].kernel.value, dense_before)
    assert history.history["loss"][-1] < history.history["loss"][0]


# ---------------------------------------------------------------------------------------------
# Config and errors
# ---------------------------------------------------------------------------------------------
def test_config_round_trip():
    layer = BatchNormalization(axis=1, momentum=0.9, epsilon=1e-5, center=False,
                               gamma_initializer="random_normal",
                               moving_variance_initializer="zeros",
                               gamma_regularizer=regularizers.L2(0.01), name="bn_cfg",
                               dtype="float64")
    config = layer.get_config()
    assert config["axis"] == 1 and config["momentum"] == 0.9 and config["epsilon"] == 1e-5
    assert config["center"] is False and config["scale"] is True
    assert config["synchronized"] is False and config["gamma_constraint"] is None
    assert config["gamma_regularizer"]["class_name"] == "L2"
    clone = BatchNormalization.from_config(config)
    assert clone.get_config() == config
    clone.build((3, 4))
    np.testing.assert_array_equal(clone.moving_variance.value, 0)
    assert clone.dtype == "float64" and len(clone._regularizers) == 1
    rebuilt = layers.deserialize(layers.serialize(layer))
    assert isinstance(rebuilt, BatchNormalization) and rebuilt.get_config() == config


@pytest.mark.parametrize("axis, shape", [(2, (4, 5)), (-3, (4, 5)), (0, (4, 5)), (4, (2, 3, 4))])
def test_bad_axis_for_input_rank(axis, shape):
    layer = BatchNormalization(axis=axis)
    with pytest.raises(ValueError, match=rf"axis={axis}.*{shape[-1]}\)"):
        layer(np.zeros(shape, np.float32))


def test_input_of_another_rank_or_feature_count_after_build():
    layer = BatchNormalization()
    layer(np.zeros((4, 5), np.float32), training=True)
    with pytest.raises(ValueError, match=r"\(None, 5\).*\(4, 5, 1\)"):
        layer.forward(np.zeros((4, 5, 1), np.float32), training=True)
    with pytest.raises(ValueError, match=r"got shape \(4, 6\)"):
        layer.forward(np.zeros((4, 6), np.float32), training=True)


@pytest.mark.parametrize("kwargs, message", [
    ({"axis": [1, 2]}, "one axis"),
    ({"axis": [-1]}, "single int"),
    ({"beta_constraint": "non_neg"}, "constraint"),
    ({"gamma_constraint": object()}, "constraint"),
    ({"synchronized": True}, "synchronized"),
    ({"renorm": True}, "renorm"),
    ({"virtual_batch_size": 8}, "virtual_batch_size"),
])
def test_unsupported_arguments(kwargs, message):
    with pytest.raises(NotImplementedError, match=message):
        BatchNormalization(**kwargs)


def test_other_argument_errors():
    with pytest.raises(TypeError, match="axis must be an int"):
        BatchNormalization(axis="channels")
    with pytest.raises(TypeError, match="unexpected keyword"):
        BatchNormalization(fused=True)
    with pytest.raises(RuntimeError, match="before forward"):
        layer = BatchNormalization()
        layer.build((3,))
        layer.backward(np.zeros((2, 3), np.float32))
    with pytest.raises(NotImplementedError, match="mask"):
        BatchNormalization()(np.zeros((2, 3), np.float32), mask=np.ones(2, bool))
    BatchNormalization(renorm=False)  # the default value is accepted


def test_freezing_the_model_freezes_its_batch_normalization():
    """Keras: model.trainable = False sets every layer's trainable, so BatchNormalization
    normalises with its moving statistics and leaves them alone during fit."""
    set_random_seed(0)
    model = pynn.Sequential([layers.Input((6,)), layers.Dense(8), BatchNormalization(),
                             layers.Dense(2, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 6)).astype(np.float32) * 3 + 1
    y = rng.integers(0, 2, 64)
    model.fit(x, y, epochs=1, batch_size=16, verbose=0)
    model.trainable = False
    assert all(not layer.trainable for layer in model.layers)
    before = [w.copy() for w in model.get_weights()]
    model.fit(x, y, epochs=1, batch_size=16, verbose=0)
    for old, new in zip(before, model.get_weights()):
        np.testing.assert_array_equal(old, new)
    model.trainable = True
    assert all(layer.trainable for layer in model.layers)


class _Subclassed(pynn.Model):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.dense = layers.Dense(8)
        self.norm = BatchNormalization()
        self.out = layers.Dense(2, activation="softmax")

    def call(self, x, training=False):
        return self.out(self.norm(self.dense(x)))


def _frozen_models():
    set_random_seed(1)
    sequential = pynn.Sequential([layers.Input((6,)), layers.Dense(8), BatchNormalization(),
                                  layers.Dense(2, activation="softmax")], trainable=False)
    inputs = layers.Input((6,))
    outputs = layers.Dense(2, activation="softmax")(BatchNormalization()(layers.Dense(8)(inputs)))
    functional = pynn.Model(inputs, outputs, trainable=False)
    subclassed = _Subclassed(trainable=False)
    subclassed.build((None, 6))
    return {"sequential": sequential, "functional": functional, "subclassed": subclassed}


@pytest.mark.parametrize("kind", ["sequential", "functional", "subclassed"])
def test_a_model_built_frozen_freezes_its_layers(kind):
    model = _frozen_models()[kind]
    assert all(not layer.trainable for layer in model.layers)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((32, 6)).astype(np.float32) * 2 + 1
    before = [w.copy() for w in model.get_weights()]
    model.fit(x, rng.integers(0, 2, 32), epochs=1, batch_size=8, verbose=0)
    for old, new in zip(before, model.get_weights()):
        np.testing.assert_array_equal(old, new)


def test_layers_added_to_a_frozen_sequential_are_frozen_and_a_frozen_dense_chain_fits():
    model = pynn.Sequential([layers.Input((4,)), layers.Dense(3)], trainable=False)
    model.add(layers.Dense(2, activation="softmax"))
    assert not model.layers[-1].trainable
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    x = np.ones((8, 4), np.float32)
    before = [w.copy() for w in model.get_weights()]
    model.fit(x, np.zeros(8, int), epochs=1, verbose=0)  # once: a ValueError in the trainer
    for old, new in zip(before, model.get_weights()):
        np.testing.assert_array_equal(old, new)
