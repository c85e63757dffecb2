"""Optimizer updates (and sum_of_squares, the clipping norm) against the NumPy reference over
several steps, bitwise determinism across thread counts, and input validation."""
import numpy as np
import pytest

import cnn_core
import pynn.reference as ref

DTYPES = [np.float32, np.float64]
# The kernels apply the reference's operations in the same order and precision, so they agree
# to the last bits in practice; the tolerance only allows for a different libm/sqrt rounding.
RTOL = {np.float32: 1e-6, np.float64: 1e-14}
ATOL = {np.float32: 1e-7, np.float64: 1e-16}
SHAPES = [(1,), (7,), (33, 65), (3, 4, 5), (10001,)]
STEPS = 5

# (optimizer, state slots, keyword arguments)
CASES = [
    ("sgd_update", ["velocity"], dict(lr=0.1)),
    ("sgd_update", [None], dict(lr=0.1)),  # no velocity: momentum 0
    ("sgd_update", ["velocity"], dict(lr=0.05, momentum=0.9)),
    ("sgd_update", ["velocity"], dict(lr=0.05, momentum=0.9, nesterov=True)),
    ("sgd_update", ["velocity"], dict(lr=0.05, momentum=0.5, nesterov=True, weight_decay=0.01)),
    ("adam_update", ["m", "v"], dict(lr=1e-3)),
    ("adam_update", ["m", "v"], dict(lr=1e-2, beta_1=0.8, beta_2=0.99, epsilon=1e-6)),
    ("adam_update", ["m", "v"], dict(lr=1e-3, weight_decay=0.004)),  # AdamW
    ("rmsprop_update", ["velocity"], dict(lr=1e-3)),
    ("rmsprop_update", ["velocity"], dict(lr=1e-3, rho=0.8, momentum=0.9)),
    ("rmsprop_update", ["velocity"], dict(lr=1e-3, centered=True)),
    ("rmsprop_update", ["velocity"], dict(lr=1e-3, momentum=0.5, centered=True,
                                          weight_decay=0.1)),
    ("adagrad_update", ["accumulator"], dict(lr=0.01)),
    ("adagrad_update", ["accumulator"], dict(lr=0.01, epsilon=1e-4, weight_decay=0.05)),
]


def _case_id(case):
    name, _, kwargs = case
    return name.replace("_update", "") + "-" + "-".join(f"{k}{v}" for k, v in kwargs.items())


def _with_threads(n, fn):
    """fn() run with n threads (the conftest fixture restores the count afterwards)."""
    cnn_core.set_num_threads(n)
    return fn()


def _initial_state(name, slots, kwargs, shape, dtype, rng):
    """param, positional state arrays and extra keyword state arrays (fresh, owned)."""
    param = rng.standard_normal(shape).astype(dtype)
    positional = []
    for slot in slots:
        if slot is None:
            positional.append(None)
        elif slot == "accumulator":
            positional.append(np.full(shape, 0.1, dtype))  # Keras' initial accumulator value
        elif slot == "v" or (slot == "velocity" and name == "rmsprop_update"):
            # 0.01 + ...: v >= ag^2 so the centered denominator stays positive
            positional.append((0.01 + 0.01 * rng.random(shape)).astype(dtype))
        else:
            positional.append(rng.standard_normal(shape).astype(dtype) * 0.1)
    extra = {}
    if name == "rmsprop_update":
        if kwargs.get("momentum", 0) > 0:
            extra["momentum_buf"] = rng.standard_normal(shape).astype(dtype) * 0.01
        if kwargs.get("centered"):
            extra["average_grad"] = rng.standard_normal(shape).astype(dtype) * 0.01
    return param, positional, extra


def _copy_state(param, positional, extra):
    return (param.copy(), [None if s is None else s.copy() for s in positional],
            {k: v.copy() for k, v in extra.items()})


def _run(module, name, kwargs, state, grads):
    param, positional, extra = state
    fn = getattr(module, name)
    for step, grad in enumerate(grads, start=1):
        kw = dict(kwargs, **extra)
        if name == "adam_update":
            kw["step"] = step
        assert fn(param, grad, *positional, **kw) is None
    return state


def _all_arrays(state):
    param, positional, extra = state
    return [param] + [s for s in positional if s is not None] + list(extra.values())


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CASES, ids=_case_id)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_steps_match_reference(dtype, case, shape):
    name, slots, kwargs = case
    rng = np.random.default_rng(len(shape) * 100 + shape[0])
    state = _initial_state(name, slots, kwargs, shape, dtype, rng)
    grads = [rng.standard_normal(shape).astype(dtype) for _ in range(STEPS)]
    got = _run(cnn_core, name, kwargs, _copy_state(*state), grads)
    want = _run(ref, name, kwargs, _copy_state(*state), grads)
    for g, w in zip(_all_arrays(got), _all_arrays(want)):
        assert g.dtype == dtype and np.all(np.isfinite(g))
        np.testing.assert_allclose(g, w, rtol=RTOL[dtype], atol=ATOL[dtype])
    # the parameters did move
    assert not np.array_equal(got[0], state[0])


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_bitwise_identical_for_any_thread_count(case):
    name, slots, kwargs = case
    rng = np.random.default_rng(12)
    shape = (200_003,)  # not a multiple of the chunk: the tail chunk is exercised too
    state = _initial_state(name, slots, kwargs, shape, np.float32, rng)
    grads = [rng.standard_normal(shape).astype(np.float32) for _ in range(2)]

    def run():
        out = _run(cnn_core, name, kwargs, _copy_state(*state), grads)
        return [a.tobytes() for a in _all_arrays(out)]

    first = _with_threads(1, run)
    for n in (2, 3):
        assert _with_threads(n, run) == first


