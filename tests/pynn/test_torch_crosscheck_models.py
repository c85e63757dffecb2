"""Cross-check against PyTorch: the same MLP weights in a torch model (nn.Linear.weight =
kernel.T) give the same outputs, loss and parameter gradients for every activation and every
loss, and a few epochs of fit() with SGD match a hand-written torch loop (float32)."""
import os

import numpy as np
import pytest

import pynn
from pynn import layers, losses
from pynn.utils import set_random_seed

torch = pytest.importorskip("torch")
nn = torch.nn

REQUIRED_KERNELS = ("dense_forward", "dense_backward", "activation_forward",
                    "activation_backward", "softmax_cross_entropy_sparse",
                    "softmax_cross_entropy", "mean_squared_error", "mean_absolute_error",
                    "binary_cross_entropy", "binary_cross_entropy_logits", "sgd_update")
RTOL, ATOL = 2e-4, 2e-5
ACTIVATIONS = ["linear", "relu", "leaky_relu", "elu", "sigmoid", "tanh", "softplus", "gelu",
               "softmax"]


def _backend_for_tests():
    name = os.environ.get("PYNN_BACKEND")
    if name:
        return name
    import cnn_core

    return "cnn_core" if all(hasattr(cnn_core, k) for k in REQUIRED_KERNELS) else "numpy"


@pytest.fixture(autouse=True)
def _backend():
    pynn.set_backend(_backend_for_tests())
    torch.manual_seed(0)
    yield


def _torch_activation(name):
    return {
        "linear": nn.Identity(), "relu": nn.ReLU(), "leaky_relu": nn.LeakyReLU(0.2),
        "elu": nn.ELU(1.0), "sigmoid": nn.Sigmoid(), "tanh": nn.Tanh(),
        "softplus": nn.Softplus(), "gelu": nn.GELU(), "softmax": nn.Softmax(dim=-1),
    }[name]


def to_torch(model, drop_final_activation=False):
    """An nn.Sequential with the pynn model's weights (float32).

    drop_final_activation: leave out the last Dense's activation, so the torch model outputs
    the logits that torch's fused losses (CrossEntropyLoss, BCEWithLogitsLoss) expect.
    """
    modules = []
    dense_layers = [l for l in model.layers if isinstance(l, layers.Dense)]
    for layer in model.layers:
        if isinstance(layer, layers.Dense):
            kernel = layer.kernel.value
            linear = nn.Linear(kernel.shape[0], kernel.shape[1], bias=layer.use_bias)
            with torch.no_grad():
                linear.weight.copy_(torch.from_numpy(kernel.T.copy()))
                if layer.use_bias:
                    linear.bias.copy_(torch.from_numpy(layer.bias.value.copy()))
            modules.append(linear)
            if not (drop_final_activation and layer is dense_layers[-1]):
                modules.append(_torch_activation(layer.activation))
        else:
            raise NotImplementedError(type(layer).__name__)
    return nn.Sequential(*modules)


def torch_param_grads(torch_model):
    """Gradients in pynn order: kernel (= weight.grad.T), bias, layer by layer."""
    grads = []
    for module in torch_model:
        if isinstance(module, nn.Linear):
            grads.append(module.weight.grad.numpy().T)
            if module.bias is not None:
                grads.append(module.bias.grad.numpy())
    return grads


def pynn_step_grads(model, x, y):
    """(output, loss, grads) exactly as fit's training step computes them."""
    y = model._prepare_y(y, x.shape[0])
    y_pred = model.forward(x, training=True)
    output = y_pred.copy()
    loss, grad, fused = model._loss_and_grad(y, y_pred)
    grads = [g.copy() for g in model.backward(grad, wrt_preactivation=fused)]
    return output, loss, grads


def _mlp(hidden_activation, head_units, head_activation, seed=0):
    set_random_seed(seed)
    return pynn.Sequential([
        layers.Dense(8, activation=hidden_activation, input_shape=(5,),
                     bias_initializer="random_normal"),
        layers.Dense(6, activation=hidden_activation, bias_initializer="random_normal"),
        layers.Dense(head_units, activation=head_activation),
    ])


def _x(n=16, seed=0):
    return np.random.default_rng(seed).standard_normal((n, 5)).astype(np.float32)


