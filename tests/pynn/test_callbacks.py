"""Callbacks against a tiny fake model, and the Keras-like progress output."""
import csv
import io
import math
import os

import numpy as np
import pytest

from pynn import callbacks
from pynn.utils import progbar as progbar_module
from pynn.utils.progbar import Progbar


class FakeOptimizer:
    def __init__(self, learning_rate=0.1):
        self.learning_rate = learning_rate


class FakeModel:
    """What callbacks touch: stop_training, weights, optimizer.learning_rate, save."""

    def __init__(self):
        self.stop_training = False
        self.weights = [np.zeros(2)]
        self.optimizer = FakeOptimizer()
        self.saved = []

    def get_weights(self):
        return [w.copy() for w in self.weights]

    def set_weights(self, weights):
        self.weights = [np.array(w) for w in weights]

    def save(self, filepath, overwrite=True):
        self.saved.append(("model", filepath))
        with open(filepath, "w") as f:
            f.write("model")

    def save_weights(self, filepath, overwrite=True):
        self.saved.append(("weights", filepath))
        with open(filepath, "w") as f:
            f.write("weights")


def simulate(cbs, model, epoch_logs, steps=3, weights_per_epoch=True):
    """Drive ``cbs`` like fit would; epoch e sets the weights to [e, e] before its end hook."""
    cb_list = callbacks.CallbackList(cbs, model=model, verbose=0, epochs=len(epoch_logs),
                                     steps=steps)
    cb_list.on_train_begin()
    epochs_run = 0
    for epoch, logs in enumerate(epoch_logs):
        cb_list.on_epoch_begin(epoch)
        for batch in range(steps):
            cb_list.on_train_batch_begin(batch)
            cb_list.on_train_batch_end(batch, {"loss": logs.get("loss", 1.0)})
        if weights_per_epoch:
            model.weights = [np.full(2, float(epoch))]
        cb_list.on_epoch_end(epoch, dict(logs))
        epochs_run += 1
        if model.stop_training:
            break
    cb_list.on_train_end()
    return epochs_run


# --- CallbackList and History ------------------------------------------------------------------
def test_callback_list_adds_history_and_progbar_after_user_callbacks():
    model = FakeModel()
    user = callbacks.Callback()
    cb_list = callbacks.CallbackList([user], add_history=True, add_progbar=True, model=model,
                                     verbose=0, epochs=2, steps=5)
    kinds = [type(cb) for cb in cb_list.callbacks]
    assert kinds == [callbacks.Callback, callbacks.History, callbacks.ProgbarLogger]
    assert all(cb.model is model for cb in cb_list.callbacks)
    assert user.params == {"verbose": 0, "epochs": 2, "steps": 5}
    assert model.history is cb_list.callbacks[1]
    # an existing History is reused, not duplicated
    hist = callbacks.History()
    assert sum(isinstance(cb, callbacks.History) for cb in callbacks.CallbackList(
        [hist], add_history=True).callbacks) == 1


def test_history_records_epoch_logs():
    model = FakeModel()
    hist = callbacks.History()
    simulate([hist], model, [{"loss": 1.0, "val_loss": 2.0}, {"loss": 0.5, "val_loss": 1.5}])
    assert hist.history == {"loss": [1.0, 0.5], "val_loss": [2.0, 1.5]}
    assert hist.epoch == [0, 1]
    assert model.history is hist


def test_batch_aliases_are_called():
    seen = []

    class Counter(callbacks.Callback):
        def on_batch_end(self, batch, logs=None):
            seen.append(batch)

    simulate([Counter()], FakeModel(), [{"loss": 1.0}], steps=4)
    assert seen == [0, 1, 2, 3]


# --- EarlyStopping ------------------------------------------------------------------------------
def val_losses(*values):
    return [{"loss": 1.0, "val_loss": v} for v in values]


