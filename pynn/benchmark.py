"""Side-by-side benchmarks: pynn (cnn_core) against the NumPy reference and PyTorch.

    python -m pynn bench [--threads N] [--json results.json] [--quick] [--only gemm,train]
    python bench/run.py ...            (the same)

Every case of one row is measured in the same process, interleaved, so the ratios are
meaningful on a shared, noisy machine; absolute times are this machine's. Data is synthetic,
MNIST-shaped (60,000 x 784, 10 classes): no download needed.
"""
import argparse
import json
import os
import platform
import sys
import time

import numpy as np

import cnn_core

try:
    from threadpoolctl import threadpool_limits
except ImportError:  # pragma: no cover
    threadpool_limits = None

try:
    import torch
except ImportError:  # pragma: no cover
    torch = None


def median_time(fn, min_time=0.15, repeats=5, warmup=1):
    """Median seconds per call of ``fn`` over ``repeats`` rounds of >= ``min_time`` each."""
    for _ in range(warmup):
        fn()
    t0 = time.perf_counter()
    fn()
    once = max(time.perf_counter() - t0, 1e-7)
    inner = max(1, int(min_time / once))
    rounds = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        rounds.append((time.perf_counter() - t0) / inner)
    return float(np.median(rounds))


# After a call, every thread pool here keeps its idle workers spinning for a while: OpenBLAS
# for about 2^28 cycles (~0.1 s), libgomp (pynn's and PyTorch's) for a few milliseconds. A
# pool timed right after another one shares its cores with those spinners: measured on 2
# cores, pynn's 256x784x256 GEMM ran 5.4x slower right after a numpy.matmul and numpy's 1.5x
# slower right after pynn. So with several threads each block of timing starts after a pause
# in which the previous pool goes to sleep.
QUIESCE_SECONDS = 0.25


def quiesce():
    """Sleep until other libraries' idle worker threads have stopped spinning (threads > 1)."""
    if cnn_core.get_num_threads() > 1:
        time.sleep(QUIESCE_SECONDS)


def _interleaved(fns, **kw):
    """Time several implementations round-robin so machine noise hits them alike."""
    results = {name: [] for name in fns}
    repeats = kw.pop("repeats", 3)
    for _ in range(repeats):
        for name, fn in fns.items():
            if fn is not None:
                quiesce()
                results[name].append(median_time(fn, repeats=1, **kw))
    return {name: (float(np.median(v)) if v else None) for name, v in results.items()}


class Table:
    def __init__(self):
        self.rows = []

    def add(self, section, case, times, flops=None, note="", extra=None):
        row = {"section": section, "case": case, "flops": flops, "note": note, **(extra or {})}
        for impl, t in times.items():
            row[impl] = t
        self.rows.append(row)
        self._print_row(row)

    @staticmethod
    def _fmt_time(t):
        if t is None:
            return "-"
        if t >= 1:
            return f"{t:.2f} s"
        if t >= 1e-3:
            return f"{t * 1e3:.2f} ms"
        return f"{t * 1e6:.1f} us"

    def header(self):
        print(f"{'section':<9} {'case':<34} {'pynn':>10} {'numpy':>10} {'torch':>10} "
              f"{'pynn GF/s':>9} {'numpy/pynn':>10} {'torch/pynn':>10}  note")
        print("-" * 118)

    def _print_row(self, row):
        p, n, t = row.get("pynn"), row.get("numpy"), row.get("torch")
        gf = f"{row['flops'] / p / 1e9:.1f}" if row["flops"] and p else "-"
        rn = f"{n / p:.2f}x" if p and n else "-"
        rt = f"{t / p:.2f}x" if p and t else "-"
        print(f"{row['section']:<9} {row['case']:<34} {self._fmt_time(p):>10} "
              f"{self._fmt_time(n):>10} {self._fmt_time(t):>10} {gf:>9} {rn:>10} {rt:>10}  "
              f"{row['note']}", flush=True)


# ----------------------------------------------------------------------------- kernels

