"""Optimizers: several steps against independent formulas, against torch.optim, clipping,
schedules, configuration round trips and state."""
import math

import numpy as np
import pytest

import cnn_core
import pynn
from pynn import optimizers
from pynn.optimizers import schedules
from pynn.variables import Variable

STEPS = 5


@pytest.fixture(params=["numpy", "cnn_core"])
def backend(request):
    if request.param == "cnn_core" and not hasattr(cnn_core, "adam_update"):
        pytest.skip("cnn_core optimizer kernels are not built yet")
    pynn.set_backend(request.param)
    return request.param


def make_problem(dtype=np.float64, seed=0, shapes=((3, 4), (4,))):
    """Initial weights and a fixed sequence of gradients (one list per step)."""
    rng = np.random.default_rng(seed)
    weights = [rng.normal(size=s).astype(dtype) for s in shapes]
    grads = [[rng.normal(size=s).astype(dtype) for s in shapes] for _ in range(STEPS)]
    return weights, grads


def run(optimizer, weights, grads):
    variables = [Variable(w.copy(), name=f"v{i}") for i, w in enumerate(weights)]
    for step_grads in grads:
        optimizer.apply([g.copy() for g in step_grads], variables)
    return [v.value for v in variables]


# --- independent formulas (float64, written from the Keras 3 docs) ----------------------------
def sgd_formula(w, gs, lr, momentum=0.0, nesterov=False, wd=0.0):
    w = w.copy()
    v = np.zeros_like(w)
    for g in gs:
        w = w - lr * wd * w
        if momentum:
            v = momentum * v - lr * g
            w = w + (momentum * v - lr * g if nesterov else v)
        else:
            w = w - lr * g
    return w


def adam_formula(w, gs, lr, b1=0.9, b2=0.999, eps=1e-7, wd=0.0, amsgrad=False):
    w = w.copy()
    m = np.zeros_like(w)
    v = np.zeros_like(w)
    vhat = np.zeros_like(w)
    for t, g in enumerate(gs, start=1):
        w = w - lr * wd * w
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        vhat = np.maximum(vhat, v)
        alpha = lr * math.sqrt(1 - b2 ** t) / (1 - b1 ** t)
        w = w - alpha * m / (np.sqrt(vhat if amsgrad else v) + eps)
    return w


def rmsprop_formula(w, gs, lr, rho=0.9, momentum=0.0, eps=1e-7, centered=False):
    w = w.copy()
    v = np.zeros_like(w)
    ag = np.zeros_like(w)
    mb = np.zeros_like(w)
    for g in gs:
        v = rho * v + (1 - rho) * g * g
        if centered:
            ag = rho * ag + (1 - rho) * g
            denom = v - ag * ag + eps
        else:
            denom = v + eps
        inc = lr * g / np.sqrt(denom)
        if momentum > 0:
            mb = momentum * mb + inc
            w = w - mb
        else:
            w = w - inc
    return w


def adagrad_formula(w, gs, lr, init=0.1, eps=1e-7):
    w = w.copy()
    acc = np.full_like(w, init)
    for g in gs:
        acc = acc + g * g
        w = w - lr * g / np.sqrt(acc + eps)
    return w