def _compare(model, torch_model, x, y_pynn, torch_loss_fn, y_torch, torch_output_fn=None):
    output, loss, grads = pynn_step_grads(model, x, y_pynn)
    xt = torch.from_numpy(x)
    out_t = torch_model(xt)
    loss_t = torch_loss_fn(out_t, y_torch)
    loss_t.backward()
    shown = torch_output_fn(out_t) if torch_output_fn else out_t
    np.testing.assert_allclose(output, shown.detach().numpy(), rtol=RTOL, atol=ATOL)
    assert loss == pytest.approx(loss_t.item(), rel=1e-4, abs=1e-6)
    torch_grads = torch_param_grads(torch_model)
    assert len(grads) == len(torch_grads)
    for g, gt in zip(grads, torch_grads):
        np.testing.assert_allclose(g, gt, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_each_activation_mse(activation):
    model = _mlp(activation, 3, activation)
    model.compile(optimizer="sgd", loss="mse")
    x = _x()
    y = np.random.default_rng(1).standard_normal((16, 3)).astype(np.float32)
    _compare(model, to_torch(model), x, y, nn.MSELoss(), torch.from_numpy(y))


def _labels(n=16, classes=4, seed=2):
    return np.random.default_rng(seed).integers(0, classes, n)


def test_sparse_categorical_crossentropy_softmax_head():
    model = _mlp("relu", 4, "softmax")
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    y = _labels()
    _compare(model, to_torch(model, drop_final_activation=True), _x(), y,
             nn.CrossEntropyLoss(), torch.from_numpy(y), lambda z: torch.softmax(z, -1))


def test_sparse_categorical_crossentropy_from_logits():
    model = _mlp("tanh", 4, None)
    model.compile(optimizer="sgd",
                  loss=losses.SparseCategoricalCrossentropy(from_logits=True))
    y = _labels()
    _compare(model, to_torch(model), _x(), y, nn.CrossEntropyLoss(), torch.from_numpy(y))


@pytest.mark.parametrize("from_logits", [False, True])
def test_categorical_crossentropy(from_logits):
    model = _mlp("gelu", 4, None if from_logits else "softmax")
    model.compile(optimizer="sgd",
                  loss=losses.CategoricalCrossentropy(from_logits=from_logits))
    y = np.random.default_rng(3).dirichlet(np.ones(4), 16).astype(np.float32)
    _compare(model, to_torch(model, drop_final_activation=not from_logits), _x(), y,
             nn.CrossEntropyLoss(), torch.from_numpy(y),
             None if from_logits else (lambda z: torch.softmax(z, -1)))


def test_mean_absolute_error():
    model = _mlp("elu", 2, None)
    model.compile(optimizer="sgd", loss="mae")
    y = np.random.default_rng(4).standard_normal((16, 2)).astype(np.float32)
    _compare(model, to_torch(model), _x(), y, nn.L1Loss(), torch.from_numpy(y))


def test_binary_crossentropy_sigmoid_head():
    model = _mlp("relu", 3, "sigmoid")
    model.compile(optimizer="sgd", loss="binary_crossentropy")
    y = np.random.default_rng(5).integers(0, 2, (16, 3)).astype(np.float32)
    _compare(model, to_torch(model, drop_final_activation=True), _x(), y,
             nn.BCEWithLogitsLoss(), torch.from_numpy(y), torch.sigmoid)


def test_binary_crossentropy_on_probabilities_unfused():
    """BCE on probabilities through an explicit loop (no fusion) equals torch's BCELoss."""
    model = _mlp("softplus", 1, "sigmoid")
    model.compile(optimizer="sgd", loss="binary_crossentropy")
    x = _x()
    y = np.random.default_rng(6).integers(0, 2, (16, 1)).astype(np.float32)
    y_pred = model.forward(x, training=True)
    loss, grad = model._loss_fn.loss_and_grad(y, y_pred)
    grads = model.backward(grad)
    torch_model = to_torch(model)
    loss_t = nn.BCELoss()(torch_model(torch.from_numpy(x)), torch.from_numpy(y))
    loss_t.backward()
    assert loss == pytest.approx(loss_t.item(), rel=1e-4)
    for g, gt in zip(grads, torch_param_grads(torch_model)):
        np.testing.assert_allclose(g, gt, rtol=RTOL, atol=ATOL)


def test_binary_crossentropy_from_logits():
    model = _mlp("sigmoid", 1, None)
    model.compile(optimizer="sgd", loss=losses.BinaryCrossentropy(from_logits=True))
    y = np.random.default_rng(7).integers(0, 2, (16, 1)).astype(np.float32)
    _compare(model, to_torch(model), _x(), y, nn.BCEWithLogitsLoss(), torch.from_numpy(y))


def test_fit_with_sgd_momentum_matches_torch_training_loop():
    """Three epochs of fit (no shuffle, last batch partial) against the same loop in torch."""
    model = _mlp("tanh", 3, "softmax", seed=3)
    model.compile(optimizer=pynn.optimizers.SGD(learning_rate=0.05, momentum=0.9),
                  loss="sparse_categorical_crossentropy")
    torch_model = to_torch(model, drop_final_activation=True)
    x = _x(n=50, seed=8)
    y = _labels(n=50, classes=3, seed=9)
    history = model.fit(x, y, batch_size=16, epochs=3, shuffle=False, verbose=0)

    optimizer = torch.optim.SGD(torch_model.parameters(), lr=0.05, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    epoch_losses = []
    for _ in range(3):
        total = 0.0
        for start in range(0, 50, 16):
            optimizer.zero_grad()
            loss = loss_fn(torch_model(xt[start:start + 16]), yt[start:start + 16])
            loss.backward()
            optimizer.step()
            total += loss.item() * len(yt[start:start + 16])
        epoch_losses.append(total / 50)
    np.testing.assert_allclose(history.history["loss"], epoch_losses, rtol=1e-4)
    linears = [m for m in torch_model if isinstance(m, nn.Linear)]
    expected = [a for m in linears for a in (m.weight.detach().numpy().T, m.bias.detach().numpy())]
    for w, wt in zip(model.get_weights(), expected):
        np.testing.assert_allclose(w, wt, rtol=1e-4, atol=1e-5)
