"""model.save / load_model / save_weights / load_weights: round trips, optimizer state, atomic
writes, and refusal of damaged files and pickles."""
import io
import json
import os
import pickle
import zipfile

import numpy as np
import pytest

import pynn
from pynn import layers
from pynn.models import load_model
from pynn.utils import set_random_seed

REQUIRED_KERNELS = ("dense_forward", "dense_backward", "activation_forward",
                    "activation_backward", "softmax_cross_entropy_sparse", "mean_squared_error",
                    "adam_update", "sgd_update", "rmsprop_update", "sum_of_squares")


def _backend_for_tests():
    name = os.environ.get("PYNN_BACKEND")
    if name:
        return name
    import cnn_core

    return "cnn_core" if all(hasattr(cnn_core, k) for k in REQUIRED_KERNELS) else "numpy"


@pytest.fixture(autouse=True)
def _backend():
    pynn.set_backend(_backend_for_tests())
    yield


def _data(n=64, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 4)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] * x[:, 2] > 0).astype(np.int64)
    return x, y


def _trained_model(optimizer="adam"):
    set_random_seed(0)
    model = pynn.Sequential([
        layers.Dense(8, activation="relu", input_shape=(4,), kernel_regularizer="l2"),
        layers.Dropout(0.1),
        layers.Dense(2, activation="softmax"),
    ])
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    x, y = _data()
    model.fit(x, y, batch_size=16, epochs=2, verbose=0)
    return model


def test_save_load_round_trip_identical_predictions_and_compile(tmp_path):
    model = _trained_model()
    path = tmp_path / "model.keras"
    model.save(path)
    assert zipfile.is_zipfile(path)
    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
        assert {"config.json", "weights.npz", "optimizer.npz"} <= names
        document = json.loads(archive.read("config.json"))
    assert document["class_name"] == "Sequential"
    assert document["compile_config"]["loss"] == "sparse_categorical_crossentropy"
    loaded = load_model(path)
    x, _ = _data(seed=1)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    assert loaded.get_config() == model.get_config()
    assert loaded.compiled and type(loaded.optimizer) is type(model.optimizer)
    assert loaded.metrics_names == ["loss", "accuracy"]
    assert not os.listdir(tmp_path) == [] and all(not n.endswith(".tmp")
                                                  for n in os.listdir(tmp_path))


def test_optimizer_state_restored_so_training_continues_identically(tmp_path):
    model = _trained_model()
    path = tmp_path / "ckpt.pynn"
    model.save(path)
    loaded = load_model(path)
    assert loaded.optimizer.iterations == model.optimizer.iterations
    original_state = model.optimizer.get_state()
    loaded_state = loaded.optimizer.get_state()
    assert set(original_state) == set(loaded_state)
    for key in original_state:
        np.testing.assert_array_equal(original_state[key], loaded_state[key])
    x, y = _data(seed=2)
    set_random_seed(5)
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    set_random_seed(5)
    loaded.fit(x, y, batch_size=16, epochs=1, verbose=0)
    for a, b in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_functional_and_uncompiled_models_round_trip(tmp_path):
    inp = layers.Input(shape=(4,))
    out = layers.Dense(3, activation="tanh")(inp)
    model = pynn.Model(inputs=inp, outputs=layers.Dense(1)(out))
    path = tmp_path / "functional.keras"
    model.save(path)
    loaded = load_model(path)
    assert not loaded.compiled
    x, _ = _data()
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


def test_optimizer_config_survives(tmp_path):
    model = _trained_model(optimizer=pynn.optimizers.SGD(learning_rate=0.05, momentum=0.9))
    model.save(tmp_path / "m.keras")
    loaded = load_model(tmp_path / "m.keras")
    assert loaded.optimizer.get_config() == model.optimizer.get_config()


def test_save_overwrites_atomically_and_respects_overwrite_false(tmp_path):
    model = _trained_model()
    path = tmp_path / "m.keras"
    path.write_bytes(b"old content")
    model.save(path)
    load_model(path)
    with pytest.raises(FileExistsError):
        model.save(path, overwrite=False)
    assert sorted(os.listdir(tmp_path)) == ["m.keras"]


