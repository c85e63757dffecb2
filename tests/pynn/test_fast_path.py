"""The compiled fit loop (pynn/models/fast_path.py, cnn_core/_train.pyx) against the per-layer
Python loop: same batches, same kernels, so the same weights; thread-count independence; no
allocation while training."""
import json
import os
import pathlib
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest

import cnn_core
import pynn
from pynn import layers
from pynn.models.fast_path import FastFit


@pytest.fixture(autouse=True)
def _compiled_backend():
    pynn.set_backend("cnn_core")
    yield


def _data(n=300, features=20, classes=4, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, features)).astype(np.float32)
    labels = (np.abs(x[:, :classes]).argmax(axis=1)).astype(np.int64)
    return x, labels


def _model(loss, optimizer, activation="relu", out_activation="softmax", outputs=4,
           regularizer=None, seed=3, hidden=(16, 8), metrics=("accuracy",)):
    pynn.utils.set_random_seed(seed)
    model = pynn.Sequential(
        [layers.Input(shape=(20,))]
        + [layers.Dense(h, activation=activation, kernel_regularizer=regularizer,
                        bias_regularizer=regularizer) for h in hidden]
        + [layers.Dense(outputs, activation=out_activation)]
    )
    opt = pynn.optimizers.get(optimizer) if isinstance(optimizer, (str, dict)) else optimizer
    model.compile(optimizer=opt, loss=loss, metrics=list(metrics))
    return model


def _targets(loss, labels, outputs=4):
    if loss == "sparse_categorical_crossentropy":
        return labels
    if loss == "categorical_crossentropy":
        return np.eye(outputs, dtype=np.float32)[labels]
    if loss == "binary_crossentropy":
        return (np.eye(outputs, dtype=np.float32)[labels])
    return np.eye(outputs, dtype=np.float32)[labels] * 2 - 1


def _train_both_ways(make_model, x, y, epochs=2, batch_size=32, **fit_kwargs):
    """(compiled-loop model, Python-loop model, their histories), from the same seed."""
    results = []
    for jit in (True, False):
        model = make_model()
        model.jit_compile = jit
        pynn.utils.set_random_seed(11)
        history = model.fit(x, y, batch_size=batch_size, epochs=epochs, verbose=0, **fit_kwargs)
        results += [model, history.history]
    return results


OPTIMIZERS = [
    "adam",
    {"class_name": "SGD", "config": {"learning_rate": 0.05, "momentum": 0.9, "nesterov": True}},
    "sgd",
    {"class_name": "RMSprop", "config": {"momentum": 0.5, "centered": True}},
    "rmsprop",
    "adagrad",
    {"class_name": "AdamW", "config": {"weight_decay": 0.01}},
    {"class_name": "Adam", "config": {"clipnorm": 0.1}},
    {"class_name": "Adam", "config": {"global_clipnorm": 0.1}},
    {"class_name": "SGD", "config": {"clipvalue": 0.01}},
]
LOSSES = [
    ("sparse_categorical_crossentropy", "softmax"),
    ("categorical_crossentropy", "softmax"),
    ("binary_crossentropy", "sigmoid"),
    ("mse", "tanh"),
    ("mae", "linear"),
]


@pytest.mark.parametrize("loss, out_activation", LOSSES, ids=[l for l, _ in LOSSES])
@pytest.mark.parametrize("optimizer", OPTIMIZERS, ids=lambda o: str(o)[:40])
def test_compiled_loop_equals_python_loop(loss, out_activation, optimizer):
    x, labels = _data()
    y = _targets(loss, labels)
    metrics = ("accuracy",) if "crossentropy" in loss else ()

    def make():
        return _model(loss, optimizer, out_activation=out_activation, metrics=metrics)

    probe = make()
    assert FastFit.prepare(probe, probe._prepare_x(x), probe._prepare_y(y, len(x)), 32) \
        is not None, "this configuration should take the compiled loop"
    fast, fast_hist, slow, slow_hist = _train_both_ways(make, x, y)
    for a, b in zip(fast.get_weights(), slow.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    for key in slow_hist:
        np.testing.assert_allclose(fast_hist[key], slow_hist[key], rtol=1e-5)


def test_without_regularizers_the_two_loops_are_bitwise_equal():
    x, labels = _data()
    fast, _, slow, _ = _train_both_ways(
        lambda: _model("sparse_categorical_crossentropy", "adam"), x, labels, epochs=3)
    for a, b in zip(fast.get_weights(), slow.get_weights()):
        assert a.tobytes() == b.tobytes()


@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "elu", "sigmoid", "tanh",
                                        "softplus", "gelu", "linear"])