def test_early_stopping_patience():
    model = FakeModel()
    es = callbacks.EarlyStopping(monitor="val_loss", patience=2)
    ran = simulate([es], model, val_losses(1.0, 0.8, 0.9, 0.85, 0.7, 0.6))
    # best at epoch 1; epochs 2 and 3 do not improve -> stop at epoch 3
    assert ran == 4 and es.stopped_epoch == 3 and model.stop_training
    assert es.best == 0.8 and es.best_epoch == 1


def test_early_stopping_patience_zero_and_min_delta():
    model = FakeModel()
    es = callbacks.EarlyStopping(monitor="val_loss", min_delta=0.1, patience=0)
    ran = simulate([es], model, val_losses(1.0, 0.95, 0.5))
    assert ran == 2      # 0.95 is not better than 1.0 by 0.1


def test_early_stopping_restore_best_weights(capsys):
    model = FakeModel()
    es = callbacks.EarlyStopping(patience=2, restore_best_weights=True, verbose=1)
    simulate([es], model, val_losses(1.0, 0.5, 0.7, 0.9, 0.1))
    np.testing.assert_array_equal(model.weights[0], [1.0, 1.0])   # weights of epoch 1
    out = capsys.readouterr().out
    assert "Epoch 4: early stopping" in out
    assert "Restoring model weights from the end of the best epoch: 2." in out


def test_early_stopping_mode_max_for_accuracy_and_baseline():
    model = FakeModel()
    es = callbacks.EarlyStopping(monitor="val_accuracy", patience=1)   # auto -> max
    ran = simulate([es], model, [{"val_accuracy": a} for a in (0.5, 0.6, 0.55, 0.58, 0.9)])
    assert ran == 3 and es.best == 0.6    # patience=1: the first epoch without gain stops
    model = FakeModel()
    # the first epoch counts towards patience until the baseline is beaten (Keras)
    es = callbacks.EarlyStopping(monitor="val_loss", patience=2, baseline=0.5)
    assert simulate([es], model, val_losses(0.9, 0.95, 0.97, 0.4)) == 2
    es = callbacks.EarlyStopping(monitor="val_loss", patience=2)
    assert simulate([es], FakeModel(), val_losses(0.9, 0.95, 0.97, 0.4)) == 3
    with pytest.raises(ValueError, match="mode='max'"):
        simulate([callbacks.EarlyStopping(monitor="mystery")], FakeModel(),
                 [{"mystery": 1.0}])


def test_early_stopping_start_from_epoch():
    model = FakeModel()
    es = callbacks.EarlyStopping(patience=0, start_from_epoch=3)
    ran = simulate([es], model, val_losses(1.0, 2.0, 3.0, 4.0, 5.0, 6.0))
    assert ran == 5


def test_early_stopping_missing_monitor_warns():
    with pytest.warns(UserWarning, match="val_loss"):
        simulate([callbacks.EarlyStopping()], FakeModel(), [{"loss": 1.0}])


# --- ReduceLROnPlateau and LearningRateScheduler ----------------------------------------------
def test_reduce_lr_on_plateau():
    model = FakeModel()
    rl = callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=2, cooldown=1,
                                     min_lr=0.02)
    hist = callbacks.History()
    simulate([rl, hist], model, val_losses(1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0))
    # the rate is logged before the epoch's decision; reduced at the end of epochs 2, 4
    # (the cooldown epoch already counts towards the next wait, as in Keras) and 6, where
    # 0.0125 is floored at min_lr
    assert hist.history["learning_rate"] == pytest.approx([0.1, 0.1, 0.1, 0.05, 0.05, 0.025,
                                                           0.025, 0.02])
    assert model.optimizer.learning_rate == pytest.approx(0.02)
    with pytest.raises(ValueError, match="factor"):
        callbacks.ReduceLROnPlateau(factor=1.5)


