"""Losses: values against independent NumPy formulas and Keras' documented examples,
gradients against finite differences, fused (from logits) == unfused, target validation."""
import numpy as np
import pytest

import cnn_core
import pynn
from pynn import losses

EPS = 1e-7


@pytest.fixture(params=["numpy", "cnn_core"])
def backend(request):
    if request.param == "cnn_core" and not hasattr(cnn_core, "softmax_cross_entropy_sparse"):
        pytest.skip("cnn_core loss kernels are not built yet")
    pynn.set_backend(request.param)
    return request.param


def softmax(z):
    z = np.asarray(z, dtype=np.float64)
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-np.asarray(z, dtype=np.float64)))


def numeric_grad(f, x, h=1e-6):
    """Central differences of the scalar f at x (float64)."""
    x = x.astype(np.float64).copy()
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        old = x[i]
        x[i] = old + h
        up = f(x)
        x[i] = old - h
        down = f(x)
        x[i] = old
        g[i] = (up - down) / (2 * h)
    return g


# --- Keras' documented examples ----------------------------------------------------------------
def test_keras_documented_values(backend):
    y_true = np.array([[0.0, 1.0], [0.0, 0.0]], np.float32)
    y_pred = np.array([[1.0, 1.0], [1.0, 0.0]], np.float32)
    assert losses.MeanSquaredError()(y_true, y_pred) == pytest.approx(0.5)
    assert losses.MeanAbsoluteError()(y_true, y_pred) == pytest.approx(0.5)

    probs = np.array([[0.6, 0.4], [0.4, 0.6]], np.float32)
    assert losses.BinaryCrossentropy()(y_true, probs) == pytest.approx(0.815, abs=1e-3)
    bce_logits = losses.BinaryCrossentropy(from_logits=True)
    assert bce_logits(np.array([0, 1, 0, 0], np.float32),
                      np.array([-18.6, 0.51, 2.94, -12.8], np.float32)) == pytest.approx(
        0.865, abs=1e-3)

    onehot = np.array([[0, 1, 0], [0, 0, 1]], np.float32)
    pred = np.array([[0.05, 0.95, 0], [0.1, 0.8, 0.1]], np.float32)
    assert losses.CategoricalCrossentropy()(onehot, pred) == pytest.approx(1.177, abs=1e-3)
    assert losses.SparseCategoricalCrossentropy()(np.array([1, 2]), pred) == pytest.approx(
        1.177, abs=1e-3)


def test_default_names_and_arguments():
    assert losses.MeanSquaredError().name == "mean_squared_error"
    assert losses.MeanAbsoluteError().name == "mean_absolute_error"
    bce = losses.BinaryCrossentropy()
    assert (bce.name, bce.from_logits, bce.label_smoothing) == ("binary_crossentropy", False, 0.0)
    assert losses.CategoricalCrossentropy().name == "categorical_crossentropy"
    scce = losses.SparseCategoricalCrossentropy()
    assert (scce.name, scce.from_logits, scce.ignore_class) == (
        "sparse_categorical_crossentropy", False, None)
    assert scce.reduction == "sum_over_batch_size"


# --- values and gradients against independent formulas ---------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_mse_mae_values_and_grads(backend, dtype):
    rng = np.random.default_rng(1)
    y_pred = rng.normal(size=(6, 4)).astype(dtype)
    y_true = rng.normal(size=(6, 4)).astype(dtype)
    tol = 1e-6 if dtype == np.float32 else 1e-12
    loss, grad = losses.MeanSquaredError().loss_and_grad(y_true, y_pred)
    assert loss == pytest.approx(np.mean((y_true.astype(np.float64) - y_pred) ** 2), rel=tol)
    np.testing.assert_allclose(grad, 2 * (y_pred - y_true) / y_pred.size, rtol=tol * 10)
    assert grad.dtype == dtype and grad.shape == y_pred.shape

    loss, grad = losses.MeanAbsoluteError().loss_and_grad(y_true, y_pred)
    assert loss == pytest.approx(np.mean(np.abs(y_true.astype(np.float64) - y_pred)), rel=tol)
    np.testing.assert_allclose(grad, np.sign(y_pred - y_true) / y_pred.size)