CASES = [
    ("sgd", lambda: optimizers.SGD(0.1), lambda w, gs: sgd_formula(w, gs, 0.1)),
    ("sgd-momentum", lambda: optimizers.SGD(0.1, momentum=0.9),
     lambda w, gs: sgd_formula(w, gs, 0.1, 0.9)),
    ("sgd-nesterov", lambda: optimizers.SGD(0.05, momentum=0.8, nesterov=True),
     lambda w, gs: sgd_formula(w, gs, 0.05, 0.8, True)),
    ("sgd-wd", lambda: optimizers.SGD(0.1, momentum=0.5, weight_decay=0.01),
     lambda w, gs: sgd_formula(w, gs, 0.1, 0.5, wd=0.01)),
    ("adam", lambda: optimizers.Adam(0.01), lambda w, gs: adam_formula(w, gs, 0.01)),
    ("adam-betas", lambda: optimizers.Adam(0.02, beta_1=0.8, beta_2=0.99, epsilon=1e-5),
     lambda w, gs: adam_formula(w, gs, 0.02, 0.8, 0.99, 1e-5)),
    ("adam-amsgrad", lambda: optimizers.Adam(0.01, amsgrad=True),
     lambda w, gs: adam_formula(w, gs, 0.01, amsgrad=True)),
    ("adamw", lambda: optimizers.AdamW(0.01, weight_decay=0.1),
     lambda w, gs: adam_formula(w, gs, 0.01, wd=0.1)),
    ("rmsprop", lambda: optimizers.RMSprop(0.01), lambda w, gs: rmsprop_formula(w, gs, 0.01)),
    ("rmsprop-centered-momentum",
     lambda: optimizers.RMSprop(0.01, rho=0.8, momentum=0.9, centered=True),
     lambda w, gs: rmsprop_formula(w, gs, 0.01, 0.8, 0.9, centered=True)),
    ("adagrad", lambda: optimizers.Adagrad(0.1), lambda w, gs: adagrad_formula(w, gs, 0.1)),
    ("adagrad-init", lambda: optimizers.Adagrad(0.1, initial_accumulator_value=1.0),
     lambda w, gs: adagrad_formula(w, gs, 0.1, init=1.0)),
]


@pytest.mark.parametrize("name, make, formula", CASES, ids=[c[0] for c in CASES])
def test_steps_match_formula(backend, name, make, formula):
    weights, grads = make_problem()
    got = run(make(), weights, grads)
    for i, w in enumerate(weights):
        expected = formula(w, [g[i] for g in grads])
        np.testing.assert_allclose(got[i], expected, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name, make, formula", CASES[:1] + CASES[4:5] + CASES[8:9],
                         ids=["sgd", "adam", "rmsprop"])
def test_float32_steps(backend, name, make, formula):
    weights, grads = make_problem(np.float32)
    got = run(make(), weights, grads)
    assert all(g.dtype == np.float32 for g in got)
    for i, w in enumerate(weights):
        expected = formula(w.astype(np.float64), [g[i].astype(np.float64) for g in grads])
        np.testing.assert_allclose(got[i], expected, rtol=2e-5, atol=1e-6)


def test_defaults_match_keras():
    sgd = optimizers.SGD()
    assert (sgd.learning_rate, sgd.momentum, sgd.nesterov, sgd.name) == (0.01, 0.0, False, "SGD")
    adam = optimizers.Adam()
    assert (adam.learning_rate, adam.beta_1, adam.beta_2, adam.epsilon, adam.name) == (
        0.001, 0.9, 0.999, 1e-7, "adam")
    adamw = optimizers.AdamW()
    assert (adamw.learning_rate, adamw.weight_decay, adamw.name) == (0.001, 0.004, "adamw")
    rms = optimizers.RMSprop()
    assert (rms.learning_rate, rms.rho, rms.momentum, rms.epsilon, rms.centered) == (
        0.001, 0.9, 0.0, 1e-7, False)
    ada = optimizers.Adagrad()
    assert (ada.learning_rate, ada.initial_accumulator_value, ada.epsilon) == (0.001, 0.1, 1e-7)


# --- PyTorch cross-check -----------------------------------------------------------------------
TORCH_STEPS = 8


def _torch_run(torch, make_torch_opt, weights, grads):
    params = [torch.nn.Parameter(torch.tensor(w.copy())) for w in weights]
    opt = make_torch_opt(params)
    for step_grads in grads:
        opt.zero_grad()
        for p, g in zip(params, step_grads):
            p.grad = torch.tensor(g.copy())
        opt.step()
    return [p.detach().numpy() for p in params]