def test_every_hidden_activation(activation):
    """Two hidden layers: the compiled loop applies the lower layer's derivative inside the
    upper layer's dx GEMM; the Python loop in a separate pass. Same arithmetic, same bits."""
    x, labels = _data()
    fast, _, slow, _ = _train_both_ways(
        lambda: _model("sparse_categorical_crossentropy", "adam", activation=activation), x,
        labels)
    for a, b in zip(fast.get_weights(), slow.get_weights()):
        assert a.tobytes() == b.tobytes()


def test_regularizers_and_from_logits():
    x, labels = _data()

    def make():
        model = _model("sparse_categorical_crossentropy", "adam", out_activation="linear",
                       regularizer=pynn.regularizers.l1_l2(1e-3, 1e-3))
        model.compile(optimizer="adam",
                      loss=pynn.losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=["accuracy"])
        return model

    fast, fast_hist, slow, slow_hist = _train_both_ways(make, x, labels, validation_split=0.2)
    for a, b in zip(fast.get_weights(), slow.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(fast_hist["loss"], slow_hist["loss"], rtol=1e-5)
    np.testing.assert_allclose(fast_hist["val_accuracy"], slow_hist["val_accuracy"])


def test_learning_rate_schedule_is_followed_per_step():
    x, labels = _data()
    schedule = pynn.optimizers.schedules.ExponentialDecay(0.01, decay_steps=3, decay_rate=0.5)
    fast, _, slow, _ = _train_both_ways(
        lambda: _model("sparse_categorical_crossentropy", pynn.optimizers.Adam(schedule)), x,
        labels)
    assert fast.optimizer.iterations == slow.optimizer.iterations == 20
    for a, b in zip(fast.get_weights(), slow.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


UNSUPPORTED_DROPOUT = {
    "dropout_noise_shape": [layers.Dense(8), layers.Dropout(0.5, noise_shape=(1, 8)),
                            layers.Dense(4, activation="softmax")],
    "dropout_twice": [layers.Dense(8), layers.Dropout(0.5), layers.Dropout(0.2),
                      layers.Dense(4, activation="softmax")],
    "dropout_on_output": [layers.Dense(8), layers.Dense(4), layers.Dropout(0.5)],  # logits
    # A float64 Dropout draws doubles, a float64 Dense has float64 weights.
    "dropout_float64": [layers.Dense(8), layers.Dropout(0.5, dtype="float64"),
                        layers.Dense(4, activation="softmax")],
    "dense_float64": [layers.Dense(8, dtype="float64"), layers.Dense(4, activation="softmax")],
}


@pytest.mark.parametrize("unsupported", list(UNSUPPORTED_DROPOUT)
                         + ["amsgrad", "extra_metric", "numpy_backend"])
def test_unsupported_models_take_the_python_loop(unsupported):
    x, labels = _data()
    model = _model("sparse_categorical_crossentropy", "adam")
    if unsupported in UNSUPPORTED_DROPOUT:
        model = pynn.Sequential([layers.Input(shape=(20,))] + UNSUPPORTED_DROPOUT[unsupported])
        model.compile(optimizer="adam",
                      loss=pynn.losses.SparseCategoricalCrossentropy(
                          from_logits=unsupported == "dropout_on_output"))
    elif unsupported == "amsgrad":
        model.compile(optimizer=pynn.optimizers.Adam(amsgrad=True),
                      loss="sparse_categorical_crossentropy")
    elif unsupported == "extra_metric":
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                      metrics=["accuracy", "sparse_top_k_categorical_accuracy"])
    else:
        pynn.set_backend("numpy")
    xs, ys = model._prepare_x(x), model._prepare_y(labels, len(x))
    assert FastFit.prepare(model, xs, ys, 32) is None
    history = model.fit(x, labels, epochs=1, verbose=0)  # and the Python loop trains it
    assert np.isfinite(history.history["loss"][0])


def _dropout_model(loss="sparse_categorical_crossentropy", activation="relu",
                   out_activation="softmax", rates=(0.1, 0.45, 0.5), seeds=(None, None, 7)):
    """Input -> Dropout -> Dense(16) -> Dropout -> Dense(8) -> Dropout -> Dense(4): a dropout
    on the inputs, one between hidden layers, one (seeded: its own generator) before the
    output layer. 0.45: its 1 / (1 - rate) rounds differently in float32 arithmetic than
    from double, so the scale's rounding is checked too."""
    pynn.utils.set_random_seed(3)
    stack = [layers.Input(shape=(20,))]
    for rate, seed, dense in zip(rates, seeds, [
            layers.Dense(16, activation=activation), layers.Dense(8, activation=activation),
            layers.Dense(4, activation=out_activation)]):
        stack += [layers.Dropout(rate, seed=seed), dense]
    model = pynn.Sequential(stack)
    model.compile(optimizer="adam", loss=loss,
                  metrics=["accuracy"] if "crossentropy" in loss else [])
    return model


@pytest.mark.parametrize("case", ["relu", "gelu", "tanh", "mse_tanh_output", "rate_0_and_1",
                                  "all_seeded"])
def test_dropout_compiled_loop_equals_python_loop_bitwise(case):
    """The compiled loop draws each mask from the layer's generator as Generator.random does,
    in the same order as the Python loop: same masks, so the same bits. gelu's derivative
    needs z (a separate buffer); mse with tanh output applies the last derivative in the
    trainer; rate 0 draws nothing and rate 1 drops all without drawing."""
    x, labels = _data()
    kwargs = {"relu": {}, "gelu": {"activation": "gelu"}, "tanh": {"activation": "tanh"},
              "mse_tanh_output": {"loss": "mse", "out_activation": "tanh"},
              "rate_0_and_1": {"rates": (0.0, 1.0, 0.25)},
              "all_seeded": {"seeds": (1, 2, 3)}}[case]
    y = _targets(kwargs.get("loss", "sparse_categorical_crossentropy"), labels)
    probe = _dropout_model(**kwargs)
    assert FastFit.prepare(probe, probe._prepare_x(x), probe._prepare_y(y, len(x)), 32) \
        is not None, "a chain with dropout should take the compiled loop"
    runs = []
    for jit in (True, False):
        model = _dropout_model(**kwargs)
        model.jit_compile = jit
        pynn.utils.set_random_seed(11)
        history = model.fit(x, y, batch_size=32, epochs=3, verbose=0)
        # Where every generator stands afterwards: the same numbers were drawn from each.
        states = [pynn.utils.random.get_rng().bit_generator.state] + [
            layer._own_rng.bit_generator.state for layer in model.layers
            if isinstance(layer, layers.Dropout) and layer._own_rng is not None]
        runs.append((model.get_weights(), history.history, states))
    (fast, fast_hist, fast_states), (slow, slow_hist, slow_states) = runs
    for a, b in zip(fast, slow):
        assert a.tobytes() == b.tobytes()
    for key in slow_hist:  # the epoch means are summed in another order: last-digit equal
        np.testing.assert_allclose(fast_hist[key], slow_hist[key], rtol=1e-13)
    assert fast_states == slow_states


def test_dense_on_the_last_axis_of_3d_input_takes_the_python_loop():
    x = np.random.default_rng(0).standard_normal((40, 4, 5)).astype(np.float32)
    y = np.zeros((40, 4, 3), np.float32)
    model = pynn.Sequential([layers.Input(shape=(4, 5)), layers.Dense(3)])
    model.compile(optimizer="adam", loss="mse")
    assert FastFit.prepare(model, model._prepare_x(x), model._prepare_y(y, 40), 8) is None
    from pynn.models.fast_path import compiled_predictor

    assert compiled_predictor(model, 8) is None
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    assert model.predict(x, verbose=0).shape == (40, 4, 3)


@pytest.mark.parametrize("new_rate", [0.0, 0.2, 1.0])
def test_dropout_rate_changed_by_a_callback_is_followed(new_rate):
    # A dropout schedule: the compiled loop must train with the rate of each batch, as the
    # Python loop does (the trainer is rebuilt when a rate changes).
    x, labels = _data(n=100)
    results = []
    for jit in (True, False):
        model = _dropout_model(rates=(0.5, 0.5, 0.0))
        model.jit_compile = jit
        dropout = model.layers[0]

        def schedule(batch, logs, dropout=dropout):
            dropout.rate = 0.5 if batch < 4 else new_rate

        cb = pynn.callbacks.LambdaCallback(on_train_batch_begin=schedule)
        pynn.utils.set_random_seed(11)
        model.fit(x, labels, batch_size=10, epochs=2, verbose=0, callbacks=[cb])
        results.append(b"".join(w.tobytes() for w in model.get_weights()))
    assert results[0] == results[1]


def test_dropout_keeps_a_unit_whose_draw_equals_the_rate():
    """Dropout keeps x where u >= rate. Draw 2,015,671 of default_rng(0).random(float32) is
    exactly 0.5: a Dropout(0.5) on one input, batch 1, positioned on that draw, keeps it, and
    the compiled loop must do the same (with u > rate it would drop it, and the first Dense
    would get no gradient)."""
    skip = 2_015_671

    def positioned():
        rng = np.random.default_rng(0)
        rng.random(skip, dtype=np.float32)
        return rng

    assert positioned().random(dtype=np.float32) == np.float32(0.5)  # the premise
    x = np.array([[2.0]], np.float32)
    labels = np.array([1])
    weights = []
    for jit in (True, False):
        pynn.utils.set_random_seed(3)
        model = pynn.Sequential([layers.Input(shape=(1,)), layers.Dropout(0.5, seed=positioned()),
                                 layers.Dense(2, activation="softmax")])
        model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
        model.jit_compile = jit
        before = model.get_weights()[0].copy()
        model.fit(x, labels, batch_size=1, epochs=1, verbose=0, shuffle=False)
        kernel = model.get_weights()[0]
        assert not np.array_equal(kernel, before), "the unit was dropped"
        weights.append(kernel.tobytes())
    assert weights[0] == weights[1]


def test_dropout_reseeded_between_batches_follows_the_new_generator():
    # A callback replaces the global generator before every batch; the compiled loop must
    # draw the next mask from the new one, as the Python loop does.
    x, labels = _data(n=100)

    def make():
        return _dropout_model()

    results = []
    for jit in (True, False):
        model = make()
        model.jit_compile = jit
        cb = pynn.callbacks.LambdaCallback(
            on_train_batch_begin=lambda b, logs: pynn.utils.set_random_seed(100 + b))
        model.fit(x, labels, batch_size=10, epochs=1, verbose=0, callbacks=[cb])
        results.append(b"".join(w.tobytes() for w in model.get_weights()))
    assert results[0] == results[1]


def test_trainer_with_dropout_needs_its_generators():
    x, labels = _data(n=64)
    model = _dropout_model()
    xs, ys = model._prepare_x(x), model._prepare_y(labels, len(x))
    fast = FastFit.prepare(model, xs, ys, 32)
    order = np.arange(len(x), dtype=np.int64)
    with pytest.raises(ValueError, match="generator"):
        fast.trainer.run(xs, ys, order, 0, 1, np.full(1, 1e-3), 0)
    with pytest.raises(TypeError, match="Generator"):
        fast.trainer.run(xs, ys, order, 0, 1, np.full(1, 1e-3), 0, [None, 1, None])


def test_predict_of_a_dropout_model_is_compiled_and_ignores_dropout():
    from pynn.models.fast_path import compiled_predictor

    x, _ = _data(n=50)
    model = _dropout_model()
    assert compiled_predictor(model, 32) is not None
    fast = model.predict(x, verbose=0)
    model.jit_compile = False
    slow = model.predict(x, verbose=0)
    np.testing.assert_allclose(fast, slow, rtol=1e-6, atol=1e-7)


def test_batch_callbacks_see_every_batch():
    x, labels = _data(n=100)
    seen = []
    model = _model("sparse_categorical_crossentropy", "adam")
    cb = pynn.callbacks.LambdaCallback(on_train_batch_end=lambda b, logs: seen.append(b))
    model.fit(x, labels, batch_size=10, epochs=2, verbose=0, callbacks=[cb])
    assert seen == list(range(10)) * 2


THREAD_COUNT_MODELS = {
    "plain": lambda: [layers.Dense(256, activation="relu"), layers.Dense(128, activation="tanh"),
                      layers.Dense(4, activation="softmax")],
    "dropout": lambda: [layers.Dropout(0.2), layers.Dense(256, activation="relu"),
                        layers.Dropout(0.5), layers.Dense(128, activation="relu"),
                        layers.Dropout(0.5), layers.Dense(4, activation="softmax")],
}


@pytest.mark.parametrize("stack", sorted(THREAD_COUNT_MODELS))
def test_same_bits_for_any_thread_count(stack):
    x, labels = _data(n=2048, seed=5)
    x = np.repeat(x, 20, axis=1)[:, :20]  # keep 20 features
    weights = []
    for threads in (1, 2, 3):
        cnn_core.set_num_threads(threads)
        pynn.utils.set_random_seed(0)
        model = pynn.Sequential([layers.Input(shape=(20,))] + THREAD_COUNT_MODELS[stack]())
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        model.fit(x, labels, batch_size=256, epochs=2, verbose=0)
        weights.append(b"".join(w.tobytes() for w in model.get_weights()))
    assert weights[0] == weights[1] == weights[2]


def _rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc")
def test_no_allocation_over_10000_steps():
    x, labels = _data(n=320)
    model = _model("sparse_categorical_crossentropy", "adam", hidden=(64,))
    model.fit(x, labels, batch_size=32, epochs=1, verbose=0)  # warm: workspaces sized once
    xs, ys = model._prepare_x(x), model._prepare_y(labels, len(x))
    fast = FastFit.prepare(model, xs, ys, 32)
    order = np.arange(len(x), dtype=np.int64)
    lrs = np.full(10, 1e-3)
    fast.trainer.run(xs, ys, order, 0, 10, lrs, 1)
    tracemalloc.start()
    rss_before = _rss_bytes()
    for i in range(1000):  # 1000 calls x 10 steps = 10,000 training steps
        fast.trainer.run(xs, ys, order, 0, 10, lrs, 1 + 10 * i)
    current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss_growth = _rss_bytes() - rss_before
    assert peak < 64 * 1024, f"{peak} bytes traced while training"
    assert rss_growth < 1024 * 1024, f"RSS grew by {rss_growth} bytes over 10,000 steps"


MALLOC_COUNT = pathlib.Path(__file__).parent / "malloc_count"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="counts glibc's allocator")
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("loss, optimizer, dropout", [
    ("sparse_categorical_crossentropy", "adam", 0.0),
    ("mse", {"class_name": "SGD", "config": {"global_clipnorm": 1.0}}, 0.0),
    ("sparse_categorical_crossentropy", "adam", 0.3)])