def test_regression_targets_without_trailing_axis(backend):
    # (N,) targets against an (N, 1) output must not broadcast to (N, N).
    y_pred = np.array([[1.0], [2.0], [3.0]], np.float32)
    y_true = np.array([1.0, 1.0, 1.0], np.float32)
    loss, grad = losses.MeanSquaredError().loss_and_grad(y_true, y_pred)
    assert loss == pytest.approx((0 + 1 + 4) / 3)
    assert grad.shape == (3, 1)
    assert losses.mean_squared_error(y_true, y_pred).shape == (3,)


def test_per_sample_function_forms():
    rng = np.random.default_rng(2)
    y_pred = rng.random((5, 3)).astype(np.float32)
    y_true = rng.random((5, 3)).astype(np.float32)
    np.testing.assert_allclose(losses.mse(y_true, y_pred), np.mean((y_true - y_pred) ** 2, -1),
                               rtol=1e-6)
    np.testing.assert_allclose(losses.mae(y_true, y_pred), np.mean(np.abs(y_true - y_pred), -1),
                               rtol=1e-6)
    t = (y_true > 0.5).astype(np.float32)
    p = np.clip(y_pred, EPS, 1 - EPS)
    np.testing.assert_allclose(losses.binary_crossentropy(t, y_pred),
                               -np.mean(t * np.log(p) + (1 - t) * np.log(1 - p), -1), rtol=1e-5)
    labels = np.array([0, 1, 2, 1, 0])
    q = y_pred / y_pred.sum(-1, keepdims=True)
    expected = -np.log(np.clip(q[np.arange(5), labels], EPS, 1 - EPS))
    np.testing.assert_allclose(losses.sparse_categorical_crossentropy(labels, y_pred), expected,
                               rtol=1e-5)
    np.testing.assert_allclose(losses.categorical_crossentropy(np.eye(3)[labels], y_pred),
                               expected, rtol=1e-5)
    for out in (losses.mse(y_true, y_pred), losses.sparse_categorical_crossentropy(labels, y_pred)):
        assert isinstance(out, np.ndarray) and out.shape == (5,)


def test_binary_crossentropy_probabilities(backend):
    rng = np.random.default_rng(3)
    t = rng.integers(0, 2, size=(8, 3)).astype(np.float64)
    p = rng.uniform(0.01, 0.99, size=(8, 3))
    p[0, 0], p[1, 1] = 0.0, 1.0      # clipped entries
    loss_fn = losses.BinaryCrossentropy()
    pc = np.clip(p, EPS, 1 - EPS)
    expected = -np.mean(t * np.log(pc) + (1 - t) * np.log(1 - pc))
    loss, grad = loss_fn.loss_and_grad(t, p)
    assert loss == pytest.approx(expected, rel=1e-10)
    assert loss_fn(t, p) == pytest.approx(expected, rel=1e-10)
    inside = (p > EPS) & (p < 1 - EPS)
    expected_grad = np.where(inside, (pc - t) / (pc * (1 - pc)), 0) / p.size
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-10)


def test_binary_crossentropy_fused_equals_unfused(backend):
    rng = np.random.default_rng(4)
    z = rng.normal(scale=2.0, size=(10, 2))
    t = rng.integers(0, 2, size=(10, 2)).astype(np.float64)
    loss_fn = losses.BinaryCrossentropy()
    assert loss_fn.fuses_with("sigmoid") and not loss_fn.fuses_with("softmax")
    assert not losses.BinaryCrossentropy(from_logits=True).fuses_with("sigmoid")
    fused_loss, fused_grad = loss_fn.loss_and_grad_from_logits(t, z)
    s = sigmoid(z)
    loss, grad_p = loss_fn.loss_and_grad(t, s)
    assert fused_loss == pytest.approx(loss, rel=1e-9)
    np.testing.assert_allclose(fused_grad, grad_p * s * (1 - s), rtol=1e-7, atol=1e-12)
    # from_logits=True on the same logits is the same computation
    assert losses.BinaryCrossentropy(from_logits=True)(t, z) == pytest.approx(fused_loss)
    np.testing.assert_allclose(fused_grad, (s - t) / z.size, rtol=1e-9)