# Keras and torch place epsilon differently (Keras: inside the sqrt for RMSprop/Adagrad, on the
# un-bias-corrected sqrt(v) for Adam); with a tiny epsilon the two definitions coincide.
TINY = 1e-12
TORCH_CASES = [
    ("sgd", lambda: optimizers.SGD(0.1), lambda t, p: t.optim.SGD(p, lr=0.1)),
    ("sgd-momentum", lambda: optimizers.SGD(0.1, momentum=0.9),
     lambda t, p: t.optim.SGD(p, lr=0.1, momentum=0.9)),
    ("sgd-nesterov", lambda: optimizers.SGD(0.05, momentum=0.8, nesterov=True),
     lambda t, p: t.optim.SGD(p, lr=0.05, momentum=0.8, nesterov=True)),
    ("adam", lambda: optimizers.Adam(0.01, epsilon=TINY),
     lambda t, p: t.optim.Adam(p, lr=0.01, eps=TINY)),
    ("adam-amsgrad", lambda: optimizers.Adam(0.01, epsilon=TINY, amsgrad=True),
     lambda t, p: t.optim.Adam(p, lr=0.01, eps=TINY, amsgrad=True)),
    ("adamw", lambda: optimizers.AdamW(0.01, weight_decay=0.05, epsilon=TINY),
     lambda t, p: t.optim.AdamW(p, lr=0.01, weight_decay=0.05, eps=TINY)),
    ("rmsprop", lambda: optimizers.RMSprop(0.01, rho=0.9, epsilon=TINY),
     lambda t, p: t.optim.RMSprop(p, lr=0.01, alpha=0.9, eps=TINY)),
    ("rmsprop-momentum", lambda: optimizers.RMSprop(0.01, rho=0.9, momentum=0.5, epsilon=TINY),
     lambda t, p: t.optim.RMSprop(p, lr=0.01, alpha=0.9, momentum=0.5, eps=TINY)),
    ("rmsprop-centered", lambda: optimizers.RMSprop(0.01, rho=0.9, centered=True, epsilon=TINY),
     lambda t, p: t.optim.RMSprop(p, lr=0.01, alpha=0.9, centered=True, eps=TINY)),
    ("rmsprop-centered-momentum",
     lambda: optimizers.RMSprop(0.01, rho=0.95, momentum=0.9, centered=True, epsilon=TINY),
     lambda t, p: t.optim.RMSprop(p, lr=0.01, alpha=0.95, momentum=0.9, centered=True,
                                  eps=TINY)),
    ("adagrad", lambda: optimizers.Adagrad(0.1, epsilon=TINY),
     lambda t, p: t.optim.Adagrad(p, lr=0.1, initial_accumulator_value=0.1, eps=TINY)),
]


@pytest.mark.torch
@pytest.mark.parametrize("name, make, make_torch", TORCH_CASES, ids=[c[0] for c in TORCH_CASES])
def test_matches_torch_optim(backend, name, make, make_torch):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(42)
    shapes = ((5, 3), (3,))
    weights = [rng.normal(size=s).astype(np.float32) for s in shapes]
    grads = [[rng.normal(size=s).astype(np.float32) for s in shapes]
             for _ in range(TORCH_STEPS)]
    variables = [Variable(w.copy()) for w in weights]
    opt = make()
    for step_grads in grads:
        opt.apply([g.copy() for g in step_grads], variables)
    expected = _torch_run(torch, lambda p: make_torch(torch, p), weights, grads)
    for v, e in zip(variables, expected):
        np.testing.assert_allclose(v.value, e, rtol=1e-5, atol=1e-6)


# --- clipping ----------------------------------------------------------------------------------
def test_clipnorm_is_per_variable(backend):
    g_big = np.array([3.0, 4.0])          # norm 5
    g_small = np.array([0.3, 0.4])        # norm 0.5
    v1, v2 = Variable(np.zeros(2)), Variable(np.zeros(2))
    optimizers.SGD(1.0, clipnorm=1.0).apply([g_big, g_small], [v1, v2])
    np.testing.assert_allclose(v1.value, -g_big / 5)
    np.testing.assert_allclose(v2.value, -g_small)