def test_learning_rate_scheduler(capsys):
    model = FakeModel()
    hist = callbacks.History()
    sched = callbacks.LearningRateScheduler(lambda epoch, lr: lr * 0.5 if epoch else lr,
                                            verbose=1)
    simulate([sched, hist], model, [{"loss": 1.0}] * 3)
    assert hist.history["learning_rate"] == pytest.approx([0.1, 0.05, 0.025])
    assert "LearningRateScheduler setting learning rate to 0.05" in capsys.readouterr().out
    # the one-argument form
    model = FakeModel()
    simulate([callbacks.LearningRateScheduler(lambda epoch: 0.01 * (epoch + 1))], model,
             [{"loss": 1.0}] * 2)
    assert model.optimizer.learning_rate == pytest.approx(0.02)
    with pytest.raises(ValueError, match="should be a float"):
        simulate([callbacks.LearningRateScheduler(lambda e, lr: "x")], FakeModel(),
                 [{"loss": 1.0}])


# --- TerminateOnNaN, LambdaCallback -----------------------------------------------------------
def test_terminate_on_nan(capsys):
    model = FakeModel()
    ran = simulate([callbacks.TerminateOnNaN()], model, [{"loss": 1.0}, {"loss": math.nan},
                                                         {"loss": 1.0}])
    assert ran == 2 and model.stop_training
    assert "Invalid loss, terminating training" in capsys.readouterr().out
    model = FakeModel()
    simulate([callbacks.TerminateOnNaN()], model, [{"loss": math.inf}])
    assert model.stop_training


def test_lambda_callback():
    events = []
    cb = callbacks.LambdaCallback(
        on_train_begin=lambda logs: events.append("train_begin"),
        on_epoch_end=lambda epoch, logs: events.append(("epoch_end", epoch, logs["loss"])),
        on_batch_end=lambda batch, logs: events.append(("batch", batch)),
        on_train_end=lambda logs: events.append("train_end"),
    )
    simulate([cb], FakeModel(), [{"loss": 0.5}], steps=2)
    assert events == ["train_begin", ("batch", 0), ("batch", 1), ("epoch_end", 0, 0.5),
                      "train_end"]
    with pytest.raises(ValueError, match="unknown hook"):
        callbacks.LambdaCallback(on_everything=print)


# --- CSVLogger ---------------------------------------------------------------------------------
def test_csv_logger(tmp_path):
    path = tmp_path / "log.csv"
    logs = [{"loss": 0.5, "accuracy": 0.8, "val_loss": 0.6, "val_accuracy": 0.7},
            {"loss": 0.25, "accuracy": 0.9, "val_loss": 0.4, "val_accuracy": 0.75}]
    simulate([callbacks.CSVLogger(str(path))], FakeModel(), logs)
    rows = list(csv.reader(open(path)))
    assert rows[0] == ["epoch", "accuracy", "loss", "val_accuracy", "val_loss"]
    assert rows[1] == ["0", "0.8", "0.5", "0.7", "0.6"]
    assert rows[2] == ["1", "0.9", "0.25", "0.75", "0.4"]
    # append: no second header
    simulate([callbacks.CSVLogger(str(path), append=True)], FakeModel(), logs[:1])
    rows = list(csv.reader(open(path)))
    assert len(rows) == 4 and rows[3][0] == "0"


def test_csv_logger_separator_and_missing_val_keys(tmp_path):
    path = tmp_path / "log.tsv"
    simulate([callbacks.CSVLogger(path, separator="\t")], FakeModel(), [{"loss": 1.5}])
    lines = open(path).read().splitlines()
    assert lines == ["epoch\tloss\tval_loss", "0\t1.5\tNA"]


# --- ModelCheckpoint ----------------------------------------------------------------------------
def test_model_checkpoint_filename_formatting(tmp_path):
    model = FakeModel()
    pattern = str(tmp_path / "ckpt" / "model-{epoch:02d}-{val_loss:.2f}.keras")
    simulate([callbacks.ModelCheckpoint(pattern)], model, val_losses(0.91234, 0.5))
    assert [p for _, p in model.saved] == [str(tmp_path / "ckpt" / "model-01-0.91.keras"),
                                           str(tmp_path / "ckpt" / "model-02-0.50.keras")]
    assert all(kind == "model" for kind, _ in model.saved)
    assert os.path.exists(tmp_path / "ckpt" / "model-02-0.50.keras")