def test_categorical_crossentropy_probabilities_follow_keras(backend):
    rng = np.random.default_rng(5)
    p = rng.random((6, 4))
    p[0] = [0.0, 0.5, 0.5, 0.0]          # zeros get clipped
    t = np.eye(4)[rng.integers(0, 4, 6)]
    t[0] = [1, 0, 0, 0]
    q = np.clip(p / p.sum(-1, keepdims=True), EPS, 1 - EPS)   # normalise then clip (Keras)
    expected = np.mean(-np.sum(t * np.log(q), -1))
    loss_fn = losses.CategoricalCrossentropy()
    loss, grad = loss_fn.loss_and_grad(t, p)
    assert loss == pytest.approx(expected, rel=1e-12)
    # exact gradient of the same (piecewise smooth) function; row 0 is away from the kinks
    # except where clipped, where the derivative along that entry is taken with the clip flat.
    rows = slice(1, None)
    num = numeric_grad(lambda x: loss_fn(t[rows], x) * 5 / 6, p[rows])
    np.testing.assert_allclose(grad[rows], num, rtol=1e-5, atol=1e-9)


def test_categorical_crossentropy_fused_equals_unfused(backend):
    rng = np.random.default_rng(6)
    z = rng.normal(size=(7, 5))
    t = np.eye(5)[rng.integers(0, 5, 7)]
    loss_fn = losses.CategoricalCrossentropy()
    assert loss_fn.fuses_with("softmax") and not loss_fn.fuses_with("sigmoid")
    fused_loss, fused_grad = loss_fn.loss_and_grad_from_logits(t, z)
    s = softmax(z)
    loss, grad_p = loss_fn.loss_and_grad(t, s)
    assert fused_loss == pytest.approx(loss, rel=1e-9)
    # chain the unfused gradient through the softmax Jacobian
    chained = s * (grad_p - np.sum(grad_p * s, axis=-1, keepdims=True))
    np.testing.assert_allclose(fused_grad, chained, rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(fused_grad, (s - t) / 7, rtol=1e-9, atol=1e-15)
    assert losses.CategoricalCrossentropy(from_logits=True)(t, z) == pytest.approx(fused_loss)


def test_sparse_categorical_crossentropy_fused_equals_unfused(backend):
    rng = np.random.default_rng(7)
    z = rng.normal(size=(9, 4)).astype(np.float32)
    labels = rng.integers(0, 4, 9)
    loss_fn = losses.SparseCategoricalCrossentropy()
    assert loss_fn.fuses_with("softmax")
    fused_loss, fused_grad = loss_fn.loss_and_grad_from_logits(labels, z)
    s = softmax(z)
    expected = np.mean(-np.log(s[np.arange(9), labels]))
    assert fused_loss == pytest.approx(expected, rel=1e-6)
    onehot = np.eye(4)[labels]
    np.testing.assert_allclose(fused_grad, (s - onehot) / 9, atol=1e-7)
    assert fused_grad.dtype == np.float32
    unfused, grad_p = loss_fn.loss_and_grad(labels, s.astype(np.float32))
    assert unfused == pytest.approx(expected, rel=1e-5)
    chained = s * (grad_p - np.sum(grad_p * s, axis=-1, keepdims=True))
    np.testing.assert_allclose(chained, fused_grad, atol=1e-6)
    # from_logits=True, labels with a trailing axis of 1
    logits_loss = losses.SparseCategoricalCrossentropy(from_logits=True)
    assert logits_loss(labels[:, None], z) == pytest.approx(expected, rel=1e-6)
    # same as the categorical loss on one-hot targets
    assert losses.CategoricalCrossentropy(from_logits=True)(onehot.astype(np.float32),
                                                            z) == pytest.approx(expected,
                                                                                rel=1e-6)


def test_sparse_ce_sequence_outputs(backend):
    rng = np.random.default_rng(8)
    z = rng.normal(size=(3, 5, 4))
    labels = rng.integers(0, 4, (3, 5))
    loss, grad = losses.SparseCategoricalCrossentropy(from_logits=True).loss_and_grad(labels, z)
    s = softmax(z)
    expected = np.mean(-np.log(np.take_along_axis(s, labels[..., None], -1)))
    assert loss == pytest.approx(expected)
    assert grad.shape == z.shape


def test_sparse_ce_ignore_class(backend):
    rng = np.random.default_rng(9)
    z = rng.normal(size=(6, 3))
    labels = np.array([0, 2, -1, 1, -1, 2])
    loss_fn = losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=-1)
    loss, grad = loss_fn.loss_and_grad(labels, z)
    keep = labels != -1
    s = softmax(z)
    expected = np.mean(-np.log(s[np.where(keep)[0], labels[keep]]))
    assert loss == pytest.approx(expected)
    assert loss_fn(labels, z) == pytest.approx(expected)
    np.testing.assert_array_equal(grad[~keep], 0)
    np.testing.assert_allclose(grad[keep], (s[keep] - np.eye(3)[labels[keep]]) / keep.sum())
    summed = losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=-1,
                                                  reduction="sum")
    loss, grad = summed.loss_and_grad(labels, z)
    assert loss == pytest.approx(expected * keep.sum()) == summed(labels, z)
    np.testing.assert_allclose(grad[keep], s[keep] - np.eye(3)[labels[keep]])


