"""Sequential / functional / subclassed models: building, the Keras training API, fit semantics,
the explicit forward/backward loop, determinism, input validation, summary and config."""
import os

import numpy as np
import pytest

import pynn
from pynn import layers
from pynn.callbacks import Callback
from pynn.utils import set_random_seed

REQUIRED_KERNELS = ("dense_forward", "dense_backward", "activation_forward",
                    "activation_backward", "softmax_cross_entropy_sparse", "mean_squared_error",
                    "adam_update", "sgd_update", "rmsprop_update", "sum_of_squares")


def _backend_for_tests():
    """PYNN_BACKEND when set; otherwise cnn_core once it has every kernel a fit needs."""
    name = os.environ.get("PYNN_BACKEND")
    if name:
        return name
    import cnn_core

    return "cnn_core" if all(hasattr(cnn_core, k) for k in REQUIRED_KERNELS) else "numpy"


@pytest.fixture(autouse=True)
def _backend():
    pynn.set_backend(_backend_for_tests())
    yield


def two_moons(n=400, noise=0.1, seed=0):
    rng = np.random.default_rng(seed)
    half = n // 2
    t = rng.uniform(0, np.pi, half)
    upper = np.stack([np.cos(t), np.sin(t)], 1)
    lower = np.stack([1 - np.cos(t), 0.5 - np.sin(t)], 1)
    x = np.concatenate([upper, lower]) + noise * rng.standard_normal((2 * half, 2))
    y = np.concatenate([np.zeros(half, int), np.ones(half, int)])
    return x.astype(np.float32), y


def small_classifier(seed=0, hidden=16, classes=2, optimizer="adam"):
    set_random_seed(seed)
    model = pynn.Sequential([
        layers.Dense(hidden, activation="relu", input_shape=(2,)),
        layers.Dense(classes, activation="softmax"),
    ])
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def regression_data(n=50, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 3)).astype(np.float32)
    y = (x @ np.array([[1.0], [-2.0], [0.5]]) + 0.1).astype(np.float32)
    return x, y


# --------------------------------------------------------------------------------------------
# Building
# --------------------------------------------------------------------------------------------
def test_sequential_build_variants_agree():
    a = pynn.Sequential([layers.Dense(4, input_shape=(3,)), layers.Dense(2)])
    b = pynn.models.Sequential([layers.Input(shape=(3,)), layers.Dense(4), layers.Dense(2)])
    c = pynn.Sequential()
    c.add(layers.Dense(4))
    c.add(layers.Dense(2))
    assert not c.built
    c.build((None, 3))
    d = pynn.Sequential([layers.Dense(4), layers.Dense(2)])
    d.predict(np.zeros((1, 3), np.float32), verbose=0)  # lazy build on first data
    for model in (a, b, c, d):
        assert model.built and model.count_params() == 3 * 4 + 4 + 4 * 2 + 2
        assert model.input_shape == (None, 3) and model.output_shape == (None, 2)
        assert [type(l).__name__ for l in model.layers] == ["Dense", "Dense"]


def test_sequential_pop_and_add():
    model = pynn.Sequential([layers.Dense(4, input_shape=(3,)), layers.Dense(2)])
    popped = model.pop()
    assert isinstance(popped, layers.Dense) and len(model.layers) == 1
    assert model.output_shape == (None, 4)
    model.add(layers.Dense(7))
    assert model.output_shape == (None, 7)
    assert model.predict(np.zeros((2, 3), np.float32), verbose=0).shape == (2, 7)
    with pytest.raises(TypeError):
        model.add("dense")
    empty = pynn.Sequential()
    with pytest.raises(TypeError, match="no layers"):
        empty.pop()


def test_functional_chain_matches_manual_computation():
    inp = layers.Input(shape=(2,))
    h = layers.Dense(4, activation="tanh")(inp)
    model = pynn.Model(inputs=inp, outputs=layers.Dense(1)(h))
    assert [type(l).__name__ for l in model.layers] == ["InputLayer", "Dense", "Dense"]
    x = np.random.default_rng(0).standard_normal((5, 2)).astype(np.float32)
    w1, b1, w2, b2 = model.get_weights()
    expected = np.tanh(x @ w1 + b1) @ w2 + b2
    np.testing.assert_allclose(model.predict(x, verbose=0), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model(x), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model.predict_on_batch(x), expected, rtol=1e-5, atol=1e-6)


