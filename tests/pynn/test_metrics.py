"""Metrics: Keras' documented examples, exact streaming counts, 'accuracy' resolution."""
import numpy as np
import pytest

from pynn import losses, metrics


def test_accuracy_keras_example():
    m = metrics.Accuracy()
    m.update_state([[1], [2], [3], [4]], [[0], [2], [3], [4]])
    assert m.result() == pytest.approx(0.75)
    m.reset_state()
    m.update_state([[1], [2], [3], [4]], [[0], [2], [3], [4]], sample_weight=[1, 1, 0, 0])
    assert m.result() == pytest.approx(0.5)
    assert m.name == "accuracy" and m._direction == "up"


def test_binary_accuracy_keras_example():
    m = metrics.BinaryAccuracy()
    m.update_state([[1], [1], [0], [0]], [[0.98], [1], [0], [0.6]])
    assert m.result() == pytest.approx(0.75)
    m.reset_state()
    m.update_state([[1], [1], [0], [0]], [[0.98], [1], [0], [0.6]], sample_weight=[1, 0, 0, 1])
    assert m.result() == pytest.approx(0.5)
    # threshold is strict (> threshold), as in Keras
    m = metrics.BinaryAccuracy(threshold=0.6)
    m.update_state([[1], [0]], [[0.6], [0.6]])
    assert m.result() == pytest.approx(0.5)
    # (N,) targets with (N, 1) predictions
    m = metrics.BinaryAccuracy()
    m.update_state(np.array([1, 0, 1]), np.array([[0.9], [0.2], [0.1]]))
    assert m.result() == pytest.approx(2 / 3)


def test_binary_accuracy_multilabel_mean_over_last_axis():
    m = metrics.BinaryAccuracy()
    y_true = np.array([[1, 0, 1, 1], [0, 0, 1, 0]])
    y_pred = np.array([[0.9, 0.1, 0.2, 0.8], [0.1, 0.7, 0.9, 0.3]])
    m.update_state(y_true, y_pred)
    assert m.result() == pytest.approx(6 / 8)
    np.testing.assert_allclose(metrics.binary_accuracy(y_true, y_pred), [0.75, 0.75])


def test_categorical_accuracy_keras_example():
    m = metrics.CategoricalAccuracy()
    y_true = [[0, 0, 1], [0, 1, 0]]
    y_pred = [[0.1, 0.9, 0.8], [0.05, 0.95, 0]]
    m.update_state(y_true, y_pred)
    assert m.result() == pytest.approx(0.5)
    m.reset_state()
    m.update_state(y_true, y_pred, sample_weight=[0.7, 0.3])
    assert m.result() == pytest.approx(0.3)


def test_sparse_categorical_accuracy_keras_example():
    m = metrics.SparseCategoricalAccuracy()
    m.update_state([[2], [1]], [[0.1, 0.6, 0.3], [0.05, 0.95, 0]])
    assert m.result() == pytest.approx(0.5)
    m.reset_state()
    m.update_state([[2], [1]], [[0.1, 0.6, 0.3], [0.05, 0.95, 0]], sample_weight=[0.7, 0.3])
    assert m.result() == pytest.approx(0.3)
    m.reset_state()
    m.update_state(np.array([2.0, 1.0]), np.array([[0.1, 0.6, 0.3], [0.05, 0.95, 0]]))
    assert m.result() == pytest.approx(0.5)


def test_top_k_keras_examples():
    m = metrics.TopKCategoricalAccuracy(k=1)
    m.update_state([[0, 0, 1], [0, 1, 0]], [[0.1, 0.9, 0.8], [0.05, 0.95, 0]])
    assert m.result() == pytest.approx(0.5)
    m = metrics.SparseTopKCategoricalAccuracy(k=1)
    m.update_state([2, 1], [[0.1, 0.9, 0.8], [0.05, 0.95, 0]])
    assert m.result() == pytest.approx(0.5)
    m = metrics.SparseTopKCategoricalAccuracy(k=2)
    m.update_state([2, 1], [[0.1, 0.9, 0.8], [0.05, 0.95, 0]])
    assert m.result() == pytest.approx(1.0)
    assert metrics.TopKCategoricalAccuracy().k == 5
    assert metrics.SparseTopKCategoricalAccuracy().name == "sparse_top_k_categorical_accuracy"
    m = metrics.SparseTopKCategoricalAccuracy(k=2, from_sorted_ids=True)
    m.update_state([2, 1, 0], [[1, 2, 0], [0, 2, 1], [1, 2, 0]])
    assert m.result() == pytest.approx(1 / 3)


def test_top_k_ties_at_the_boundary_count_as_hits():
    # as TensorFlow's in_top_k: classes tied with the k-th score are in the top k
    hits = metrics.sparse_top_k_categorical_accuracy([2], [[0.5, 0.5, 0.5, 0.1]], k=1)
    assert hits[0] == 1.0
    assert metrics.sparse_top_k_categorical_accuracy([3], [[0.5, 0.5, 0.5, 0.1]], k=3)[0] == 0.0


def test_mse_mae_metrics_keras_examples():
    m = metrics.MeanSquaredError()
    m.update_state([[0, 1], [0, 0]], [[1, 1], [0, 0]])
    assert m.result() == pytest.approx(0.25)
    assert m._direction == "down"
    m = metrics.MeanAbsoluteError()
    m.update_state([[0, 1], [0, 0]], [[1, 1], [0, 0]])
    assert m.result() == pytest.approx(0.25)
    m.update_state([[0, 1], [0, 0]], [[1, 1], [0, 0]], sample_weight=[1, 0])
    assert m.result() == pytest.approx((0.5 + 0.0 + 0.5) / 3)