def test_extreme_logits_stay_finite(backend):
    z = np.array([[1e4, -1e4, 0.0], [-3e4, 3e4, 1.0]], np.float32)
    labels = np.array([1, 0])
    for loss_fn, target in [
        (losses.SparseCategoricalCrossentropy(), labels),
        (losses.CategoricalCrossentropy(), np.eye(3, dtype=np.float32)[labels]),
    ]:
        loss, grad = loss_fn.loss_and_grad_from_logits(target, z)
        assert np.isfinite(loss) and np.all(np.isfinite(grad))
        assert loss == pytest.approx((2e4 + 6e4) / 2, rel=1e-5)
    bce = losses.BinaryCrossentropy(from_logits=True)
    t = np.array([[0.0, 1.0, 1.0], [1.0, 0.0, 0.0]], np.float32)
    loss, grad = bce.loss_and_grad(t, z)
    assert np.isfinite(loss) and np.all(np.isfinite(grad))
    # probabilities of exactly 0 and 1: clipped, finite (Keras caps -log at -log(1e-7))
    p = np.array([[1.0, 0.0]], np.float32)
    loss, grad = losses.BinaryCrossentropy().loss_and_grad(np.array([[0.0, 1.0]], np.float32), p)
    hi = np.float64(np.float32(1 - EPS))   # the clip bound as float32 stores it
    expected = np.mean([-np.log(1 - hi), -np.log(np.float64(np.float32(EPS)))])
    assert loss == pytest.approx(expected, rel=1e-6) and np.all(np.isfinite(grad))
    loss = losses.SparseCategoricalCrossentropy()(np.array([0]), np.array([[0.0, 1.0]]))
    assert loss == pytest.approx(-np.log(EPS))