def test_global_clipnorm(backend):
    g1, g2 = np.array([3.0, 0.0]), np.array([0.0, 4.0])   # global norm 5
    v1, v2 = Variable(np.zeros(2)), Variable(np.zeros(2))
    optimizers.SGD(1.0, global_clipnorm=2.5).apply([g1, g2], [v1, v2])
    np.testing.assert_allclose(v1.value, -g1 / 2)
    np.testing.assert_allclose(v2.value, -g2 / 2)
    # under the threshold: untouched
    v = Variable(np.zeros(2))
    optimizers.SGD(1.0, global_clipnorm=10.0).apply([g1], [v])
    np.testing.assert_allclose(v.value, -g1)


def test_clipvalue(backend):
    v = Variable(np.zeros(4))
    optimizers.SGD(1.0, clipvalue=0.5).apply([np.array([-2.0, -0.1, 0.2, 3.0])], [v])
    np.testing.assert_allclose(v.value, [0.5, 0.1, -0.2, -0.5])


def test_clipping_leaves_the_callers_gradient_alone(backend):
    g = np.array([3.0, 4.0])
    for opt in (optimizers.SGD(1.0, clipnorm=1.0), optimizers.SGD(1.0, clipvalue=1.0),
                optimizers.SGD(1.0, global_clipnorm=1.0)):
        opt.apply([g], [Variable(np.zeros(2))])
        np.testing.assert_array_equal(g, [3.0, 4.0])


def test_only_one_clipping_option():
    with pytest.raises(ValueError, match="Only one of"):
        optimizers.Adam(clipnorm=1.0, clipvalue=1.0)
    with pytest.raises(ValueError, match="Only one of"):
        optimizers.SGD(clipnorm=1.0, global_clipnorm=1.0)


def test_clipped_adam_matches_formula_on_clipped_grads(backend):
    weights, grads = make_problem()
    got = run(optimizers.Adam(0.01, clipnorm=0.5), weights, grads)

    def clip(g):
        n = np.linalg.norm(g)
        return g * 0.5 / n if n > 0.5 else g

    for i, w in enumerate(weights):
        expected = adam_formula(w, [clip(g[i]) for g in grads], 0.01)
        np.testing.assert_allclose(got[i], expected, rtol=1e-12)


# --- weight decay, learning rate, schedules ---------------------------------------------------
def test_exclude_from_weight_decay(backend):
    kernel = Variable(np.ones(3), name="dense/kernel")
    bias = Variable(np.ones(3), name="dense/bias")
    opt = optimizers.SGD(0.1, weight_decay=0.5)
    opt.exclude_from_weight_decay(var_names=["bias"])
    zeros = np.zeros(3)
    opt.apply([zeros, zeros], [kernel, bias])
    np.testing.assert_allclose(kernel.value, 1 - 0.1 * 0.5)
    np.testing.assert_allclose(bias.value, 1.0)


def test_learning_rate_is_settable_and_used(backend):
    opt = optimizers.SGD(0.1)
    v = Variable(np.zeros(1))
    opt.apply([np.ones(1)], [v])
    opt.learning_rate = 0.5
    assert opt.learning_rate == 0.5
    opt.apply([np.ones(1)], [v])
    np.testing.assert_allclose(v.value, [-0.6])
    assert opt.iterations == 2


def test_schedule_drives_the_learning_rate(backend):
    sched = schedules.PiecewiseConstantDecay([1], [1.0, 0.1])
    opt = optimizers.SGD(sched)
    v = Variable(np.zeros(1))
    lrs = []
    for _ in range(4):
        lrs.append(opt.learning_rate)
        opt.apply([np.ones(1)], [v])
    assert lrs == [1.0, 1.0, 0.1, 0.1]       # schedule(iterations), iterations from 0
    np.testing.assert_allclose(v.value, [-2.2])
    with pytest.raises(TypeError, match="not settable"):
        opt.learning_rate = 0.3


