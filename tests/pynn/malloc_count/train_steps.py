"""Run under LD_PRELOAD=count_malloc.so: prints the allocations counted for one deliberate
malloc, then how many C allocations one call of the compiled trainer made for a short and a
long run of steps (see test_fast_path.py)."""
import ctypes
import json
import sys

import numpy as np

import cnn_core
import pynn
from pynn import layers
from pynn.models.fast_path import FastFit

counter = ctypes.CDLL(sys.argv[1])
counter.malloc_count.restype = ctypes.c_long
cnn_core.set_num_threads(int(sys.argv[2]))
loss, optimizer = sys.argv[3], json.loads(sys.argv[4])
dropout = float(sys.argv[5]) if len(sys.argv) > 5 else 0.0
rng = np.random.default_rng(0)
batch, long_steps = 32, 1010
x = rng.standard_normal((batch * long_steps, 20)).astype(np.float32)
if loss == "sparse_categorical_crossentropy":
    y = rng.integers(0, 4, len(x)).astype(np.int64)
else:
    y = rng.standard_normal((len(x), 4)).astype(np.float32)
pynn.utils.set_random_seed(0)
model = pynn.Sequential([layers.Input(shape=(20,)), layers.Dense(64, activation="relu")]
                        + ([layers.Dropout(dropout)] if dropout else [])
                        + [layers.Dense(4, activation="softmax" if "entropy" in loss else None)])
model.compile(optimizer=optimizer, loss=loss)
model.fit(x[:batch * 4], y[:batch * 4], batch_size=batch, epochs=1, verbose=0)
xs, ys = model._prepare_x(x), model._prepare_y(y, len(x))
fast = FastFit.prepare(model, xs, ys, batch)
generators = [None, pynn.utils.random.get_rng()] if dropout else None
order = np.arange(len(x), dtype=np.int64)
lrs = np.full(long_steps, 1e-3)
fast.trainer.run(xs, ys, order, 0, long_steps, lrs, 1, generators)  # workspaces reach their size
# The shim must see allocations at all, or zero below would prove nothing: one malloc made
# on purpose through the process's own symbol has to be counted.
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
before = counter.malloc_count()
libc.free(libc.malloc(64))
seen = counter.malloc_count() - before
counts = []
for steps in (10, long_steps):
    step_lrs = lrs[:steps].copy()
    before = counter.malloc_count()
    fast.trainer.run(xs, ys, order, 0, steps, step_lrs, 1, generators)
    counts.append(counter.malloc_count() - before)
print(seen, *counts)