def test_label_smoothing(backend):
    z = np.array([[2.0, -1.0, 0.5]])
    t = np.array([[0.0, 1.0, 0.0]])
    smoothed = t * 0.8 + 0.2 / 3
    loss = losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.2)(t, z)
    assert loss == pytest.approx(-np.sum(smoothed * np.log(softmax(z))))
    bt = np.array([[0.0, 1.0]])
    bz = np.array([[0.3, -0.7]])
    bs = bt * 0.9 + 0.05
    s = sigmoid(bz)
    loss = losses.BinaryCrossentropy(from_logits=True, label_smoothing=0.1)(bt, bz)
    assert loss == pytest.approx(-np.mean(bs * np.log(s) + (1 - bs) * np.log(1 - s)))


def test_reductions_and_sample_weight(backend):
    y_true = np.array([[0.0], [1.0], [2.0]])
    y_pred = np.array([[1.0], [1.0], [4.0]])
    per_sample = np.array([1.0, 0.0, 4.0])
    assert losses.MeanSquaredError(reduction="sum")(y_true, y_pred) == pytest.approx(5.0)
    np.testing.assert_allclose(losses.MeanSquaredError(reduction=None)(y_true, y_pred),
                               per_sample)
    w = np.array([1.0, 2.0, 0.5])
    assert losses.MeanSquaredError()(y_true, y_pred, sample_weight=w) == pytest.approx(
        np.sum(per_sample * w) / 3)
    loss, grad = losses.MeanSquaredError(reduction="sum").loss_and_grad(y_true, y_pred)
    assert loss == pytest.approx(5.0)
    np.testing.assert_allclose(grad, 2 * (y_pred - y_true))
    with pytest.raises(ValueError):
        losses.MeanSquaredError(reduction="average")


def test_grad_buffer_is_reused(backend):
    z = np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32)
    buf = np.empty_like(z)
    _, g = losses.SparseCategoricalCrossentropy().loss_and_grad_from_logits(
        np.array([0, 1, 2, 0]), z, grad=buf)
    assert g is buf


# --- target validation --------------------------------------------------------------------------
def test_sparse_labels_out_of_range_name_label_and_classes():
    loss_fn = losses.SparseCategoricalCrossentropy()
    with pytest.raises(ValueError, match=r"label 10 .*10 output classes"):
        loss_fn.prepare_targets(np.array([1, 10, 3]), (None, 10))
    with pytest.raises(ValueError, match=r"label -1 "):
        loss_fn.prepare_targets(np.array([1, -1, 3]), (None, 10))
    with pytest.raises(ValueError, match="integer class ids, got 1.5"):
        loss_fn.prepare_targets(np.array([1.0, 1.5]), (None, 3))
    with pytest.raises(ValueError, match="non-finite"):
        loss_fn.prepare_targets(np.array([1.0, np.nan]), (None, 3))
    with pytest.raises(ValueError, match="use categorical_crossentropy"):
        loss_fn.prepare_targets(np.eye(3)[[0, 1]], (None, 3))


def test_sparse_labels_out_of_range_at_loss_time(backend):
    with pytest.raises(ValueError, match="5"):
        losses.SparseCategoricalCrossentropy(from_logits=True).loss_and_grad(
            np.array([0, 5]), np.zeros((2, 3), np.float32))


def test_prepare_targets_converts():
    labels = losses.SparseCategoricalCrossentropy().prepare_targets(
        np.array([[1.0], [2.0], [0.0]]), (None, 3))
    assert labels.dtype == np.int64 and labels.shape == (3,)
    np.testing.assert_array_equal(labels, [1, 2, 0])
    y = losses.BinaryCrossentropy().prepare_targets(np.array([0, 1, 1], np.uint8), (None, 1),
                                                    dtype="float32")
    assert y.dtype == np.float32 and y.shape == (3, 1)
    y = losses.CategoricalCrossentropy().prepare_targets(np.eye(4)[[0, 3]], (None, 4),
                                                         dtype=np.float64)
    assert y.dtype == np.float64 and y.shape == (2, 4)


