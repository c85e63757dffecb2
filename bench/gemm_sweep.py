"""GEMM sweep against numpy.matmul: MLP shapes, their transposes, the backprop GEMMs, 1024^3.

    python bench/gemm_sweep.py --threads 1

Each case alternates pynn and NumPy for 15 rounds and keeps each one's best round: on a shared
machine the minimum is the least disturbed measurement, and alternating exposes both to the
same disturbances. With several threads each round starts after a pause (pynn.benchmark's
quiesce: the other library's idle threads spin for a while after each call). Prints GFLOP/s
and the ratio (> 1: pynn faster), then their geometric mean.
"""
import argparse
import time

import numpy as np

import cnn_core
from pynn.benchmark import quiesce

SHAPES = [(32, 784, 128), (64, 784, 128), (128, 784, 512), (256, 784, 256), (32, 784, 1024),
          (256, 1024, 1024), (1000, 784, 128), (1024, 1024, 1024)]
TRANSPOSES = [(False, False), (True, False), (False, True)]
# The backward GEMMs of a dense layer of batch b, n_in inputs, n_out units (forward b x n_in x
# n_out NN): dW = x^T dz is n_in x b x n_out TN, dx = dz W^T is b x n_out x n_in NT.
LAYERS = [(32, 784, 128), (128, 784, 512), (256, 784, 1024), (256, 1024, 1024)]
BACKPROP = [case for b, i, o in LAYERS for case in (((i, b, o), (True, False)),
                                                     ((b, o, i), (False, True)))]


def _timed(fn, inner):
    t0 = time.perf_counter()
    for _ in range(inner):
        fn()
    return (time.perf_counter() - t0) / inner


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--only", nargs="*", default=None, metavar="MxKxN",
                        help="run only these shapes (all their transposes)")
    args = parser.parse_args()
    from threadpoolctl import threadpool_limits

    cnn_core.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    ratios = []
    with threadpool_limits(args.threads):
        cases = [(shape, t) for shape in SHAPES for t in TRANSPOSES] + BACKPROP
        if args.only is not None:
            cases = [c for c in cases if "x".join(map(str, c[0])) in args.only]
        for (m, k, n), (ta, tb) in cases:
            a = rng.standard_normal((k, m) if ta else (m, k), dtype=np.float32)
            b = rng.standard_normal((n, k) if tb else (k, n), dtype=np.float32)
            opa, opb = (a.T if ta else a), (b.T if tb else b)
            out = np.empty((m, n), np.float32)
            flops = 2.0 * m * n * k
            inner = max(1, int(2e8 / flops))
            ours = lambda: cnn_core.gemm(a, b, trans_a=ta, trans_b=tb, out=out)  # noqa: E731
            theirs = lambda: np.matmul(opa, opb, out=out)  # noqa: E731
            ours(), theirs()
            t_ours, t_theirs = [], []
            for _ in range(args.rounds):
                for fn, times in ((ours, t_ours), (theirs, t_theirs)):
                    quiesce()
                    fn()
                    times.append(_timed(fn, inner))
            t1, t2 = min(t_ours), min(t_theirs)
            ratios.append(t2 / t1)
            name = f"{m}x{k}x{n} {'T' if ta else 'N'}{'T' if tb else 'N'}"
            print(f"{name:18s} pynn {flops / t1 / 1e9:6.1f} GF/s   numpy "
                  f"{flops / t2 / 1e9:6.1f} GF/s   ratio {t2 / t1:.2f}", flush=True)
    print(f"geometric mean of the ratios: {np.exp(np.mean(np.log(ratios))):.2f}")


if __name__ == "__main__":
    main()