def test_model_checkpoint_save_best_only_weights(tmp_path, capsys):
    model = FakeModel()
    path = str(tmp_path / "best.weights.h5")
    cp = callbacks.ModelCheckpoint(path, monitor="val_loss", save_best_only=True,
                                   save_weights_only=True, verbose=1)
    simulate([cp], model, val_losses(1.0, 0.7, 0.8, 0.6))
    assert [(k, e) for (k, _), e in zip(model.saved, range(9))] == [("weights", 0),
                                                                    ("weights", 1),
                                                                    ("weights", 2)]
    assert len(model.saved) == 3        # epochs 1, 2, 4 improved
    assert cp.best == 0.6
    out = capsys.readouterr().out
    assert "val_loss improved from 0.70000 to 0.60000" in out
    assert "val_loss did not improve from 0.70000" in out


def test_model_checkpoint_max_mode_and_bad_placeholder(tmp_path):
    model = FakeModel()
    cp = callbacks.ModelCheckpoint(str(tmp_path / "m.keras"), monitor="val_accuracy",
                                   save_best_only=True)
    simulate([cp], model, [{"val_accuracy": a} for a in (0.5, 0.4, 0.9)])
    assert len(model.saved) == 2
    with pytest.raises(KeyError, match="Failed to format"):
        simulate([callbacks.ModelCheckpoint(str(tmp_path / "{nope}.keras"))], FakeModel(),
                 [{"loss": 1.0}])


def test_model_checkpoint_save_freq_batches(tmp_path):
    model = FakeModel()
    cp = callbacks.ModelCheckpoint(str(tmp_path / "m-{epoch}-{batch}.keras"), save_freq=2)
    simulate([cp], model, [{"loss": 1.0}] * 2, steps=3)
    assert [os.path.basename(p) for _, p in model.saved] == ["m-1-2.keras", "m-2-1.keras",
                                                             "m-2-3.keras"]


# --- progress output ----------------------------------------------------------------------------
def run_progbar_logger(verbose, epochs=2, steps=200, val=True):
    cb_list = callbacks.CallbackList(None, add_history=True, add_progbar=True, model=FakeModel(),
                                     verbose=verbose, epochs=epochs, steps=steps)
    cb_list.on_train_begin()
    for epoch in range(epochs):
        cb_list.on_epoch_begin(epoch)
        for batch in range(steps):
            cb_list.on_train_batch_begin(batch)
            cb_list.on_train_batch_end(batch, {"loss": 0.5, "accuracy": 0.75})
        logs = {"loss": 0.2345, "accuracy": 0.9312}
        if val:
            # validation inside fit is silent
            cb_list.on_test_begin()
            cb_list.on_test_batch_end(0, {"loss": 9.0})
            cb_list.on_test_end({"loss": 0.3})
            logs.update(val_loss=0.3, val_accuracy=0.00005)
        cb_list.on_epoch_end(epoch, logs)
    cb_list.on_train_end()


def test_progbar_logger_verbose_1_not_a_tty(capsys):
    run_progbar_logger(1)
    lines = capsys.readouterr().out.splitlines()
    # no flood: a header and one final line per epoch
    assert len(lines) == 4
    assert lines[0] == "Epoch 1/2" and lines[2] == "Epoch 2/2"
    final = lines[1]
    assert final.startswith("200/200 [" + "=" * 30 + "] - ")
    assert "/step - loss: 0.2345 - accuracy: 0.9312 - val_loss: 0.3000" in final
    assert final.endswith("val_accuracy: 5.0000e-05")