def test_step_one_bias_correction():
    """After the first Adam step with zero state, every parameter moves by about lr."""
    param = np.ones(10, np.float64)
    g = np.linspace(-2, 2, 10)
    g[5] = 0.5
    m, v = np.zeros(10), np.zeros(10)
    cnn_core.adam_update(param, g, m, v, lr=0.01, step=1, epsilon=1e-12)
    np.testing.assert_allclose(1 - param, 0.01 * np.sign(g), rtol=1e-6)


def test_bad_inputs():
    p = np.zeros((4, 3), np.float32)
    g = np.zeros((4, 3), np.float32)
    s = np.zeros((4, 3), np.float32)
    with pytest.raises(ValueError, match=r"\(3, 4\).*\(4, 3\)"):
        cnn_core.sgd_update(p, np.zeros((3, 4), np.float32), None, lr=0.1)
    with pytest.raises(ValueError, match=r"\(4, 4\).*\(4, 3\)"):
        cnn_core.adam_update(p, g, s, np.zeros((4, 4), np.float32), lr=0.1, step=1)
    with pytest.raises(TypeError, match="float64"):
        cnn_core.adam_update(p, g.astype(np.float64), s, s.copy(), lr=0.1, step=1)
    with pytest.raises(TypeError, match="float32 or float64"):
        cnn_core.sgd_update(p.astype(np.int32), g.astype(np.int32), None, lr=0.1)
    with pytest.raises(ValueError, match="contiguous"):
        cnn_core.sgd_update(np.zeros((3, 4), np.float32).T, g, None, lr=0.1)
    with pytest.raises(ValueError, match="contiguous"):
        cnn_core.adagrad_update(p, g, np.zeros((3, 4), np.float32).T, lr=0.1)
    ro = np.zeros((4, 3), np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        cnn_core.sgd_update(ro, g, None, lr=0.1)
    with pytest.raises(ValueError, match="read-only"):
        cnn_core.adagrad_update(p, g, ro, lr=0.1)
    with pytest.raises(ValueError, match="empty"):
        cnn_core.sgd_update(np.zeros(0, np.float32), np.zeros(0, np.float32), None, lr=0.1)
    with pytest.raises(ValueError, match="finite"):
        cnn_core.sgd_update(p, g, None, lr=float("inf"))
    with pytest.raises(ValueError, match="finite"):
        cnn_core.adam_update(p, g, s, s.copy(), lr=float("nan"), step=1)
    with pytest.raises(ValueError, match=">= 1"):
        cnn_core.adam_update(p, g, s, s.copy(), lr=0.1, step=0)
    with pytest.raises(TypeError):
        cnn_core.adam_update(p, g, s, s.copy(), lr=0.1, step=1.5)
    with pytest.raises(ValueError, match="velocity"):
        cnn_core.sgd_update(p, g, None, lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match="momentum_buf"):
        cnn_core.rmsprop_update(p, g, s, lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match="average_grad"):
        cnn_core.rmsprop_update(p, g, s, lr=0.1, centered=True)
    with pytest.raises(ValueError, match="v is required"):
        cnn_core.adam_update(p, g, s, None, lr=0.1, step=1)


# --- sum_of_squares (clipnorm / global_clipnorm) ----------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1,), (7, 1), (33, 65), (3, 5000), (4, 5, 6), (100_003,)],
                         ids=lambda s: "x".join(map(str, s)))
def test_sum_of_squares_matches_reference(dtype, shape):
    rng = np.random.default_rng(sum(shape))
    x = rng.standard_normal(shape).astype(dtype)
    got = cnn_core.sum_of_squares(x)
    assert isinstance(got, float)
    # both accumulate in float64: only the summation order differs
    np.testing.assert_allclose(got, ref.sum_of_squares(x), rtol=1e-13)


def test_sum_of_squares_strided_and_bad_inputs():
    x = np.arange(24, dtype=np.float32).reshape(4, 6)
    assert cnn_core.sum_of_squares(x[:, ::2]) == ref.sum_of_squares(x[:, ::2])
    assert cnn_core.sum_of_squares(x.T) == cnn_core.sum_of_squares(x)
    with pytest.raises(TypeError):
        cnn_core.sum_of_squares(np.arange(5))
    with pytest.raises(ValueError, match="empty"):
        cnn_core.sum_of_squares(np.zeros((0, 2), np.float32))


@pytest.mark.parametrize("dtype", DTYPES)
def test_sum_of_squares_bitwise_identical_for_any_thread_count(dtype):
    x = np.random.default_rng(13).standard_normal(1_000_003).astype(dtype)
    first = _with_threads(1, lambda: cnn_core.sum_of_squares(x))
    for n in (2, 3, 4):
        assert _with_threads(n, lambda: cnn_core.sum_of_squares(x)) == first