def test_functional_rejects_disconnected_outputs():
    inp = layers.Input(shape=(2,))
    other = layers.Dense(3)(layers.Input(shape=(2,)))
    with pytest.raises(ValueError, match="not computed from its inputs"):
        pynn.Model(inputs=inp, outputs=other)


def test_subclassed_model_is_traced_from_call():
    class TwoLayer(pynn.Model):
        def __init__(self):
            super().__init__()
            self.hidden = layers.Dense(8, activation="relu")
            self.out = layers.Dense(1)

        def call(self, x, training=False):
            return self.out(self.hidden(x))

    set_random_seed(0)
    model = TwoLayer()
    x, y = regression_data()
    model.compile(optimizer="adam", loss="mse")
    history = model.fit(x, y, epochs=3, verbose=0)
    assert len(history.history["loss"]) == 3
    assert model.count_params() == 3 * 8 + 8 + 8 + 1


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------
def test_fit_learns_two_moons_and_history_keys():
    x, y = two_moons()
    model = small_classifier(hidden=32, optimizer=pynn.optimizers.Adam(0.02))
    history = model.fit(x, y, batch_size=32, epochs=40, verbose=0, validation_split=0.2)
    assert set(history.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert len(history.history["loss"]) == 40
    assert history.history["loss"][-1] < 0.5 * history.history["loss"][0]
    assert history.history["accuracy"][-1] > 0.95
    assert model.history is history
    loss, accuracy = model.evaluate(x, y, verbose=0)
    assert accuracy > 0.95 and loss < 0.2


def test_fit_returns_float_logs_and_evaluate_predict_shapes():
    x, y = two_moons(n=100)
    model = small_classifier(classes=3)
    model.fit(x, y, epochs=1, verbose=0)
    assert isinstance(model.evaluate(x, y, verbose=0), list)
    logs = model.evaluate(x, y, verbose=0, return_dict=True)
    assert set(logs) == {"loss", "accuracy"} and all(isinstance(v, float) for v in logs.values())
    probs = model.predict(x, batch_size=7, verbose=0)
    assert probs.shape == (100, 3) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    reg = pynn.Sequential([layers.Dense(1, input_shape=(3,))])
    reg.compile(optimizer="sgd", loss="mse")
    xr, yr = regression_data()
    assert isinstance(reg.evaluate(xr, yr, verbose=0), float)


def test_epoch_loss_is_batch_size_weighted_mean():
    """With lr=0 the weights stay fixed: the epoch's reported loss (mean of batch losses
    weighted by batch size, last partial batch included) equals the full-data loss."""
    x, y = two_moons(n=103)
    model = small_classifier(optimizer=pynn.optimizers.SGD(learning_rate=0.0))
    history = model.fit(x, y, batch_size=10, epochs=2, verbose=0)
    loss, accuracy = model.evaluate(x, y, batch_size=103, verbose=0)
    np.testing.assert_allclose(history.history["loss"], [loss, loss], rtol=1e-5)
    np.testing.assert_allclose(history.history["accuracy"], [accuracy, accuracy])


def test_validation_split_uses_last_samples_before_shuffling():
    x, y = two_moons(n=100)
    order = np.random.default_rng(1).permutation(100)
    x, y = x[order], y[order]
    model = small_classifier(optimizer=pynn.optimizers.SGD(learning_rate=0.0))
    history = model.fit(x, y, epochs=1, validation_split=0.25, verbose=0)
    val_loss, val_acc = model.evaluate(x[75:], y[75:], verbose=0)
    assert history.history["val_loss"][0] == pytest.approx(val_loss, rel=1e-6)
    assert history.history["val_accuracy"][0] == pytest.approx(val_acc)
    history = model.fit(x, y, epochs=1, validation_data=(x[:10], y[:10]), verbose=0)
    assert history.history["val_loss"][0] == pytest.approx(
        model.evaluate(x[:10], y[:10], verbose=0)[0], rel=1e-6)


def test_metrics_reset_every_epoch():
    x, y = two_moons(n=60)
    model = small_classifier(optimizer=pynn.optimizers.SGD(learning_rate=0.0))
    rng = np.random.default_rng(0)
    weight_sets = [[rng.standard_normal(w.shape).astype(np.float32)
                    for w in model.get_weights()] for _ in range(3)]

    class SwapWeights(Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.model.set_weights(weight_sets[epoch])

    history = model.fit(x, y, epochs=3, verbose=0, callbacks=[SwapWeights()])
    for epoch, weights in enumerate(weight_sets):
        model.set_weights(weights)
        loss, accuracy = model.evaluate(x, y, verbose=0)
        assert history.history["accuracy"][epoch] == pytest.approx(accuracy)
        assert history.history["loss"][epoch] == pytest.approx(loss, rel=1e-5)


def test_callbacks_are_called_at_keras_points():
    events = []

    class Recorder(Callback):
        pass

    hooks = ["on_train_begin", "on_train_end", "on_epoch_begin", "on_epoch_end",
             "on_train_batch_begin", "on_train_batch_end", "on_test_begin", "on_test_end",
             "on_test_batch_begin", "on_test_batch_end"]
    for hook in hooks:
        setattr(Recorder, hook, (lambda name: lambda self, *a, **k: events.append(name))(hook))
    x, y = two_moons(n=20)
    model = small_classifier()
    model.fit(x, y, batch_size=10, epochs=2, validation_data=(x[:5], y[:5]), verbose=0,
              callbacks=[Recorder()])
    epoch = (["on_epoch_begin"] + ["on_train_batch_begin", "on_train_batch_end"] * 2
             + ["on_test_begin", "on_test_batch_begin", "on_test_batch_end", "on_test_end",
                "on_epoch_end"])
    assert events == ["on_train_begin"] + epoch * 2 + ["on_train_end"]


def test_batch_logs_are_running_means_and_end_with_epoch_logs():
    seen = []

    class Logs(Callback):
        def on_train_batch_end(self, batch, logs=None):
            seen.append(dict(logs))

        def on_epoch_end(self, epoch, logs=None):
            seen.append(("epoch", dict(logs)))

    x, y = two_moons(n=50)
    model = small_classifier()
    model.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[Logs()])
    assert len(seen) == 5
    assert seen[3]["loss"] == pytest.approx(seen[4][1]["loss"])
    assert set(seen[0]) == {"loss", "accuracy"}


def test_stop_training_is_honoured():
    class StopAtFirstBatch(Callback):
        def on_train_batch_end(self, batch, logs=None):
            self.model.stop_training = True

    x, y = two_moons(n=64)
    model = small_classifier()
    history = model.fit(x, y, batch_size=16, epochs=5, verbose=0,
                        callbacks=[StopAtFirstBatch()])
    assert len(history.history["loss"]) == 1
    assert model.optimizer.iterations == 1


def test_initial_epoch_and_zero_epochs():
    x, y = two_moons(n=32)
    model = small_classifier()
    history = model.fit(x, y, epochs=3, initial_epoch=1, verbose=0)
    assert history.epoch == [1, 2]
    history = model.fit(x, y, epochs=0, verbose=0)
    assert history.history == {}


def test_fused_softmax_cross_entropy_path_is_used():
    x, y = two_moons(n=32)
    model = small_classifier()
    calls = {"fused": 0, "plain": 0}
    loss_fn = model._loss_fn
    original_fused, original_plain = loss_fn.loss_and_grad_from_logits, loss_fn.loss_and_grad

    def fused(*args, **kwargs):
        calls["fused"] += 1
        return original_fused(*args, **kwargs)

    def plain(*args, **kwargs):
        calls["plain"] += 1
        return original_plain(*args, **kwargs)

    loss_fn.loss_and_grad_from_logits, loss_fn.loss_and_grad = fused, plain
    model.jit_compile = False  # the per-layer Python loop, whose loss calls we count
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    assert calls == {"fused": 4, "plain": 0}


def test_explicit_loop_equals_one_fit_step():
    x, y = regression_data(n=40)

    def make():
        set_random_seed(3)
        model = pynn.Sequential([layers.Dense(8, activation="tanh", input_shape=(3,)),
                                 layers.Dense(1)])
        model.compile(optimizer=pynn.optimizers.SGD(0.1), loss="mse")
        return model

    fitted = make()
    fitted.fit(x, y, batch_size=40, epochs=1, shuffle=False, verbose=0)

    model = make()
    loss_fn = pynn.losses.get("mse")
    optimizer = pynn.optimizers.SGD(0.1)
    y_pred = model.forward(x, training=True)
    loss, grad = loss_fn.loss_and_grad(y, y_pred)
    grads = model.backward(grad)
    assert len(grads) == len(model.trainable_variables) == 4
    optimizer.apply(grads, model.trainable_variables)
    for a, b in zip(fitted.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_train_on_batch_test_on_batch_predict_on_batch():
    x, y = two_moons(n=32)
    model = small_classifier()
    before = model.get_weights()
    loss, accuracy = model.train_on_batch(x, y)
    assert np.isfinite(loss) and 0 <= accuracy <= 1
    assert any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    logs = model.test_on_batch(x, y, return_dict=True)
    assert set(logs) == {"loss", "accuracy"}
    assert logs["loss"] == pytest.approx(model.evaluate(x, y, verbose=0)[0], rel=1e-6)
    assert model.predict_on_batch(x).shape == (32, 2)


def test_same_seed_gives_bitwise_identical_training():
    x, y = two_moons(n=100)

    def run(seed):
        model = small_classifier(seed=seed)
        model.fit(x, y, batch_size=16, epochs=3, verbose=0)
        return model.get_weights()

    a, b, c = run(7), run(7), run(8)
    for wa, wb in zip(a, b):
        np.testing.assert_array_equal(wa, wb)
    assert any(not np.array_equal(wa, wc) for wa, wc in zip(a, c))


def test_dropout_model_is_deterministic_under_seed():
    x, y = two_moons(n=64)

    def run():
        set_random_seed(1)
        model = pynn.Sequential([layers.Dense(16, activation="relu", input_shape=(2,)),
                                 layers.Dropout(0.5), layers.Dense(2, activation="softmax")])
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        model.fit(x, y, batch_size=16, epochs=2, verbose=0)
        return model.get_weights()

    for wa, wb in zip(run(), run()):
        np.testing.assert_array_equal(wa, wb)


def test_regularizer_penalty_is_in_the_loss():
    x, y = regression_data()
    set_random_seed(0)
    model = pynn.Sequential([layers.Dense(1, input_shape=(3,), kernel_regularizer="l2")])
    model.compile(optimizer=pynn.optimizers.SGD(0.0), loss="mse")
    history = model.fit(x, y, batch_size=50, epochs=1, verbose=0)
    kernel, bias = model.get_weights()
    mse = float(np.mean((x @ kernel + bias - y) ** 2))
    penalty = 0.01 * float(np.sum(kernel.astype(np.float64) ** 2))
    assert history.history["loss"][0] == pytest.approx(mse + penalty, rel=1e-5)
    assert model.losses[0] == pytest.approx(penalty)


def test_frozen_layer_is_not_updated():
    x, y = regression_data()
    model = pynn.Sequential([layers.Dense(4, input_shape=(3,)), layers.Dense(1)])
    model.layers[0].trainable = False
    model.compile(optimizer="sgd", loss="mse")
    frozen = model.layers[0].get_weights()
    model.fit(x, y, epochs=2, verbose=0)
    for a, b in zip(frozen, model.layers[0].get_weights()):
        np.testing.assert_array_equal(a, b)
    assert len(model.trainable_variables) == 2 and len(model.weights) == 4


def test_training_loop_reuses_buffers():
    x, y = two_moons(n=64)
    model = small_classifier()
    model.jit_compile = False  # the per-layer Python loop and its buffers
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    first = model.layers[0]._buffers["a", (16, 16)]
    keys = set(model._buffers)
    model.fit(x, y, batch_size=16, epochs=2, verbose=0)
    assert model.layers[0]._buffers["a", (16, 16)] is first
    assert set(model._buffers) == keys


# --------------------------------------------------------------------------------------------
# Input validation (before any training)
# --------------------------------------------------------------------------------------------
def _untouched(model, before):
    assert model.optimizer.iterations == 0
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_fit_before_compile():
    model = pynn.Sequential([layers.Dense(1, input_shape=(2,))])
    with pytest.raises(RuntimeError, match=r"compile\(\) before fit"):
        model.fit(np.zeros((4, 2)), np.zeros(4))
    with pytest.raises(RuntimeError, match=r"compile\(\) before evaluate"):
        model.evaluate(np.zeros((4, 2)), np.zeros(4))


@pytest.mark.parametrize("case, error, message", [
    ("length", ValueError, r"same number of samples.*100.*99"),
    ("features", ValueError, r"expects input of shape \(None, 2\).*\(100, 3\)"),
    ("nan_x", ValueError, "non-finite"),
    ("inf_x", ValueError, "non-finite"),
    ("label_range", ValueError, r"label 5 .*\[0, 2\)"),
    ("label_float", ValueError, "integer"),
    ("x_strings", TypeError, "numeric"),
    ("y_missing", ValueError, "y is None"),
    ("batch_size", ValueError, "batch_size"),
])
def test_bad_inputs_raise_before_training(case, error, message):
    x, y = two_moons(n=100)
    model = small_classifier()
    before = model.get_weights()
    kwargs = {}
    if case == "length":
        y = y[:99]
    elif case == "features":
        x = np.zeros((100, 3), np.float32)
    elif case == "nan_x":
        x = x.copy()
        x[3, 1] = np.nan
    elif case == "inf_x":
        x = x.copy()
        x[0, 0] = np.inf
    elif case == "label_range":
        y = y.copy()
        y[10] = 5
    elif case == "label_float":
        y = y.astype(np.float32) + 0.5
    elif case == "x_strings":
        x = np.array([["a", "b"]] * 100)
    elif case == "y_missing":
        y = None
    elif case == "batch_size":
        kwargs["batch_size"] = 0
    with pytest.raises(error, match=message):
        model.fit(x, y, epochs=1, verbose=0, **kwargs)
    _untouched(model, before)


def test_nan_in_regression_targets_and_bad_validation_data():
    x, y = regression_data()
    model = pynn.Sequential([layers.Dense(1, input_shape=(3,))])
    model.compile(optimizer="sgd", loss="mse")
    before = model.get_weights()
    y_bad = y.copy()
    y_bad[2, 0] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        model.fit(x, y_bad, verbose=0)
    with pytest.raises(ValueError, match=r"expects input of shape"):
        model.fit(x, y, validation_data=(x[:, :2], y), verbose=0)
    with pytest.raises(ValueError, match=r"validation_split"):
        model.fit(x, y, validation_split=1.5, verbose=0)
    _untouched(model, before)


@pytest.mark.parametrize("kwargs, message", [
    ({"optimizer": "adamm", "loss": "mse"}, "adam"),
    ({"optimizer": "sgd", "loss": "msee"}, "mean_squared_error"),
    ({"optimizer": "sgd", "loss": "mse", "metrics": ["accuracyy"]}, "accuracy"),
])
def test_unknown_names_in_compile_list_valid_ones(kwargs, message):
    model = pynn.Sequential([layers.Dense(1, input_shape=(2,))])
    with pytest.raises(ValueError, match=message):
        model.compile(**kwargs)


def test_int_and_float64_inputs_are_converted_once():
    x, y = regression_data()
    model = pynn.Sequential([layers.Dense(1, input_shape=(3,))])
    model.compile(optimizer="sgd", loss="mse")
    model.fit(x.astype(np.float64), y, verbose=0)
    model.fit(np.rint(x * 3).astype(np.int64), y, verbose=0)
    assert model.predict(x.astype(np.float64), verbose=0).dtype == np.float32


# --------------------------------------------------------------------------------------------
# Weights, summary, config
# --------------------------------------------------------------------------------------------
def test_get_set_weights_keras_order_and_errors():
    model = pynn.Sequential([layers.Dense(4, input_shape=(3,)), layers.Dense(2)])
    shapes = [w.shape for w in model.get_weights()]
    assert shapes == [(3, 4), (4,), (4, 2), (2,)]
    assert [v.shape for v in model.trainable_variables] == shapes
    assert model.trainable_weights == model.weights
    new = [np.full(s, i, np.float32) for i, s in enumerate(shapes)]
    model.set_weights(new)
    for a, b in zip(new, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="4 weight arrays"):
        model.set_weights(new[:3])
    with pytest.raises(ValueError, match=r"\(4, 2\)"):
        model.set_weights(new[:2] + [np.zeros((2, 4)), new[3]])


def test_summary_table():
    model = pynn.Sequential([layers.Dense(64, activation="relu", input_shape=(784,)),
                             layers.Dense(10)], name="mlp")
    lines = []
    model.summary(print_fn=lines.append)
    assert len(lines) == 1
    text = lines[0]
    assert 'Model: "mlp"' in text
    assert "Layer (type)" in text and "Output Shape" in text and "Param #" in text
    assert "(Dense)" in text and "(None, 64)" in text and "50,240" in text and "650" in text
    assert "Total params: 50,890 (198.79 KB)" in text
    assert "Trainable params: 50,890" in text and "Non-trainable params: 0 (0.00 B)" in text
    unbuilt = pynn.Sequential([layers.Dense(3)])
    unbuilt.summary(print_fn=lines.append)
    assert "?" in lines[-1]


def test_sequential_config_round_trip():
    model = pynn.Sequential([
        layers.Input(shape=(4, 3)),
        layers.Flatten(),
        layers.Dense(5, activation="elu", kernel_initializer="he_normal",
                     kernel_regularizer=pynn.regularizers.L2(0.1)),
        layers.Dropout(0.1),
        layers.Dense(6), layers.LeakyReLU(0.2), layers.Reshape((2, 3)), layers.Flatten(),
        layers.Dense(2), layers.Softmax(),
    ], name="seq")
    config = model.get_config()
    clone = pynn.Sequential.from_config(config)
    assert clone.get_config() == config
    clone.set_weights(model.get_weights())
    x = np.random.default_rng(0).standard_normal((3, 4, 3)).astype(np.float32)
    np.testing.assert_array_equal(clone.predict(x, verbose=0), model.predict(x, verbose=0))


def test_functional_config_round_trip():
    inp = layers.Input(shape=(3,), name="features")
    h = layers.Dense(4, activation="gelu", name="hidden")(inp)
    model = pynn.Model(inputs=inp, outputs=layers.Dense(2, name="head")(h), name="net")
    config = model.get_config()
    clone = pynn.Model.from_config(config)
    assert clone.get_config() == config
    assert [l.name for l in clone.layers] == ["features", "hidden", "head"]


def test_model_dtype_float64():
    pynn.utils.set_floatx("float64")
    try:
        model = pynn.Sequential([layers.Dense(2, input_shape=(3,))])
        model.compile(optimizer="sgd", loss="mse")
        x, y = regression_data()
        model.fit(x, np.repeat(y, 2, axis=1), verbose=0)
        assert model.predict(x, verbose=0).dtype == np.float64
    finally:
        pynn.utils.set_floatx("float32")


# --------------------------------------------------------------------------------------------
# numpy reference vs compiled core
# --------------------------------------------------------------------------------------------
def _missing_cnn_core_kernels():
    import cnn_core

    return [k for k in REQUIRED_KERNELS if not hasattr(cnn_core, k)]


@pytest.mark.parametrize("kind", ["classifier", "regression"])
def test_numpy_and_cnn_core_backends_train_to_the_same_weights(kind):
    missing = _missing_cnn_core_kernels()
    if missing:
        pytest.skip(f"cnn_core does not have these kernels yet: {missing}")
    x, y = two_moons(n=96)

    def train(backend):
        pynn.set_backend(backend)
        set_random_seed(21)
        if kind == "classifier":
            model = pynn.Sequential([
                layers.Dense(32, activation="tanh", input_shape=(2,)),
                layers.Dense(16, activation="gelu"),
                layers.Dense(2, activation="softmax")])
            model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                          metrics=["accuracy"])
            targets = y
        else:
            model = pynn.Sequential([
                layers.Dense(32, activation="relu", input_shape=(2,),
                             kernel_regularizer="l2"),
                layers.Dropout(0.2),
                layers.Dense(1)])
            model.compile(optimizer=pynn.optimizers.SGD(0.05, momentum=0.9), loss="mse")
            targets = (x[:, :1] * x[:, 1:]).astype(np.float32)
        history = model.fit(x, targets, batch_size=16, epochs=3, verbose=0)
        return model.get_weights(), history.history["loss"]

    weights_np, loss_np = train("numpy")
    weights_cc, loss_cc = train("cnn_core")
    np.testing.assert_allclose(loss_cc, loss_np, rtol=1e-5)
    for a, b in zip(weights_cc, weights_np):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