def test_no_c_allocation_per_step(c_toolchain, threads, loss, optimizer, dropout):
    # tracemalloc (above) sees Python's allocations only: a C malloc per step would pass it.
    # Under a shim that counts calls to the C allocator, one trainer call of 1010 steps must
    # allocate no more than one of 10 steps.
    shim = c_toolchain.shared_library([MALLOC_COUNT / "count_malloc.c"], "count_malloc.so",
                                      ["-O2"])
    env = dict(os.environ, LD_PRELOAD=str(shim))
    run = subprocess.run([sys.executable, str(MALLOC_COUNT / "train_steps.py"), str(shim),
                          str(threads), loss, json.dumps(optimizer), str(dropout)],
                         capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stderr
    seen, short, long = map(int, run.stdout.split())
    assert seen >= 1, "the shim counted no allocation: it did not interpose malloc"
    assert long - short < 10, f"{short} C allocations in 10 steps, {long} in 1010"


@pytest.mark.parametrize("out_activation", ["softmax", "sigmoid", "linear", "tanh"])
@pytest.mark.parametrize("n, batch_size", [(1, 32), (7, 32), (100, 32), (100, 7)])
def test_compiled_predict_equals_python_predict(out_activation, n, batch_size):
    x, _ = _data(n=n)
    model = _model("mse", "adam", out_activation=out_activation, metrics=())
    from pynn.models.fast_path import compiled_predictor

    assert compiled_predictor(model, batch_size) is not None
    fast = model.predict(x, batch_size=batch_size, verbose=0)
    model.jit_compile = False
    slow = model.predict(x, batch_size=batch_size, verbose=0)
    assert fast.shape == slow.shape == (n, 4)
    np.testing.assert_allclose(fast, slow, rtol=1e-6, atol=1e-7)
    # One sample alone gives the same bits as inside a batch.
    model.jit_compile = True
    assert model.predict(x[:1], verbose=0).tobytes() == fast[:1].tobytes()


def _predict_model(first_units, use_bias=True, activation="relu"):
    pynn.utils.set_random_seed(5)
    model = pynn.Sequential([layers.Input(shape=(20,)),
                             layers.Dense(first_units, activation=activation, use_bias=use_bias),
                             layers.Dense(4, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    return model


# first_units: 16 takes the tiled GEMM, 3 the narrow-C path (C^T = B^T A^T); n = 1 the GEMV.
@pytest.mark.parametrize("first_units, use_bias, activation",
                         [(16, True, "relu"), (3, True, "relu"), (16, False, "linear")])
@pytest.mark.parametrize("n, row", [(1, 0), (700, 0), (700, 699), (1300, 640)])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_compiled_predict_refuses_non_finite_x_it_does_not_scan(first_units, use_bias,
                                                                activation, n, row, bad):
    """The compiled predict proves x finite from the first layer's pre-activations instead of a
    pass over x: a NaN or inf anywhere, in any batch, still raises. ReLU would hide a NaN
    (max(NaN, 0) is 0), and a zero weight column would not (NaN * 0 is NaN): both are here."""
    from pynn.models.fast_path import compiled_predictor

    model = _predict_model(first_units, use_bias, activation)
    kernel = model.layers[0].kernel.value
    kernel[:, 0] = 0.0  # column 0, the one the check reads, multiplies x by zeros
    x, _ = _data(n=n)
    x[row, 7] = bad
    assert compiled_predictor(model, 512) is not None
    with pytest.raises(ValueError, match=r"x contains non-finite values \((NaN|inf)\)"):
        model.predict(x, verbose=0)
    model.jit_compile = False
    with pytest.raises(ValueError, match="non-finite"):
        model.predict(x, verbose=0)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("features, units", [(300, 64), (784, 128)])
def test_compiled_predict_refuses_non_finite_x_with_several_k_blocks_and_threads(
        restore_threads, features, units, threads):
    """Inputs of 300 and 784 features span two and four K blocks, and layers this wide take
    the threaded GEMM paths: the flag must come from the last block's epilogue, on any thread."""
    cnn_core.set_num_threads(threads)
    pynn.utils.set_random_seed(6)
    model = pynn.Sequential([layers.Input(shape=(features,)),
                             layers.Dense(units, activation="relu"),
                             layers.Dense(10, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    x = np.random.default_rng(1).standard_normal((1100, features)).astype(np.float32)
    clean = model.predict(x, verbose=0)
    for row, col in ((1099, features - 1), (0, 0), (600, features // 2)):
        bad = x.copy()
        bad[row, col] = np.nan
        with pytest.raises(ValueError, match="non-finite"):
            model.predict(bad, verbose=0)
    np.testing.assert_array_equal(model.predict(x, verbose=0), clean)


def test_compiled_predict_of_finite_x_that_overflows_matches_the_python_loop():
    """Finite x whose first layer overflows to inf is valid input: the predictor's check flags
    it, x is found finite, and the outputs are the per-layer loop's (NaN where it overflowed)."""
    model = _predict_model(16, activation="linear")
    x, _ = _data(n=1200)
    x[900] = 3e38
    fast = model.predict(x, verbose=0)
    model.jit_compile = False
    slow = model.predict(x, verbose=0)
    assert not np.isfinite(fast[900]).any()
    np.testing.assert_array_equal(np.isfinite(fast), np.isfinite(slow))
    finite = np.isfinite(slow)
    np.testing.assert_allclose(fast[finite], slow[finite], rtol=1e-6, atol=1e-7)


def test_predictor_reports_a_non_finite_first_layer_and_stops():
    from pynn.models.fast_path import compiled_predictor

    model = _predict_model(16)
    x, _ = _data(n=40)
    predictor = compiled_predictor(model, 16)
    clean = np.zeros((40, 4), np.float32)
    assert predictor.predict(x, clean) is True
    x[20, 3] = np.nan
    out = np.full((40, 4), -1, np.float32)
    assert predictor.predict(x, out) is False
    assert (out[16:] == -1).all(), "it went on past the batch holding the NaN"
    # Unchecked, the NaN row comes out as a plausible distribution: ReLU zeroed it.
    assert predictor.predict(x, out, prove_finite=False) is True
    np.testing.assert_array_equal(np.delete(out, 20, axis=0), np.delete(clean, 20, axis=0))
    assert np.isfinite(out[20]).all()