def bench_gemm(table, quick):
    shapes = [(32, 784, 128), (64, 784, 128), (256, 784, 256), (128, 784, 512), (256, 1024, 1024)]
    shapes += [] if quick else [(1024, 1024, 1024), (2048, 2048, 2048)]
    cases = [(shape, trans, "") for shape in shapes for trans in ("NN", "TN", "NT")
             if trans == "NN" or shape[0] * shape[1] * shape[2] <= 300e6]
    # The backward GEMMs of two layers (batch, in, out): dW = x^T dz, dx = dz W^T.
    for batch, n_in, n_out in [(32, 784, 128), (256, 1024, 1024)]:
        cases += [((n_in, batch, n_out), "TN", "dW "), ((batch, n_out, n_in), "NT", "dx ")]
    rng = np.random.default_rng(0)
    for (m, k, n), trans, label in cases:
        ta, tb = trans[0] == "T", trans[1] == "T"
        a = rng.standard_normal((k, m) if ta else (m, k)).astype(np.float32)
        b = rng.standard_normal((n, k) if tb else (k, n)).astype(np.float32)
        opa, opb = (a.T if ta else a), (b.T if tb else b)
        out = np.empty((m, n), np.float32)
        fns = {
            "pynn": lambda: cnn_core.gemm(a, b, trans_a=ta, trans_b=tb, out=out),
            "numpy": lambda: np.matmul(opa, opb, out=out),
        }
        if torch is not None:
            ta_t, tb_t = torch.from_numpy(opa), torch.from_numpy(opb)
            out_t = torch.from_numpy(out)
            fns["torch"] = lambda: torch.mm(ta_t, tb_t, out=out_t)
        table.add("gemm", f"{label}{m}x{k}x{n} {trans}", _interleaved(fns),
                  flops=2.0 * m * n * k)


def bench_dense(table, quick):
    import pynn.reference as ref

    rng = np.random.default_rng(1)
    for batch, n_in, units in [(32, 784, 128), (256, 784, 512)]:
        x = rng.standard_normal((batch, n_in)).astype(np.float32)
        w = (rng.standard_normal((n_in, units)) * 0.05).astype(np.float32)
        b = np.zeros(units, np.float32)
        g = rng.standard_normal((batch, units)).astype(np.float32)
        a, z = np.empty((batch, units), np.float32), np.empty((batch, units), np.float32)
        gw, gb = np.empty_like(w), np.empty_like(b)
        gx, dz = np.empty_like(x), np.empty_like(a)

        def pynn_step():
            cnn_core.dense_forward(x, w, b, "relu", out=a, z_out=z)
            cnn_core.dense_backward(x, w, z, a, g, "relu", grad_w=gw, grad_b=gb, grad_x=gx,
                                    dz_out=dz)

        def ref_step():
            ref.dense_forward(x, w, b, "relu", out=a, z_out=z)
            ref.dense_backward(x, w, z, a, g, "relu", grad_w=gw, grad_b=gb, grad_x=gx)

        fns = {"pynn": pynn_step, "numpy": ref_step}
        if torch is not None:
            xt = torch.from_numpy(x).requires_grad_(True)
            wt = torch.from_numpy(w.T.copy()).requires_grad_(True)
            bt = torch.from_numpy(b).requires_grad_(True)
            gt = torch.from_numpy(g)

            def torch_step():
                xt.grad = wt.grad = bt.grad = None
                torch.relu(torch.nn.functional.linear(xt, wt, bt)).backward(gt)

            fns["torch"] = torch_step
        flops = 6.0 * batch * n_in * units
        table.add("dense", f"fwd+bwd relu {batch}x{n_in}x{units}", _interleaved(fns), flops=flops)


def bench_losses(table, quick):
    import pynn.reference as ref

    rng = np.random.default_rng(2)
    for batch, classes in [(32, 10), (256, 10), (1024, 1000)]:
        logits = rng.standard_normal((batch, classes)).astype(np.float32)
        labels = rng.integers(0, classes, batch)
        grad = np.empty_like(logits)
        fns = {
            "pynn": lambda: cnn_core.softmax_cross_entropy_sparse(logits, labels, grad=grad),
            "numpy": lambda: ref.softmax_cross_entropy_sparse(logits, labels, grad=grad),
        }
        if torch is not None:
            lt = torch.from_numpy(logits).requires_grad_(True)
            yt = torch.from_numpy(labels)

            def torch_ce():
                lt.grad = None
                torch.nn.functional.cross_entropy(lt, yt).backward()

            fns["torch"] = torch_ce
        table.add("loss", f"softmax-CE {batch}x{classes}", _interleaved(fns))