def test_exponential_decay_values():
    s = schedules.ExponentialDecay(0.1, decay_steps=10, decay_rate=0.5)
    for step in (0, 1, 5, 10, 25):
        assert s(step) == pytest.approx(0.1 * 0.5 ** (step / 10))
    s = schedules.ExponentialDecay(0.1, decay_steps=10, decay_rate=0.5, staircase=True)
    assert [s(k) for k in (0, 9, 10, 19, 20)] == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025])


def test_piecewise_constant_values():
    s = schedules.PiecewiseConstantDecay([100, 200], [1.0, 0.5, 0.1])
    assert [s(k) for k in (0, 100, 101, 200, 201, 10 ** 6)] == [1.0, 1.0, 0.5, 0.5, 0.1, 0.1]
    with pytest.raises(ValueError, match="one more"):
        schedules.PiecewiseConstantDecay([1, 2], [1.0, 0.5])


def test_cosine_decay_values():
    s = schedules.CosineDecay(0.1, decay_steps=100, alpha=0.1)

    def expected(step):
        step = min(step, 100)
        return 0.1 * ((1 - 0.1) * 0.5 * (1 + math.cos(math.pi * step / 100)) + 0.1)

    for step in (0, 25, 50, 100, 150):
        assert s(step) == pytest.approx(expected(step))
    assert s(0) == pytest.approx(0.1) and s(1000) == pytest.approx(0.01)
    w = schedules.CosineDecay(0.0, decay_steps=100, warmup_target=1.0, warmup_steps=10)
    assert [w(k) for k in (0, 5, 10)] == pytest.approx([0.0, 0.5, 1.0])
    assert w(60) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5)))
    assert w(110) == pytest.approx(0.0) and w(500) == pytest.approx(0.0)


def test_other_schedules_values():
    s = schedules.InverseTimeDecay(1.0, decay_steps=1, decay_rate=0.5)
    assert s(2) == pytest.approx(1 / (1 + 0.5 * 2))
    p = schedules.PolynomialDecay(1.0, decay_steps=10, end_learning_rate=0.0, power=2.0)
    assert p(5) == pytest.approx(0.25) and p(20) == pytest.approx(0.0)


@pytest.mark.parametrize("sched", [
    schedules.ExponentialDecay(0.1, 1000, 0.96, staircase=True),
    schedules.PiecewiseConstantDecay([10, 20], [0.1, 0.01, 0.001]),
    schedules.CosineDecay(0.1, 100, alpha=0.05, warmup_target=0.2, warmup_steps=5),
])
def test_schedule_config_round_trip(sched):
    again = type(sched).from_config(sched.get_config())
    assert again.get_config() == sched.get_config()
    assert [again(k) for k in (0, 7, 50)] == [sched(k) for k in (0, 7, 50)]
    assert schedules.deserialize(schedules.serialize(sched)).get_config() == sched.get_config()


# --- lookup, configuration and state -----------------------------------------------------------
@pytest.mark.parametrize("name, cls", [("sgd", optimizers.SGD), ("adam", optimizers.Adam),
                                       ("adamw", optimizers.AdamW),
                                       ("rmsprop", optimizers.RMSprop),
                                       ("adagrad", optimizers.Adagrad),
                                       ("Adam", optimizers.Adam), ("RMSprop", optimizers.RMSprop)])
def test_get_by_name(name, cls):
    assert type(optimizers.get(name)) is cls


def test_get_unknown_lists_names():
    with pytest.raises(ValueError, match=r"'nadamx'.*adagrad.*adam.*adamw.*rmsprop.*sgd"):
        optimizers.get("nadamx")