def test_bad_dense_targets():
    with pytest.raises(ValueError, match=r"do not match the model output shape"):
        losses.CategoricalCrossentropy().prepare_targets(np.zeros((4, 3)), (None, 5))
    with pytest.raises(ValueError, match="sparse_categorical_crossentropy"):
        losses.CategoricalCrossentropy().prepare_targets(np.array([0, 2, 1]), (None, 5))
    with pytest.raises(ValueError, match="non-finite"):
        losses.MeanSquaredError().prepare_targets(np.array([[1.0], [np.inf]]), (None, 1))
    with pytest.raises(ValueError, match="non-finite"):
        losses.BinaryCrossentropy().prepare_targets(np.array([0.0, np.nan]), (None, 1))
    with pytest.raises(ValueError, match="shape"):
        losses.MeanSquaredError().loss_and_grad(np.zeros((3, 2)), np.zeros((3, 4)))


# --- lookup and configuration -------------------------------------------------------------------
@pytest.mark.parametrize("name, cls", [
    ("mse", losses.MeanSquaredError), ("mean_squared_error", losses.MeanSquaredError),
    ("mae", losses.MeanAbsoluteError), ("mean_absolute_error", losses.MeanAbsoluteError),
    ("binary_crossentropy", losses.BinaryCrossentropy),
    ("categorical_crossentropy", losses.CategoricalCrossentropy),
    ("sparse_categorical_crossentropy", losses.SparseCategoricalCrossentropy),
    ("SparseCategoricalCrossentropy", losses.SparseCategoricalCrossentropy),
])
def test_get_by_name(name, cls):
    assert type(losses.get(name)) is cls


def test_get_other_identifiers():
    inst = losses.CategoricalCrossentropy(from_logits=True)
    assert losses.get(inst) is inst
    assert isinstance(losses.get(losses.mse), losses.MeanSquaredError)
    assert isinstance(losses.get(losses.sparse_categorical_crossentropy),
                      losses.SparseCategoricalCrossentropy)
    assert losses.get(None) is None
    custom = losses.get(lambda y_true, y_pred: np.mean(np.abs(y_true - y_pred), -1))
    assert custom(np.zeros((2, 2)), np.ones((2, 2))) == pytest.approx(1.0)
    with pytest.raises(NotImplementedError, match="gradient"):
        custom.loss_and_grad(np.zeros((2, 2)), np.ones((2, 2)))
    with_grad = losses.LossFunctionWrapper(
        lambda t, p: np.mean((p - t) ** 2, -1), grad_fn=lambda t, p: 2 * (p - t) / p.size)
    loss, grad = with_grad.loss_and_grad(np.zeros((2, 2)), np.ones((2, 2)))
    assert loss == pytest.approx(1.0) and np.allclose(grad, 0.5)
    wrapped = losses.LossFunctionWrapper(losses.mean_absolute_error)
    again = losses.LossFunctionWrapper.from_config(wrapped.get_config())
    assert again.fn is losses.mean_absolute_error
    with pytest.raises(ValueError, match="unknown loss 'nope'"):
        losses.get("nope")


@pytest.mark.parametrize("loss", [
    losses.MeanSquaredError(reduction="sum"),
    losses.MeanAbsoluteError(name="l1"),
    losses.BinaryCrossentropy(from_logits=True, label_smoothing=0.1),
    losses.CategoricalCrossentropy(label_smoothing=0.2),
    losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=3),
])
def test_config_round_trip(loss):
    again = type(loss).from_config(loss.get_config())
    assert again.get_config() == loss.get_config()
    restored = losses.deserialize(losses.serialize(loss))
    assert type(restored) is type(loss) and restored.get_config() == loss.get_config()


def test_keras_style_subclass_with_only_call():
    class Huberish(losses.Loss):
        def call(self, y_true, y_pred):
            return np.mean(np.abs(y_pred - y_true), axis=-1)

    loss_fn = Huberish(name="l1")
    assert loss_fn(np.zeros((2, 3)), np.ones((2, 3))) == pytest.approx(1.0)
    with pytest.raises(NotImplementedError, match="gradient"):
        loss_fn.loss_and_grad(np.zeros((2, 3)), np.ones((2, 3)))