def bench_optimizers(table, quick):
    import pynn.reference as ref

    n = 1_000_000
    rng = np.random.default_rng(3)
    g = rng.standard_normal(n).astype(np.float32)
    cases = {
        "sgd momentum": (
            lambda p, s: cnn_core.sgd_update(p, g, s[0], lr=0.01, momentum=0.9),
            lambda p, s: ref.sgd_update(p, g, s[0], lr=0.01, momentum=0.9),
            lambda params: torch.optim.SGD(params, lr=0.01, momentum=0.9) if torch else None, 1),
        "adam": (
            lambda p, s: cnn_core.adam_update(p, g, s[0], s[1], lr=1e-3, step=10),
            lambda p, s: ref.adam_update(p, g, s[0], s[1], lr=1e-3, step=10),
            lambda params: torch.optim.Adam(params, lr=1e-3, foreach=True) if torch else None, 2),
        "rmsprop": (
            lambda p, s: cnn_core.rmsprop_update(p, g, s[0], lr=1e-3),
            lambda p, s: ref.rmsprop_update(p, g, s[0], lr=1e-3),
            lambda params: torch.optim.RMSprop(params, lr=1e-3) if torch else None, 1),
        "adagrad": (
            lambda p, s: cnn_core.adagrad_update(p, g, s[0], lr=1e-3),
            lambda p, s: ref.adagrad_update(p, g, s[0], lr=1e-3),
            lambda params: torch.optim.Adagrad(params, lr=1e-3) if torch else None, 1),
    }
    for name, (ours, theirs, make_torch, n_slots) in cases.items():
        p1, p2 = np.zeros(n, np.float32), np.zeros(n, np.float32)
        s1 = [np.full(n, 0.1, np.float32) for _ in range(n_slots)]
        s2 = [np.full(n, 0.1, np.float32) for _ in range(n_slots)]
        fns = {"pynn": lambda: ours(p1, s1), "numpy": lambda: theirs(p2, s2)}
        if torch is not None:
            pt = torch.zeros(n, requires_grad=True)
            pt.grad = torch.from_numpy(g)
            opt = make_torch([pt])
            fns["torch"] = opt.step
        table.add("optim", f"{name} 1M params", _interleaved(fns))


# ----------------------------------------------------------------------------- training

TRAIN_MODELS = [
    # (name, hidden sizes, batch size)
    ("784-128-10", (128,), 32),
    ("784-512-256-10", (512, 256), 128),
    ("784-1024-1024-10", (1024, 1024), 256),
]
# The small model with Dropout(0.2) after its hidden layer (a common MNIST recipe), timed as
# an epoch only: (name, hidden sizes, batch size, dropout rate).
DROPOUT_MODEL = ("784-128-Dropout(0.2)-10", (128,), 32, 0.2)


def _synthetic_mnist(n=60000, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random((n, 784), dtype=np.float32)
    y = rng.integers(0, 10, n).astype(np.int64)
    return x, y


def _model_flops_per_sample(hidden):
    sizes = (784,) + tuple(hidden) + (10,)
    mults = sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))
    first = sizes[0] * sizes[1]
    # forward 2*mults, backward dW 2*mults, dx for all but the first layer.
    return 2 * mults + 2 * mults + 2 * (mults - first)