def test_failed_save_leaves_old_file_and_no_temp(tmp_path, monkeypatch):
    model = _trained_model()
    path = tmp_path / "m.keras"
    model.save(path)
    good = path.read_bytes()

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        model.save(path)
    monkeypatch.undo()
    assert path.read_bytes() == good
    assert os.listdir(tmp_path) == ["m.keras"]


@pytest.mark.parametrize("cut", [0.1, 0.5, 0.9])
def test_truncated_file_raises_value_error_naming_it(tmp_path, cut):
    model = _trained_model()
    path = tmp_path / "m.keras"
    model.save(path)
    data = path.read_bytes()
    broken = tmp_path / "broken.keras"
    broken.write_bytes(data[: int(len(data) * cut)])
    with pytest.raises(ValueError, match="broken.keras"):
        load_model(broken)


def test_not_a_pynn_file(tmp_path):
    text = tmp_path / "notes.keras"
    text.write_text("hello")
    with pytest.raises(ValueError, match="notes.keras"):
        load_model(text)
    other_zip = tmp_path / "other.keras"
    with zipfile.ZipFile(other_zip, "w") as archive:
        archive.writestr("config.json", json.dumps({"something": "else"}))
        archive.writestr("weights.npz", b"")
    with pytest.raises(ValueError, match="other.keras"):
        load_model(other_zip)
    with pytest.raises(ValueError, match="File not found"):
        load_model(tmp_path / "missing.keras")


def test_corrupted_member_detected(tmp_path):
    model = _trained_model()
    path = tmp_path / "m.keras"
    model.save(path)
    with zipfile.ZipFile(path) as archive:
        entries = {n: archive.read(n) for n in archive.namelist()}
    entries["config.json"] = entries["config.json"][:-20]
    damaged = tmp_path / "damaged.keras"
    with zipfile.ZipFile(damaged, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    with pytest.raises(ValueError, match="damaged.keras"):
        load_model(damaged)


class _Boom:
    """Unpickling this would run code (records the side effect in a module global)."""

    def __reduce__(self):
        return (exec, ("import builtins; builtins._pynn_unpickled = True",))


def test_pickle_inside_is_never_unpickled(tmp_path):
    model = _trained_model()
    path = tmp_path / "m.keras"
    model.save(path)
    with zipfile.ZipFile(path) as archive:
        entries = {n: archive.read(n) for n in archive.namelist()}
    # Replace the weights with an object array (np.save pickles it).
    buffer = io.BytesIO()
    np.savez(buffer, **{"0000:dense/kernel": np.array([_Boom()], dtype=object)})
    entries["weights.npz"] = buffer.getvalue()
    evil = tmp_path / "evil.keras"
    with zipfile.ZipFile(evil, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
        archive.writestr("payload.pkl", pickle.dumps(_Boom()))
    import builtins

    with pytest.raises(ValueError, match="evil.keras.*pickle"):
        load_model(evil)
    with pytest.raises(ValueError, match="evil.keras"):
        model.load_weights(evil)
    assert not getattr(builtins, "_pynn_unpickled", False)


def test_save_weights_load_weights(tmp_path):
    model = _trained_model()
    path = tmp_path / "model.weights.npz"
    model.save_weights(path)
    assert sorted(os.listdir(tmp_path)) == ["model.weights.npz"]
    other = _trained_model(optimizer="sgd")
    other.set_weights([np.zeros_like(w) for w in other.get_weights()])
    other.load_weights(path)
    for a, b in zip(model.get_weights(), other.get_weights()):
        np.testing.assert_array_equal(a, b)
    # a whole-model file works for load_weights too
    model.save(tmp_path / "full.keras")
    other.set_weights([np.zeros_like(w) for w in other.get_weights()])
    other.load_weights(tmp_path / "full.keras")
    for a, b in zip(model.get_weights(), other.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_load_weights_shape_mismatch(tmp_path):
    model = _trained_model()
    model.save_weights(tmp_path / "w.npz")
    different = pynn.Sequential([layers.Dense(5, input_shape=(4,)), layers.Dense(2)])
    with pytest.raises(ValueError, match=r"w.npz.*shape"):
        different.load_weights(tmp_path / "w.npz")


def test_unbuilt_model_cannot_be_saved(tmp_path):
    with pytest.raises(ValueError, match="not built"):
        pynn.Sequential([layers.Dense(2)]).save(tmp_path / "x.keras")