def test_progbar_logger_verbose_2(capsys):
    run_progbar_logger(2, epochs=3, steps=50)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 6
    assert lines[0::2] == ["Epoch 1/3", "Epoch 2/3", "Epoch 3/3"]
    for line in lines[1::2]:
        assert line.startswith("50/50 - ")
        assert "s - " in line and "/step - loss: 0.2345 - accuracy: 0.9312" in line
        assert "val_loss: 0.3000" in line


def test_progbar_logger_single_epoch_has_no_header(capsys):
    run_progbar_logger(1, epochs=1, steps=10, val=False)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and lines[0].startswith("10/10 [")


def test_progbar_logger_verbose_0_is_silent(capsys):
    run_progbar_logger(0)
    assert capsys.readouterr().out == ""


def test_progbar_logger_evaluate_and_predict(capsys):
    cb_list = callbacks.CallbackList(None, add_progbar=True, model=FakeModel(), verbose=1,
                                     epochs=1, steps=4)
    cb_list.on_test_begin()
    for batch in range(4):
        cb_list.on_test_batch_end(batch, {"loss": 0.1})
    cb_list.on_test_end({"loss": 0.125, "accuracy": 0.5})
    cb_list.on_predict_begin()
    for batch in range(4):
        cb_list.on_predict_batch_end(batch, {"outputs": None})
    cb_list.on_predict_end()
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("4/4 [") and lines[0].endswith("loss: 0.1250 - accuracy: 0.5000")
    assert lines[1].startswith("4/4 [") and "loss" not in lines[1]


def test_progbar_unknown_target(capsys):
    cb_list = callbacks.CallbackList(None, add_progbar=True, model=FakeModel(), verbose=1,
                                     epochs=1, steps=None)
    cb_list.on_train_begin()
    cb_list.on_epoch_begin(0)
    for batch in range(7):
        cb_list.on_train_batch_end(batch, {"loss": 1.0})
    cb_list.on_epoch_end(0, {"loss": 1.0})
    cb_list.on_train_end()
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and lines[0].startswith("7/7 [")


def test_progbar_on_a_terminal_redraws_in_place_and_is_rate_limited():
    out = io.StringIO()
    bar = Progbar(1000, file=out, dynamic=True, interval=60.0)
    for step in range(1, 1001):
        bar.update(step, [("loss", 1.0 / step)])
    text = out.getvalue()
    assert text.count("\n") == 1                 # a single line, ended when finished
    # at most the first draw (plus tqdm's initial one), then the final line
    assert text.count("\r") <= 4
    assert text.rstrip("\n").split("\r")[-1].startswith("1000/1000 [" + "=" * 30 + "]")


def test_progbar_on_a_terminal_shows_eta_while_running():
    out = io.StringIO()
    bar = Progbar(10, file=out, dynamic=True, interval=0.0)
    for step in range(1, 6):
        bar.update(step, [("loss", 0.5)])
    assert "5/10 [" in out.getvalue() and "ETA: " in out.getvalue()
    bar.close()


def test_keras_progbar_averages_non_stateful_values(capsys):
    bar = Progbar(4, verbose=2)
    bar.update(1, [("loss", 1.0)])
    bar.update(2, [("loss", 3.0)])
    bar.add(1, [("loss", 2.0)])
    bar.update(4, [("loss", 2.0)], finalize=False)
    bar.update(4, [("metric", 7.0)])
    line = capsys.readouterr().out.strip()
    assert line.startswith("4/4 - ") and "loss: 2.0000" in line and "metric: 7.0000" in line


def test_value_formatting():
    assert progbar_module.format_value(0.23456) == "0.2346"
    assert progbar_module.format_value(0.0001234) == "1.2340e-04"
    assert progbar_module.format_value(0) == "0.0000"
    assert progbar_module.format_value(float("nan")) == "nan"
    assert progbar_module.format_step_time(0.0023) == "2ms/step"
    assert progbar_module.format_step_time(2.5) == "2s/step"
    assert progbar_module.format_step_time(0.0000123) == "12us/step"