def test_mean_metric():
    m = metrics.Mean()
    m.update_state([1, 3, 5, 7])
    assert m.result() == pytest.approx(4.0)
    m.reset_state()
    m.update_state([1, 3, 5, 7], sample_weight=[1, 1, 0, 0])
    assert m.result() == pytest.approx(2.0)
    assert metrics.Mean().result() == 0.0


def test_streaming_counts_are_exact_and_batch_independent():
    rng = np.random.default_rng(0)
    probs = rng.random((1000, 7))
    labels = rng.integers(0, 7, 1000)
    whole = metrics.SparseCategoricalAccuracy()
    whole.update_state(labels, probs)
    split = metrics.SparseCategoricalAccuracy()
    for start in range(0, 1000, 64):
        split.update_state(labels[start:start + 64], probs[start:start + 64])
    correct = int(np.sum(np.argmax(probs, -1) == labels))
    assert whole.result() == correct / 1000
    assert split.result() == correct / 1000      # bit for bit, whatever the batching


def test_calling_a_metric_updates_and_returns_result():
    m = metrics.CategoricalAccuracy()
    assert m([[0, 1]], [[0.2, 0.8]]) == pytest.approx(1.0)
    assert m([[0, 1]], [[0.9, 0.1]]) == pytest.approx(0.5)


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="shape"):
        metrics.CategoricalAccuracy().update_state(np.zeros((3, 4)), np.zeros((3, 5)))
    with pytest.raises(ValueError, match="shape"):
        metrics.SparseCategoricalAccuracy().update_state(np.zeros(4), np.zeros((3, 5)))


# --- get() and 'accuracy' resolution ------------------------------------------------------------
@pytest.mark.parametrize("loss, cls", [
    ("sparse_categorical_crossentropy", metrics.SparseCategoricalAccuracy),
    ("categorical_crossentropy", metrics.CategoricalAccuracy),
    ("binary_crossentropy", metrics.BinaryAccuracy),
    ("mse", metrics.Accuracy),
    ("mean_absolute_error", metrics.Accuracy),
    (losses.SparseCategoricalCrossentropy(from_logits=True), metrics.SparseCategoricalAccuracy),
    (losses.CategoricalCrossentropy(), metrics.CategoricalAccuracy),
    (losses.BinaryCrossentropy(from_logits=True), metrics.BinaryAccuracy),
    (losses.categorical_crossentropy, metrics.CategoricalAccuracy),
    (None, metrics.Accuracy),
])
@pytest.mark.parametrize("name", ["accuracy", "acc"])
def test_accuracy_resolved_from_the_loss(loss, cls, name):
    m = metrics.get(name, loss=loss)
    assert type(m) is cls
    assert m.name == name        # the log key stays what the user wrote


def test_accuracy_resolved_from_shapes_for_unknown_losses():
    def custom(y_true, y_pred):
        return np.zeros(len(y_true))

    assert type(metrics.get("accuracy", loss=custom, y_true_shape=(None,),
                            y_pred_shape=(None, 10))) is metrics.SparseCategoricalAccuracy
    assert type(metrics.get("accuracy", loss=custom, y_true_shape=(None, 10),
                            y_pred_shape=(None, 10))) is metrics.CategoricalAccuracy
    assert type(metrics.get("accuracy", loss=custom, y_pred_shape=(None, 1))) is \
        metrics.BinaryAccuracy


@pytest.mark.parametrize("name, cls", [
    ("mse", metrics.MeanSquaredError), ("mae", metrics.MeanAbsoluteError),
    ("mean_squared_error", metrics.MeanSquaredError),
    ("top_k_categorical_accuracy", metrics.TopKCategoricalAccuracy),
    ("sparse_top_k_categorical_accuracy", metrics.SparseTopKCategoricalAccuracy),
    ("categorical_accuracy", metrics.CategoricalAccuracy),
    ("sparse_categorical_accuracy", metrics.SparseCategoricalAccuracy),
    ("binary_accuracy", metrics.BinaryAccuracy),
    ("BinaryAccuracy", metrics.BinaryAccuracy),
])
def test_get_by_name(name, cls):
    m = metrics.get(name)
    assert type(m) is cls and m.name == name


def test_get_other_identifiers():
    inst = metrics.BinaryAccuracy(threshold=0.3)
    assert metrics.get(inst) is inst
    assert type(metrics.get(metrics.CategoricalAccuracy)) is metrics.CategoricalAccuracy
    assert type(metrics.get(metrics.categorical_accuracy)) is metrics.CategoricalAccuracy
    assert metrics.get(None) is None

    def zero_one(y_true, y_pred):
        return (np.asarray(y_true) != np.asarray(y_pred)).astype(float)

    wrapped = metrics.get(zero_one)
    assert wrapped.name == "zero_one"
    wrapped.update_state([1, 2, 3, 4], [1, 0, 3, 0])
    assert wrapped.result() == pytest.approx(0.5)
    with pytest.raises(ValueError, match="unknown metric 'f1_scoreish'"):
        metrics.get("f1_scoreish")


@pytest.mark.parametrize("metric", [
    metrics.BinaryAccuracy(name="ba", threshold=0.7),
    metrics.TopKCategoricalAccuracy(k=3),
    metrics.SparseTopKCategoricalAccuracy(k=2),
    metrics.MeanSquaredError(name="my_mse"),
    metrics.Accuracy(),
    metrics.Mean(name="m"),
])
def test_config_round_trip(metric):
    again = type(metric).from_config(metric.get_config())
    assert again.get_config() == metric.get_config()
    assert metrics.deserialize(metrics.serialize(metric)).get_config() == metric.get_config()