@pytest.mark.parametrize("opt", [
    optimizers.SGD(0.05, momentum=0.9, nesterov=True, clipnorm=1.0),
    optimizers.Adam(0.002, beta_1=0.8, amsgrad=True, global_clipnorm=2.0),
    optimizers.AdamW(0.003, weight_decay=0.01, clipvalue=0.5),
    optimizers.RMSprop(0.004, rho=0.8, momentum=0.1, centered=True),
    optimizers.Adagrad(0.005, initial_accumulator_value=0.2, name="ada"),
    optimizers.Adam(schedules.ExponentialDecay(0.01, 100, 0.9)),
])
def test_config_round_trip(opt):
    config = opt.get_config()
    again = type(opt).from_config(config)
    assert again.get_config() == config
    by_get = optimizers.get(optimizers.serialize(opt))
    assert type(by_get) is type(opt) and by_get.get_config() == config
    assert optimizers.get({"class_name": type(opt).__name__, "config": config}).get_config() == \
        config


def test_state_round_trip_continues_identically(backend):
    weights, grads = make_problem(seed=3)
    ref = optimizers.RMSprop(0.01, momentum=0.5, centered=True)
    ref_vars = [Variable(w.copy()) for w in weights]
    for g in grads[:3]:
        ref.apply(g, ref_vars)
    state = ref.get_state()
    assert state["iterations"] == 3
    assert {"velocity_0", "momentum_1", "average_gradient_0"} <= set(state)

    # a fresh optimizer given the state (before build) continues exactly like the original
    clone = optimizers.RMSprop(0.01, momentum=0.5, centered=True)
    clone.set_state(state)
    clone_vars = [Variable(v.value.copy()) for v in ref_vars]
    for g in grads[3:]:
        ref.apply(g, ref_vars)
        clone.apply(g, clone_vars)
    for a, b in zip(ref_vars, clone_vars):
        np.testing.assert_array_equal(a.value, b.value)
    assert clone.iterations == ref.iterations == STEPS


def test_set_state_checks_shapes():
    opt = optimizers.Adam()
    opt.build([Variable(np.zeros(3))])
    state = opt.get_state()
    state["momentum_0"] = np.zeros(4)
    with pytest.raises(ValueError, match="momentum_0"):
        opt.set_state(state)


def test_slots_are_allocated_once_and_updated_in_place(backend):
    v = Variable(np.zeros((2, 2), np.float32))
    value_buffer = v.value
    opt = optimizers.Adam()
    opt.apply([np.ones((2, 2), np.float32)], [v])
    slots = [a for arrays in opt._slots.values() for a in arrays]
    opt.apply([np.ones((2, 2), np.float32)], [v])
    assert all(a is b for a, b in zip(slots, [a for arrs in opt._slots.values() for a in arrs]))
    assert v.value is value_buffer
    assert opt.iterations == 2


def test_apply_errors_and_apply_gradients(backend):
    v1, v2 = Variable(np.zeros(2)), Variable(np.zeros(2))
    opt = optimizers.SGD(1.0)
    with pytest.raises(ValueError, match="built"):
        opt.apply([np.ones(2)])
    opt.apply_gradients([(np.ones(2), v1)])
    np.testing.assert_allclose(v1.value, [-1, -1])
    with pytest.raises(ValueError, match="Unknown variable"):
        opt.apply([np.ones(2)], [v2])
    opt.apply([np.ones(2)])     # built: variables may be omitted
    np.testing.assert_allclose(v1.value, [-2, -2])
    with pytest.raises(ValueError, match="shape"):
        opt.apply([np.ones(3)])
    with pytest.raises(ValueError, match="momentum"):
        optimizers.SGD(momentum=1.5)
    with pytest.raises(ValueError, match="weight_decay"):
        optimizers.AdamW(weight_decay=None)
    with pytest.raises(ValueError, match="learning_rate"):
        optimizers.SGD(learning_rate="fast")


def test_none_gradients_are_skipped_with_a_warning(backend):
    v1, v2 = Variable(np.zeros(2), name="a"), Variable(np.zeros(2), name="b")
    opt = optimizers.SGD(1.0)
    with pytest.warns(UserWarning, match="b"):
        opt.apply([np.ones(2), None], [v1, v2])
    np.testing.assert_allclose(v1.value, [-1, -1])
    np.testing.assert_allclose(v2.value, [0, 0])