def _pynn_model(hidden, backend, dropout=0.0):
    import pynn

    pynn.set_backend(backend)
    pynn.utils.set_random_seed(0)
    layers = []
    for h in hidden:
        layers.append(pynn.layers.Dense(h, activation="relu"))
        if dropout:
            layers.append(pynn.layers.Dropout(dropout))
    model = pynn.Sequential([pynn.layers.Input(shape=(784,))] + layers
                            + [pynn.layers.Dense(10, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def _torch_model(hidden, dropout=0.0):
    torch.manual_seed(0)
    sizes = (784,) + tuple(hidden)
    mods = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        mods += [torch.nn.Linear(a, b), torch.nn.ReLU()]
        if dropout:
            mods.append(torch.nn.Dropout(dropout))
    mods.append(torch.nn.Linear(sizes[-1], 10))
    return torch.nn.Sequential(*mods)


def _torch_epoch(model, opt, xt, yt, batch, steps=None):
    n = xt.shape[0]
    perm = torch.randperm(n)
    loss_fn = torch.nn.functional.cross_entropy
    count = 0
    for start in range(0, n, batch):
        idx = perm[start:start + batch]
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(xt[idx]), yt[idx])
        loss.backward()
        opt.step()
        count += 1
        if steps is not None and count >= steps:
            break


def _median_epochs(epochs, rounds):
    """{impl: median seconds} of ``rounds`` rounds, each running every impl's epoch once in
    turn (so machine noise hits them alike)."""
    seconds = {impl: [] for impl in epochs}
    for _ in range(rounds):
        for impl, epoch in epochs.items():
            quiesce()
            t0 = time.perf_counter()
            epoch()
            seconds[impl].append(time.perf_counter() - t0)
    return {impl: float(np.median(v)) for impl, v in seconds.items()}


def bench_training(table, quick):
    """One epoch of each model: pynn and PyTorch alternate for a few rounds (median), the
    NumPy reference runs 50 steps once and is scaled to the epoch."""
    import pynn

    x, y = _synthetic_mnist()
    rounds = 1 if quick else 3
    models = [m + (0.0,) for m in TRAIN_MODELS] + ([] if quick else [DROPOUT_MODEL])
    for name, hidden, batch, dropout in models:
        if quick and hidden[0] > 512:
            continue
        flops = _model_flops_per_sample(hidden) * x.shape[0]
        steps_per_epoch = -(-x.shape[0] // batch)
        model = _pynn_model(hidden, "cnn_core", dropout)
        model.fit(x[:batch * 4], y[:batch * 4], batch_size=batch, epochs=1, verbose=0)
        epochs = {"pynn": lambda: model.fit(x, y, batch_size=batch, epochs=1, verbose=0)}
        if torch is not None:
            tm = _torch_model(hidden, dropout)
            opt = torch.optim.Adam(tm.parameters(), lr=1e-3)
            xt, yt = torch.from_numpy(x), torch.from_numpy(y)
            _torch_epoch(tm, opt, xt, yt, batch, steps=4)
            epochs["torch"] = lambda: _torch_epoch(tm, opt, xt, yt, batch)
        times = _median_epochs(epochs, rounds)
        peak = _peak_gflops()
        share = flops / times["pynn"] / 1e9 / peak
        # The NumPy reference is slow: time a slice of the epoch and scale it.
        ref_steps = 50
        ref_model = _pynn_model(hidden, "numpy", dropout)
        n_ref = batch * ref_steps
        quiesce()
        t0 = time.perf_counter()
        ref_model.fit(x[:n_ref], y[:n_ref], batch_size=batch, epochs=1, verbose=0)
        times["numpy"] = (time.perf_counter() - t0) * steps_per_epoch / ref_steps
        pynn.set_backend("cnn_core")
        table.add("train", f"epoch {name} b{batch}", times, flops=flops,
                  note=f"pynn at {share:.0%} of the FMA peak ({peak:.0f} GF/s); median of "
                       f"{rounds} epochs; numpy scaled from 50 steps",
                  extra={"peak_gflops": peak, "pynn_peak_fraction": share})


# ----------------------------------------------------------------------------- convolution

# (batch, height, width, channels, filters, kernel): the two layers of Keras' MNIST convnet.
CONV_LAYERS = [(128, 28, 28, 1, 32, 3), (128, 13, 13, 32, 64, 3)]
CNN_SAMPLES = 12800  # a fifth of an MNIST epoch: the NumPy reference needs minutes for one


def bench_conv(table, quick):
    """Conv layers forward + backward (relu, valid), then an epoch of Keras' MNIST convnet."""
    import pynn.reference as ref

    rng = np.random.default_rng(1)
    for batch, height, width, channels, filters, kernel in CONV_LAYERS:
        x = rng.standard_normal((batch, height, width, channels)).astype(np.float32)
        w = (rng.standard_normal((kernel, kernel, channels, filters))
             / np.sqrt(kernel * kernel * channels)).astype(np.float32)
        b = np.zeros(filters, np.float32)
        a = cnn_core.conv2d_forward(x, w, b)
        z, dz, g = np.empty_like(a), np.empty_like(a), np.ones_like(a)
        gw, gb, gx = np.empty_like(w), np.empty_like(b), np.empty_like(x)
        first = channels == 1  # the input layer needs no dx

        def step(kernels):
            kernels.conv2d_forward(x, w, b, activation="relu", out=a, z_out=z)
            kernels.conv2d_backward(x, w, z, a, g, activation="relu", grad_w=gw, grad_b=gb,
                                    grad_x=None if first else gx, need_grad_x=not first,
                                    dz_out=dz)

        fns = {"pynn": lambda: step(cnn_core), "numpy": lambda: step(ref)}
        if torch is not None:
            xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
            xt.requires_grad_(not first)
            wt = torch.from_numpy(np.ascontiguousarray(w.transpose(3, 2, 0, 1)))
            wt.requires_grad_(True)
            bt = torch.from_numpy(b).requires_grad_(True)
            gt = torch.ones((batch, filters, a.shape[1], a.shape[2]))

            def torch_step():
                xt.grad = wt.grad = bt.grad = None
                torch.relu(torch.nn.functional.conv2d(xt, wt, bt)).backward(gt)

            fns["torch"] = torch_step
        out_pixels = a.shape[1] * a.shape[2]
        flops = 2.0 * batch * out_pixels * kernel * kernel * channels * filters * (2 if first
                                                                                 else 3)
        table.add("conv", f"fwd+bwd relu {batch}x{height}x{width}x{channels} "
                          f"{kernel}x{kernel}x{filters}", _interleaved(fns), flops=flops)
    if not quick:
        _bench_cnn_epoch(table)


def _pynn_convnet(backend):
    import pynn
    from pynn import layers

    pynn.set_backend(backend)
    pynn.utils.set_random_seed(0)
    model = pynn.Sequential([
        layers.Input(shape=(28, 28, 1)),
        layers.Conv2D(32, 3, activation="relu"), layers.MaxPooling2D(),
        layers.Conv2D(64, 3, activation="relu"), layers.MaxPooling2D(),
        layers.Flatten(), layers.Dense(10, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def _torch_convnet():
    torch.manual_seed(0)
    nn = torch.nn
    return nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(32, 64, 3),
                         nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(1600, 10))


def _bench_cnn_epoch(table):
    import pynn

    rng = np.random.default_rng(0)
    n, batch = CNN_SAMPLES, 128
    x = rng.random((n, 28, 28, 1), dtype=np.float32)
    y = rng.integers(0, 10, n).astype(np.int64)
    model = _pynn_convnet("cnn_core")
    model.fit(x[:batch * 2], y[:batch * 2], batch_size=batch, epochs=1, verbose=0)
    epochs = {"pynn": lambda: model.fit(x, y, batch_size=batch, epochs=1, verbose=0)}
    if torch is not None:
        tm = _torch_convnet()
        opt = torch.optim.Adam(tm.parameters(), lr=1e-3)
        xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
        yt = torch.from_numpy(y)
        _torch_epoch(tm, opt, xt, yt, batch, steps=2)
        epochs["torch"] = lambda: _torch_epoch(tm, opt, xt, yt, batch)
    times = _median_epochs(epochs, 3)
    ref_steps = min(5, n // batch)
    ref_model = _pynn_convnet("numpy")
    quiesce()
    t0 = time.perf_counter()
    ref_model.fit(x[:batch * ref_steps], y[:batch * ref_steps], batch_size=batch, epochs=1,
                  verbose=0)
    times["numpy"] = (time.perf_counter() - t0) * (n // batch) / ref_steps
    pynn.set_backend("cnn_core")
    # Per sample: conv1 forward + dW, conv2 forward + dW + dx, the dense layer's three.
    flops = n * (2.0 * 26 * 26 * 9 * 32 * 2 + 2.0 * 11 * 11 * 288 * 64 * 3 + 2.0 * 1600 * 10 * 3)
    table.add("conv", f"epoch convnet {n} samples b{batch}", times, flops=flops,
              note="Conv(32)-Pool-Conv(64)-Pool-Dense(10), Adam; median of 3; "
                   f"numpy scaled from {ref_steps} steps")


def _peak_gflops():
    """The FMA peak of the runner's thread count, now (the machine's clock drifts)."""
    quiesce()
    return cnn_core.fma_peak(cnn_core.get_num_threads())


PEAK_LOOPS = {"avx512": "AVX-512 FMAs", "avx2": "AVX2 FMAs", "reference": "C multiply-adds"}


def bench_peak(table, quick):
    """The float32 FMA peak at 1 thread and at the runner's count: what "% of peak" means."""
    threads = cnn_core.get_num_threads() if cnn_core.has_openmp() else 1
    loop = PEAK_LOOPS[cnn_core.build_info()["cpu_kernels"][-1]]
    for n in sorted({1, threads}):
        quiesce()
        gflops = cnn_core.fma_peak(n)
        table.add("peak", f"FMA peak, {n} thread{'s' if n > 1 else ''}", {"pynn": None},
                  note=f"{gflops:.1f} GFLOP/s: {loop} only, best of 5 runs",
                  extra={"gflops": gflops})


def bench_scaling(table, quick):
    """Thread scaling of training, measured in one process: epochs of a 20,480-sample slice at
    1 thread and at the runner's thread count alternate (pynn, then PyTorch), and the speedup
    is the median over the pairs. Separate runs at different thread counts would compare
    different minutes of a shared machine."""
    threads = cnn_core.get_num_threads()
    if threads < 2:
        print("scaling   skipped: needs --threads >= 2", flush=True)
        return
    x, y = _synthetic_mnist(20480)
    pairs = 2 if quick else 5
    models = TRAIN_MODELS[:2] if quick else TRAIN_MODELS
    for name, hidden, batch in models:
        flops = _model_flops_per_sample(hidden) * x.shape[0]
        model = _pynn_model(hidden, "cnn_core")
        model.fit(x[:batch * 4], y[:batch * 4], batch_size=batch, epochs=1, verbose=0)
        runs = {"pynn": (lambda: model.fit(x, y, batch_size=batch, epochs=1, verbose=0),
                         cnn_core.set_num_threads, cnn_core.get_num_threads())}
        if torch is not None:
            tm = _torch_model(hidden)
            opt = torch.optim.Adam(tm.parameters(), lr=1e-3)
            xt, yt = torch.from_numpy(x), torch.from_numpy(y)
            _torch_epoch(tm, opt, xt, yt, batch, steps=4)
            runs["torch"] = (lambda: _torch_epoch(tm, opt, xt, yt, batch),
                             torch.set_num_threads, torch.get_num_threads())
        seconds = {(impl, n): [] for impl in runs for n in (1, threads)}
        try:
            for r in range(pairs):
                for impl, (epoch, set_threads, _) in runs.items():
                    for n in ((1, threads) if r % 2 == 0 else (threads, 1)):
                        set_threads(n)
                        quiesce()
                        t0 = time.perf_counter()
                        epoch()
                        seconds[impl, n].append(time.perf_counter() - t0)
        finally:
            for _, set_threads, before in runs.values():
                set_threads(before)
        speedup = {impl: float(np.median([a / b for a, b in zip(seconds[impl, 1],
                                                                seconds[impl, threads])]))
                   for impl in runs}
        times = {impl: float(np.median(seconds[impl, threads])) for impl in runs}
        one = float(np.median(seconds["pynn", 1]))
        note = (f"{threads} threads vs 1 ({one:.2f} s): pynn {speedup['pynn']:.2f}x"
                + (f", torch {speedup['torch']:.2f}x" if "torch" in speedup else "")
                + f"; median of {pairs} alternating pairs")
        table.add("scaling", f"{name} b{batch}, 20,480 samples", times, flops=flops,
                  note=note, extra={"speedup": speedup, "pynn_1_thread": one})


def bench_predict(table, quick):
    x, _ = _synthetic_mnist(10000)
    hidden = (128,)
    model = _pynn_model(hidden, "cnn_core")
    one = x[:1]
    fns = {"pynn": lambda: model.predict(one, verbose=0)}
    fns_tp = {"pynn": lambda: model.predict(x, batch_size=1000, verbose=0)}
    if torch is not None:
        tm = _torch_model(hidden).eval()
        one_t, xt = torch.from_numpy(one), torch.from_numpy(x)

        def torch_one():
            with torch.inference_mode():
                return torch.softmax(tm(one_t), dim=1).numpy()

        def torch_all():
            with torch.inference_mode():
                return torch.softmax(tm(xt), dim=1).numpy()

        fns["torch"], fns_tp["torch"] = torch_one, torch_all
    table.add("predict", "784-128-10 latency, 1 sample", _interleaved(fns))
    table.add("predict", "784-128-10 10,000 samples", _interleaved(fns_tp))


def _import_seconds(module):
    """Best of 5 wall times of a fresh interpreter importing ``module`` (startup included).

    Bytecode caching is left on (as after ``pip install``): the first, untimed import writes
    the caches that a user's imports would find."""
    import os
    import subprocess

    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    subprocess.run([sys.executable, "-c", f"import {module}"], check=True, env=env)
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", f"import {module}"], check=True, env=env)
        best = min(best, time.perf_counter() - t0)
    return best


def bench_startup(table, quick):
    base = _import_seconds("sys")  # the interpreter's own start, subtracted
    times = {"pynn": _import_seconds("pynn") - base, "numpy": _import_seconds("numpy") - base}
    if torch is not None:
        times["torch"] = _import_seconds("torch") - base
    table.add("startup", "import (numpy column: numpy alone)", times)


SECTIONS = {
    "peak": bench_peak,
    "startup": bench_startup,
    "gemm": bench_gemm,
    "dense": bench_dense,
    "loss": bench_losses,
    "optim": bench_optimizers,
    "train": bench_training,
    "conv": bench_conv,
    "predict": bench_predict,
    "scaling": bench_scaling,
}


def _cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main(argv=None):
    parser = argparse.ArgumentParser(prog="pynn bench", description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=cnn_core.get_num_threads(),
                        help="threads for pynn, NumPy's BLAS and PyTorch alike")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--quick", action="store_true", help="skip the largest cases")
    parser.add_argument("--only", default=",".join(SECTIONS),
                        help=f"comma-separated sections of {','.join(SECTIONS)}")
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error("--threads must be >= 1")
    sections = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = [s for s in sections if s not in SECTIONS]
    if unknown:
        parser.error(f"unknown section(s) {unknown}; choose from {list(SECTIONS)}")

    cnn_core.set_num_threads(args.threads)
    if torch is not None:
        torch.set_num_threads(args.threads)
    info = cnn_core.build_info()
    print(f"CPU: {_cpu_name()} ({os.cpu_count()} cores visible); threads: {args.threads}; "
          f"cnn_core kernel: {info['kernel']}, OpenMP: {info['openmp']}; numpy {np.__version__}; "
          f"torch {torch.__version__ if torch is not None else 'not installed'}")
    print("Times are medians on this machine; ratios > 1 mean pynn is faster.")
    table = Table()
    table.header()
    limits = threadpool_limits(limits=args.threads) if threadpool_limits else None
    try:
        for name in sections:
            SECTIONS[name](table, args.quick)
    finally:
        if limits is not None:
            limits.unregister()
    if args.json:
        payload = {"cpu": _cpu_name(), "threads": args.threads, "build_info": info,
                   "numpy": np.__version__,
                   "torch": torch.__version__ if torch is not None else None,
                   "rows": table.rows}
        # Written whole, then renamed: an interrupted run leaves no half-written file.
        tmp = f"{args.json}.tmp{os.getpid()}"
        with open(tmp, "w") as f:
            json.dump(payload, f, indent=2)
        os.replace(tmp, args.json)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
