"""Compiled training loop for chains of dense layers (the fit fast path).

``DenseChainTrainer.run`` executes whole training steps (gather the shuffled batch, forward,
fused loss, backward, regularisation, clipping, optimizer update) without returning to Python
and without allocating: every buffer is sized for the batch once, at construction. It calls
the same kernels as the per-layer path (gemm_raw with the dense epilogue, dense_backward_raw,
the loss and optimizer kernels), so both paths compute the same numbers.

Dropout in front of a dense layer (on its input) is applied in the step too: its mask comes from
the layer's own numpy Generator, read through the bit generator's C interface exactly as
``Generator.random(dtype=float32)`` reads it, so the compiled and the Python loops draw the same
numbers in the same order and train to the same bits.

float32 only: it is the training dtype; float64 models (gradient checks) take the Python path.
"""
import contextlib

import numpy as np
cimport numpy as cnp
from cython.parallel cimport prange
from libc.stdlib cimport calloc, free, malloc
from libc.string cimport memcpy
from libc.math cimport sqrt, fabs, pow, isfinite, NAN
from libc.stdint cimport int64_t
from cpython.pycapsule cimport PyCapsule_GetPointer
from numpy.random cimport bitgen_t

from cnn_core._typedefs cimport intp_t
from cnn_core._threads cimport get_num_threads_c, threads_for_elements
from cnn_core._gemm cimport gemm_raw, gemm_flag_nonfinite_raw
from cnn_core._dense cimport dense_backward_raw
from cnn_core._losses cimport (softmax_ce_sparse_raw, softmax_ce_raw, mse_raw, mae_raw,
                               bce_logits_raw, elementwise_loss_partials)
from cnn_core._optim cimport sgd_raw, adam_raw, rmsprop_raw, adagrad_raw
from cnn_core._reductions cimport sum_of_squares_raw, sum_of_squares_partials
from cnn_core._activations cimport softmax_rows, activation_apply
from cnn_core import _checks

cnp.import_array()

# Loss kinds understood by the trainer (the model maps its Loss object to one of these).
LOSS_KINDS = {
    "sparse_softmax_ce": 0,   # logits + integer labels (softmax output fused)
    "softmax_ce": 1,          # logits + probability / one-hot targets (softmax fused)
    "mse": 2,
    "mae": 3,
    "sigmoid_bce": 4,         # logits + 0/1 targets (sigmoid output fused)
}
OPTIMIZER_KINDS = {"sgd": 0, "adam": 1, "rmsprop": 2, "adagrad": 3}

cdef enum:
    # Ids of include/activation_math.h that the trainer treats specially.
    ACT_IDENTITY = 0
    ACT_LEAKY_RELU = 2
    ACT_ELU = 3
    ACT_SIGMOID = 4
    ACT_SOFTPLUS = 6
    ACT_GELU = 7


cdef void gather_rows(const float *x, const int64_t *order, float *dst, intp_t rows,
                      intp_t cols, int num_threads) noexcept nogil:
    """dst[i, :] = x[order[i], :]: the shuffled batch, copied into the reused batch buffer."""
    cdef intp_t i
    if num_threads > 1:
        for i in prange(rows, schedule='static', num_threads=num_threads):
            memcpy(dst + i * cols, x + order[i] * cols, cols * sizeof(float))
    else:  # no region: libgomp allocates a team even for one thread
        for i in range(rows):
            memcpy(dst + i * cols, x + order[i] * cols, cols * sizeof(float))


cdef extern from *:
    """
    /* Fetches rows idx[0..rows) of x (cols floats each) toward the caches, a line at a time:
     * the next batch's rows, gathered from random places of a large array, arrive while the
     * current step computes instead of stalling the next step's copy. */
    static inline void cnn_prefetch_rows_f32(const float *x, const int64_t *idx, int64_t rows,
                                             int64_t cols) {
        for (int64_t i = 0; i < rows; i++) {
            const char *row = (const char *)(x + idx[i] * cols);
            for (int64_t b = 0; b < cols * (int64_t)sizeof(float); b += 64)
                __builtin_prefetch(row + b, 0, 2);
        }
    }
    """
    void cnn_prefetch_rows_f32(const float *x, const int64_t *idx, int64_t rows,
                               int64_t cols) noexcept nogil


cdef void dropout_forward(const float *x, float *mask, float *out, intp_t n, float rate,
                          float scale, bitgen_t *rng) noexcept nogil:
    """mask[j] = scale if u_j >= rate else 0; out[j] = x[j] * mask[j], for n elements.

    u_j is the next float of ``rng``, produced as numpy's Generator.random(dtype=float32) does
    (the top 24 bits of next_uint32, times 2**-24), so the Python layer (pynn.layers.Dropout)
    would draw the same mask. rng NULL: rate >= 1, every unit is dropped and nothing is drawn.
    Serial on purpose: the stream has one order.
    """
    cdef intp_t j
    cdef float u, m
    if rng == NULL:
        for j in range(n):
            mask[j] = 0
            out[j] = x[j] * <float>0
        return
    for j in range(n):
        u = <float>(rng.next_uint32(rng.state) >> 8) * <float>(1.0 / 16777216.0)
        m = <float>(u >= rate) * scale  # no branch: it would mispredict at random
        mask[j] = m
        out[j] = x[j] * m


cdef void multiply_in_place(float *x, const float *y, intp_t n, int num_threads) noexcept nogil:
    """x[j] *= y[j]: the dropout mask applied to dL/d(its output)."""
    cdef intp_t j
    if num_threads > 1:
        for j in prange(n, schedule='static', num_threads=num_threads):
            x[j] = x[j] * y[j]
    else:
        for j in range(n):
            x[j] = x[j] * y[j]


cdef inline intp_t argmax_row(const float *row, intp_t n) noexcept nogil:
    # First maximum wins, as numpy.argmax.
    cdef intp_t j, best = 0
    for j in range(1, n):
        if row[j] > row[best]:
            best = j
    return best


cdef class DenseChainTrainer:
    """Whole training steps of ``Dense -> Dense -> ...`` in compiled code.

    Built once per ``fit`` from the model's arrays (weights, gradients and optimizer slots are
    shared with the Python objects, so both always see the same state). All batch-sized
    buffers are allocated here, once.

    layers: list of dicts with ``kernel`` (in, units) and ``bias`` (units,) or None (float32
      C-contiguous arrays updated in place), ``activation`` (name), ``param`` (float),
      ``kernel_l1``/``kernel_l2``/``bias_l1``/``bias_l2`` (regularisation factors), and
      optionally ``dropout``: the rate of a Dropout applied to the layer's input while training
      (0 or absent: none; >= 1: all dropped). ``run`` then needs the Generator of each.
    loss: a key of LOSS_KINDS. The last layer's activation must be the one the loss fuses
      (softmax for the cross-entropies, sigmoid for sigmoid_bce, any elementwise for mse/mae).
    optimizer: dict with ``kind`` (OPTIMIZER_KINDS key), its hyper-parameters, ``slots``
      (per trainable array, in [kernel, bias] layer order: the list of its slot arrays),
      ``decay`` (per trainable array: weight decay applies) and clipping settings.
    """
    cdef int n_layers, n_params, loss_kind, opt_kind, n_outputs
    cdef intp_t batch_size, n_features
    cdef list _keep
    cdef float **kernel
    cdef float **bias
    cdef float **grad_kernel
    cdef float **grad_bias
    cdef float **z
    cdef float **a
    cdef float **da
    cdef intp_t *fan_in
    cdef intp_t *units
    cdef int *act
    cdef float *act_param
    cdef float *drop_rate      # per layer: dropout rate on its input (0: no dropout)
    cdef float *drop_scale     # per layer: 1 / (1 - rate), the kept units' factor
    cdef int *drop_draws       # per layer: 1 when the mask is drawn (0 < rate < 1)
    cdef float **drop_mask     # per layer: (batch, fan_in) mask of the current step, or NULL
    cdef float **dropped       # per layer: (batch, fan_in) input after dropout, or NULL
    cdef bitgen_t **drop_rng   # per layer: the bit generator of this run() call
    cdef bint has_dropout
    cdef float *x_batch
    cdef int64_t *labels_batch
    cdef float *targets_batch
    cdef float **param
    cdef float **grad
    cdef float **slot0
    cdef float **slot1
    cdef float **slot2
    cdef intp_t *param_size
    cdef double *partials  # the loss's and the clipping norms' partial sums: no malloc a step
    cdef int *param_decay
    cdef double *param_l1
    cdef double *param_l2
    cdef double momentum, beta_1, beta_2, epsilon, rho, weight_decay
    cdef bint nesterov, centered
    cdef double clipnorm, clipvalue, global_clipnorm

    def __cinit__(self):
        self.n_layers = 0
        self.n_params = 0

    def __dealloc__(self):
        free(self.kernel); free(self.bias); free(self.grad_kernel); free(self.grad_bias)
        free(self.z); free(self.a); free(self.da); free(self.fan_in); free(self.units)
        free(self.act); free(self.act_param); free(self.param); free(self.grad)
        free(self.drop_rate); free(self.drop_scale); free(self.drop_draws)
        free(self.drop_mask); free(self.dropped); free(self.drop_rng)
        free(self.slot0); free(self.slot1); free(self.slot2); free(self.param_size)
        free(self.param_decay); free(self.param_l1); free(self.param_l2); free(self.partials)

    def __init__(self, list layers, str loss, dict optimizer, intp_t batch_size):
        cdef int i, n = len(layers)
        if n == 0:
            raise ValueError("DenseChainTrainer needs at least one dense layer")
        if loss not in LOSS_KINDS:
            raise ValueError(f"unsupported loss {loss!r}; expected one of {sorted(LOSS_KINDS)}")
        if optimizer["kind"] not in OPTIMIZER_KINDS:
            raise ValueError(f"unsupported optimizer {optimizer['kind']!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.n_layers = n
        self.batch_size = batch_size
        self.loss_kind = LOSS_KINDS[loss]
        self.opt_kind = OPTIMIZER_KINDS[optimizer["kind"]]
        self._keep = []
        self.kernel = <float **>calloc(n, sizeof(float *))
        self.bias = <float **>calloc(n, sizeof(float *))
        self.grad_kernel = <float **>calloc(n, sizeof(float *))
        self.grad_bias = <float **>calloc(n, sizeof(float *))
        self.z = <float **>calloc(n, sizeof(float *))
        self.a = <float **>calloc(n, sizeof(float *))
        self.da = <float **>calloc(n, sizeof(float *))
        self.fan_in = <intp_t *>calloc(n, sizeof(intp_t))
        self.units = <intp_t *>calloc(n, sizeof(intp_t))
        self.act = <int *>calloc(n, sizeof(int))
        self.act_param = <float *>calloc(n, sizeof(float))
        self.drop_rate = <float *>calloc(n, sizeof(float))
        self.drop_scale = <float *>calloc(n, sizeof(float))
        self.drop_draws = <int *>calloc(n, sizeof(int))
        self.drop_mask = <float **>calloc(n, sizeof(float *))
        self.dropped = <float **>calloc(n, sizeof(float *))
        self.drop_rng = <bitgen_t **>calloc(n, sizeof(bitgen_t *))
        n_params = sum(2 if layer["bias"] is not None else 1 for layer in layers)
        self.n_params = n_params
        self.param = <float **>calloc(n_params, sizeof(float *))
        self.grad = <float **>calloc(n_params, sizeof(float *))
        self.slot0 = <float **>calloc(n_params, sizeof(float *))
        self.slot1 = <float **>calloc(n_params, sizeof(float *))
        self.slot2 = <float **>calloc(n_params, sizeof(float *))
        self.param_size = <intp_t *>calloc(n_params, sizeof(intp_t))
        self.param_decay = <int *>calloc(n_params, sizeof(int))
        self.param_l1 = <double *>calloc(n_params, sizeof(double))
        self.param_l2 = <double *>calloc(n_params, sizeof(double))
        if (self.kernel == NULL or self.bias == NULL or self.grad_kernel == NULL
                or self.grad_bias == NULL or self.z == NULL or self.a == NULL or self.da == NULL
                or self.fan_in == NULL or self.units == NULL or self.act == NULL
                or self.act_param == NULL or self.drop_rate == NULL or self.drop_scale == NULL
                or self.drop_draws == NULL or self.drop_mask == NULL
                or self.dropped == NULL or self.drop_rng == NULL or self.param == NULL
                or self.grad == NULL
                or self.slot0 == NULL or self.slot1 == NULL or self.slot2 == NULL
                or self.param_size == NULL or self.param_decay == NULL
                or self.param_l1 == NULL or self.param_l2 == NULL):
            raise MemoryError()

        slots = optimizer.get("slots", [])
        decay = optimizer.get("decay", [])
        if len(slots) != n_params or len(decay) != n_params:
            raise ValueError(f"optimizer slots/decay describe {len(slots)}/{len(decay)} arrays, "
                             f"the layers have {n_params}")
        cdef int p = 0
        prev_units = None
        for i, layer in enumerate(layers):
            w = self._hold(layer["kernel"], f"layer {i} kernel", 2)
            fan_in, units = w.shape
            if prev_units is not None and fan_in != prev_units:
                raise ValueError(f"layer {i} takes {fan_in} inputs but layer {i - 1} gives "
                                 f"{prev_units}")
            prev_units = units
            self.kernel[i] = <float *>cnp.PyArray_DATA(w)
            self.fan_in[i] = fan_in
            self.units[i] = units
            name, act_id, act_param = _checks.resolve_activation(layer["activation"],
                                                                 layer.get("param"))
            last = i == n - 1
            if last:
                act_id = self._check_output_activation(name, act_id)
            elif name in _checks.ROW_WISE_ACTIVATIONS:
                raise ValueError("softmax inside the chain is not supported by the fast path")
            self.act[i] = act_id
            self.act_param[i] = act_param
            rate = float(layer.get("dropout") or 0.0)
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"layer {i} dropout rate must be in [0, 1], got {rate}")
            if rate > 0:
                # As pynn.layers.Dropout: u >= rate compares in float32 (NumPy casts the Python
                # float to the array's dtype), the scale is rounded from double, and a rate of
                # 1 drops everything without drawing.
                self.has_dropout = True
                self.drop_rate[i] = <float>rate
                self.drop_draws[i] = rate < 1.0
                self.drop_scale[i] = <float>(1.0 / (1.0 - rate)) if rate < 1.0 else 0.0
                mask = np.empty((batch_size, fan_in), np.float32)
                dropped = np.empty((batch_size, fan_in), np.float32)
                self._keep += [mask, dropped]
                self.drop_mask[i] = <float *>cnp.PyArray_DATA(mask)
                self.dropped[i] = <float *>cnp.PyArray_DATA(dropped)
            a = np.empty((batch_size, units), np.float32)
            da = np.empty((batch_size, units), np.float32)
            self._keep += [a, da]
            self.a[i] = <float *>cnp.PyArray_DATA(a)
            self.da[i] = <float *>cnp.PyArray_DATA(da)
            if act_id in (ACT_GELU, ACT_SOFTPLUS) or (
                    act_id in (ACT_LEAKY_RELU, ACT_ELU) and act_param <= 0):
                # Their derivative needs z; the others' comes from a (z > 0 <=> a > 0).
                zbuf = np.empty((batch_size, units), np.float32)
                self._keep.append(zbuf)
                self.z[i] = <float *>cnp.PyArray_DATA(zbuf)
            else:
                self.z[i] = self.a[i]
            gw = np.empty_like(w)
            self._keep.append(gw)
            self.grad_kernel[i] = <float *>cnp.PyArray_DATA(gw)
            self._add_param(p, w, gw, slots[p], decay[p], layer.get("kernel_l1", 0.0),
                            layer.get("kernel_l2", 0.0))
            p += 1
            if layer["bias"] is not None:
                b = self._hold(layer["bias"], f"layer {i} bias", 1)
                if b.shape[0] != units:
                    raise ValueError(f"layer {i} bias has shape {b.shape}, expected ({units},)")
                gb = np.empty_like(b)
                self._keep.append(gb)
                self.bias[i] = <float *>cnp.PyArray_DATA(b)
                self.grad_bias[i] = <float *>cnp.PyArray_DATA(gb)
                self._add_param(p, b, gb, slots[p], decay[p], layer.get("bias_l1", 0.0),
                                layer.get("bias_l2", 0.0))
                p += 1
            else:
                # dense_backward_raw always writes db: give it scratch space.
                gb = np.empty(units, np.float32)
                self._keep.append(gb)
                self.grad_bias[i] = <float *>cnp.PyArray_DATA(gb)
        self.n_features = self.fan_in[0]
        # Room for the partial sums of the loss (a row or a chunk each) and of the clipping
        # norms (a chunk each), so the kernels need not allocate any in a step.
        cdef intp_t n_partials = max(batch_size,
                                     elementwise_loss_partials(batch_size * self.units[n - 1]))
        for q in range(n_params):
            n_partials = max(n_partials, sum_of_squares_partials(self.param_size[q]))
        self.partials = <double *>malloc(n_partials * sizeof(double))
        if self.partials == NULL:
            raise MemoryError()
        self.n_outputs = self.units[n - 1]
        xb = np.empty((batch_size, self.n_features), np.float32)
        lb = np.empty(batch_size, np.int64)
        tb = np.empty((batch_size, self.n_outputs), np.float32)
        self._keep += [xb, lb, tb]
        self.x_batch = <float *>cnp.PyArray_DATA(xb)
        self.labels_batch = <int64_t *>cnp.PyArray_DATA(lb)
        self.targets_batch = <float *>cnp.PyArray_DATA(tb)

        self.momentum = optimizer.get("momentum", 0.0)
        self.nesterov = optimizer.get("nesterov", False)
        self.beta_1 = optimizer.get("beta_1", 0.9)
        self.beta_2 = optimizer.get("beta_2", 0.999)
        self.epsilon = optimizer.get("epsilon", 1e-7)
        self.rho = optimizer.get("rho", 0.9)
        self.centered = optimizer.get("centered", False)
        self.weight_decay = optimizer.get("weight_decay") or 0.0
        self.clipnorm = optimizer.get("clipnorm") or 0.0
        self.clipvalue = optimizer.get("clipvalue") or 0.0
        self.global_clipnorm = optimizer.get("global_clipnorm") or 0.0

    def _hold(self, arr, name, ndim):
        if (not isinstance(arr, np.ndarray) or arr.dtype != np.float32 or arr.ndim != ndim
                or not arr.flags.c_contiguous or not arr.flags.writeable):
            raise ValueError(f"{name} must be a writable C-contiguous float32 {ndim}-D array")
        self._keep.append(arr)
        return arr

    def _check_output_activation(self, name, act_id):
        fused = {0: "softmax", 1: "softmax", 4: "sigmoid"}.get(self.loss_kind)
        if fused is not None:
            if name != fused:
                raise ValueError(f"the loss fuses with a final {fused}, got {name}")
            return ACT_IDENTITY  # the layer computes logits; the loss kernel applies f
        if name in _checks.ROW_WISE_ACTIVATIONS:
            raise ValueError(f"a final {name} is fused only with cross-entropy")
        return act_id

    def _add_param(self, int p, arr, grad_arr, slots, decay, l1, l2):
        needed = {0: 1 if self.momentum != 0 else 0, 1: 2, 2: 1, 3: 1}[self.opt_kind]
        if self.opt_kind == 2:
            needed = 1 + (1 if self.momentum > 0 else 0) + (1 if self.centered else 0)
        slots = list(slots)
        if len(slots) < needed:
            raise ValueError(f"parameter {p} has {len(slots)} optimizer slots, needs {needed}")
        for k, s in enumerate(slots[:3]):
            s = self._hold(s, f"slot {k} of parameter {p}", arr.ndim)
            if s.shape != arr.shape:
                raise ValueError(f"slot {k} of parameter {p} has shape {s.shape}, "
                                 f"expected {arr.shape}")
            if k == 0:
                self.slot0[p] = <float *>cnp.PyArray_DATA(s)
            elif k == 1:
                self.slot1[p] = <float *>cnp.PyArray_DATA(s)
            else:
                self.slot2[p] = <float *>cnp.PyArray_DATA(s)
        self.param[p] = <float *>cnp.PyArray_DATA(arr)
        self.grad[p] = <float *>cnp.PyArray_DATA(grad_arr)
        self.param_size[p] = arr.size
        self.param_decay[p] = 1 if decay else 0
        self.param_l1[p] = l1 or 0.0
        self.param_l2[p] = l2 or 0.0

    def run(self, x, y, cnp.ndarray order, intp_t start, intp_t n_steps, lrs, intp_t first_step,
            generators=None):
        """Train ``n_steps`` batches: rows ``order[start + s*batch : ...]`` of x and y.

        x: (n, features) float32 C-contiguous; y: (n,) int64 labels (sparse CE) or
        (n, outputs) float32 targets; order: (n,) int64 permutation; lrs: (n_steps,) float64
        learning rate of each step; first_step: optimizer iterations before the first step;
        generators: per layer, the numpy Generator its input dropout draws from (None where
        it has none; needed when a layer has one). The generators' locks are held meanwhile.
        Returns (sum of batch losses weighted by batch size, correct predictions, compared
        predictions, samples seen).
        """
        with contextlib.ExitStack() as locks:
            try:
                self._bind_generators(generators, locks)
                return self._run(x, y, order, start, n_steps, lrs, first_step)
            finally:
                for i in range(self.n_layers):
                    self.drop_rng[i] = NULL

    def _bind_generators(self, generators, locks):
        cdef int i
        if not self.has_dropout:
            return
        if generators is None or len(generators) != self.n_layers:
            raise ValueError(f"this chain has dropout: run needs one generator (or None) per "
                             f"layer, {self.n_layers} in all")
        held = set()
        for i in range(self.n_layers):
            if not self.drop_draws[i]:
                continue
            rng = generators[i]
            if not isinstance(rng, np.random.Generator):
                raise TypeError(f"layer {i}'s dropout needs a numpy.random.Generator, "
                                f"got {type(rng).__name__}")
            bit_generator = rng.bit_generator
            if id(bit_generator) not in held:
                held.add(id(bit_generator))
                locks.enter_context(bit_generator.lock)
            self.drop_rng[i] = <bitgen_t *>PyCapsule_GetPointer(bit_generator.capsule,
                                                                 "BitGenerator")

    def _run(self, x, y, cnp.ndarray order, intp_t start, intp_t n_steps, lrs,
             intp_t first_step):
        cdef intp_t n = x.shape[0]
        if x.dtype != np.float32 or not x.flags.c_contiguous or x.ndim != 2:
            raise ValueError("x must be a C-contiguous float32 2-D array")
        if x.shape[1] != self.n_features:
            raise ValueError(f"x has {x.shape[1]} features, the model expects {self.n_features}")
        if self.loss_kind == 0:
            if y.dtype != np.int64 or y.ndim != 1 or not y.flags.c_contiguous:
                raise ValueError("labels must be a C-contiguous int64 1-D array")
        elif (y.dtype != np.float32 or y.ndim != 2 or not y.flags.c_contiguous
                or y.shape[1] != self.n_outputs):
            raise ValueError(f"targets must be C-contiguous float32 (n, {self.n_outputs})")
        if y.shape[0] != n or order.shape[0] != n or order.dtype != np.int64:
            raise ValueError("x, y and order must have the same length (order int64)")
        lrs = np.ascontiguousarray(lrs, dtype=np.float64)
        if lrs.shape[0] < n_steps:
            raise ValueError("one learning rate per step is needed")
        cdef const float *xp = <const float *>cnp.PyArray_DATA(x)
        cdef const void *yp = cnp.PyArray_DATA(y)
        cdef const int64_t *op = <const int64_t *>cnp.PyArray_DATA(order)
        cdef const double *lp = <const double *>cnp.PyArray_DATA(lrs)
        cdef double loss_sum = 0, step_loss
        cdef intp_t correct = 0, compared = 0, seen = 0, s, rows, row0, next_rows
        cdef int status = 0
        with nogil:
            for s in range(n_steps):
                row0 = start + s * self.batch_size
                if row0 >= n:
                    break
                rows = min(self.batch_size, n - row0)
                next_rows = min(self.batch_size, n - row0 - rows)
                status = self._step(xp, yp, op + row0, rows, op + row0 + rows,
                                    next_rows if next_rows > 0 else 0, lp[s],
                                    first_step + s + 1, &step_loss, &correct, &compared)
                if status != 0:
                    break
                loss_sum += step_loss * rows
                seen += rows
        if status != 0:
            raise MemoryError("could not allocate the GEMM workspace")
        return loss_sum, correct, compared, seen

    cdef int _step(self, const float *x, const void *y, const int64_t *idx, intp_t rows,
                   const int64_t *next_idx, intp_t next_rows, double lr, intp_t step,
                   double *loss_out, intp_t *correct, intp_t *compared) noexcept nogil:
        """One training step on the rows idx[0..rows) (see run); the rows next_idx[0..next_rows)
        of the step after are prefetched."""
        cdef int nt = get_num_threads_c()
        cdef int i, status, layer_act, below_act, last = self.n_layers - 1
        cdef intp_t r, j, outs = self.n_outputs
        cdef const int64_t *labels = <const int64_t *>y
        cdef const float *targets = <const float *>y
        cdef float *out
        cdef double loss = 0
        cdef bint fused = self.loss_kind == 0 or self.loss_kind == 1 or self.loss_kind == 4

        # 1. The shuffled batch, gathered into the reused buffers.
        gather_rows(x, idx, self.x_batch, rows, self.n_features,
                    threads_for_elements(rows * self.n_features))
        if self.loss_kind == 0:
            for r in range(rows):
                self.labels_batch[r] = labels[idx[r]]
        else:
            gather_rows(targets, idx, self.targets_batch, rows, outs,
                        threads_for_elements(rows * outs))

        # 2. Forward: one GEMM per layer, bias and activation in its epilogue.
        status = self._forward(self.x_batch, rows, nt, True, NULL)
        if status != 0:
            return status

        cnn_prefetch_rows_f32(x, next_idx, next_rows, self.n_features)

        # 3. Loss and its gradient, from the logits when the output activation is fused.
        out = self.a[last]
        if self.loss_kind == 0:
            loss = softmax_ce_sparse_raw[float](out, self.labels_batch, self.da[last], rows,
                                                outs, nt, self.partials)
        elif self.loss_kind == 1:
            loss = softmax_ce_raw[float](out, self.targets_batch, self.da[last], rows, outs, nt,
                                         self.partials)
        elif self.loss_kind == 2:
            loss = mse_raw[float](out, self.targets_batch, self.da[last], rows * outs, nt,
                                  self.partials)
        elif self.loss_kind == 3:
            loss = mae_raw[float](out, self.targets_batch, self.da[last], rows * outs, nt,
                                  self.partials)
        else:
            loss = bce_logits_raw[float](out, self.targets_batch, self.da[last], rows * outs,
                                         nt, self.partials)
        self._count_correct(out, rows, correct, compared)
        loss += self._regularization_penalty()
        loss_out[0] = loss

        # 4. Backward, last layer first; dz overwrites dL/da in place. Each layer's dx GEMM
        # also applies the derivative of the activation below in its write-back, so the
        # layer below starts from dz (only the last one's dz comes from the loss). With a
        # dropout in between, the dx GEMM gives dL/d(dropout output); the mask turns it into
        # dL/da of the layer below, which then applies its own derivative.
        for i in range(last, -1, -1):
            layer_act = self.act[i] if ((i == last and not fused) or
                                        (i < last and self.drop_mask[i + 1] != NULL)) else -1
            below_act = self.act[i - 1] if i > 0 and self.drop_mask[i] == NULL else -1
            status = dense_backward_raw[float](
                self._layer_input(i), self.fan_in[i], 1,
                self.kernel[i], self.units[i], 1, self.z[i], self.a[i], self.da[i], self.da[i],
                self.grad_kernel[i], self.grad_bias[i], self.da[i - 1] if i > 0 else NULL,
                rows, self.fan_in[i], self.units[i], layer_act, self.act_param[i], nt,
                below_act, self.z[i - 1] if i > 0 else NULL,
                self.a[i - 1] if i > 0 else NULL, self.act_param[i - 1] if i > 0 else 0)
            if status != 0:
                return status
            if i > 0 and self.drop_mask[i] != NULL:
                multiply_in_place(self.da[i - 1], self.drop_mask[i], rows * self.fan_in[i],
                                  threads_for_elements(rows * self.fan_in[i]))

        # 5. Regularisation gradients, clipping, then one update pass per parameter.
        self._add_regularization_gradients()
        self._clip_gradients()
        self._update(lr, step)
        return 0

    cdef inline const float *_layer_input(self, int i) noexcept nogil:
        """What layer i multiplied in the forward pass of this step: (rows, fan_in[i])."""
        if self.drop_mask[i] != NULL:
            return self.dropped[i]
        return self.x_batch if i == 0 else self.a[i - 1]

    cdef int _forward(self, const float *x, intp_t rows, int nt, bint training,
                      int *x_nonfinite) noexcept nogil:
        """a[i] = f(a[i-1] W_i + b_i) for every layer (the last one's output: logits when the
        loss fuses its activation). x: (rows, features) contiguous. Training: each layer's
        input dropout is applied first (dropped[i] = input * mask[i]). x_nonfinite (or NULL):
        set to 1 when a first-layer pre-activation is not finite, as it is for every row of x
        holding a NaN or inf (gemm_flag_nonfinite_raw)."""
        cdef int i, status
        cdef const float *inp = x
        for i in range(self.n_layers):
            if training and self.drop_mask[i] != NULL:
                dropout_forward(inp, self.drop_mask[i], self.dropped[i], rows * self.fan_in[i],
                                self.drop_rate[i], self.drop_scale[i], self.drop_rng[i])
                inp = self.dropped[i]
            status = gemm_flag_nonfinite_raw[float](
                rows, self.units[i], self.fan_in[i], 1.0, inp, self.fan_in[i], 1, self.kernel[i],
                self.units[i], 1, 0.0, self.a[i], self.units[i], 1, self.bias[i],
                self.z[i] if self.z[i] != self.a[i] else NULL, self.units[i], self.act[i],
                self.act_param[i], x_nonfinite if i == 0 else NULL, nt)
            if status != 0:
                return status
            inp = self.a[i]
        return 0

    def predict(self, x, out, bint prove_finite=True):
        """out = model(x) in batches of batch_size, without Python per layer.

        x: (n, features) float32 C-contiguous; out: (n, outputs) float32 C-contiguous. The
        output activation the loss fuses (softmax / sigmoid) is applied here.

        prove_finite: x is shown free of NaN and inf on the way, without a pass of its own:
        a NaN or inf in a row makes all of that row's first-layer pre-activations non-finite.
        Returns False, out unfinished, at the first batch where one is not finite (x holds a
        NaN or inf, or the first layer overflowed: the caller checks x, and calls again with
        prove_finite=False if x is finite); True when out is complete.
        """
        if x.dtype != np.float32 or not x.flags.c_contiguous or x.ndim != 2:
            raise ValueError("x must be a C-contiguous float32 2-D array")
        if x.shape[1] != self.n_features:
            raise ValueError(f"x has {x.shape[1]} features, the model expects {self.n_features}")
        _checks.check_out(out, "out", (x.shape[0], self.n_outputs), np.float32)
        cdef intp_t n = x.shape[0], outs = self.n_outputs, row0, rows
        cdef const float *xp = <const float *>cnp.PyArray_DATA(x)
        cdef float *op = <float *>cnp.PyArray_DATA(out)
        cdef float *dst
        cdef int status = 0, nt = get_num_threads_c(), nonfinite = 0
        with nogil:
            row0 = 0
            while row0 < n:
                rows = min(self.batch_size, n - row0)
                status = self._forward(xp + row0 * self.n_features, rows, nt, False,
                                       &nonfinite if prove_finite else NULL)
                if status != 0 or nonfinite:
                    break
                dst = op + row0 * outs
                memcpy(dst, self.a[self.n_layers - 1], rows * outs * sizeof(float))
                if self.loss_kind == 0 or self.loss_kind == 1:
                    softmax_rows[float](dst, dst, rows, outs, threads_for_elements(rows * outs))
                elif self.loss_kind == 4:
                    activation_apply[float](dst, dst, rows * outs, ACT_SIGMOID, 0.0,
                                            threads_for_elements(rows * outs))
                row0 += rows
        if status != 0:
            raise MemoryError("could not allocate the GEMM workspace")
        return not nonfinite

    cdef void _count_correct(self, const float *out, intp_t rows, intp_t *correct,
                             intp_t *compared) noexcept nogil:
        cdef intp_t r, j, outs = self.n_outputs
        cdef const float *t
        if self.loss_kind == 0:
            for r in range(rows):
                correct[0] += argmax_row(out + r * outs, outs) == self.labels_batch[r]
            compared[0] += rows
        elif self.loss_kind == 1:
            for r in range(rows):
                correct[0] += (argmax_row(out + r * outs, outs)
                               == argmax_row(self.targets_batch + r * outs, outs))
            compared[0] += rows
        elif self.loss_kind == 4:
            # Keras binary_accuracy: (sigmoid(z) > 0.5) == t, i.e. (z > 0) == t.
            t = self.targets_batch
            for j in range(rows * outs):
                correct[0] += (1.0 if out[j] > 0 else 0.0) == t[j]
            compared[0] += rows * outs

    cdef double _regularization_penalty(self) noexcept nogil:
        cdef double penalty = 0, s1, s2
        cdef intp_t p, j
        cdef const float *w
        for p in range(self.n_params):
            if self.param_l1[p] == 0 and self.param_l2[p] == 0:
                continue
            w = self.param[p]
            s1 = 0
            s2 = 0
            for j in range(self.param_size[p]):
                s1 += fabs(w[j])
                s2 += <double>w[j] * w[j]
            penalty += self.param_l1[p] * s1 + self.param_l2[p] * s2
        return penalty

    cdef void _add_regularization_gradients(self) noexcept nogil:
        cdef intp_t p, j
        cdef float l1, two_l2
        cdef const float *w
        cdef float *g
        for p in range(self.n_params):
            if self.param_l1[p] == 0 and self.param_l2[p] == 0:
                continue
            l1 = <float>self.param_l1[p]
            two_l2 = <float>(2.0 * self.param_l2[p])
            w = self.param[p]
            g = self.grad[p]
            for j in range(self.param_size[p]):
                g[j] += l1 * ((w[j] > 0) - (w[j] < 0)) + two_l2 * w[j]

    cdef void _scale(self, intp_t p, float factor) noexcept nogil:
        cdef intp_t j
        cdef float *g = self.grad[p]
        for j in range(self.param_size[p]):
            g[j] *= factor

    cdef void _clip_gradients(self) noexcept nogil:
        # Keras 3 semantics, as pynn.optimizers.Optimizer._clip_gradients.
        cdef intp_t p, j
        cdef double norm, total = 0, scale
        cdef float v
        cdef float *g
        if self.clipnorm > 0:
            for p in range(self.n_params):
                norm = sqrt(sum_of_squares_raw[float](self.grad[p], self.param_size[p],
                                                       get_num_threads_c(), self.partials))
                if norm > self.clipnorm:
                    self._scale(p, <float>(self.clipnorm / norm))
        elif self.global_clipnorm > 0:
            for p in range(self.n_params):
                total += sum_of_squares_raw[float](self.grad[p], self.param_size[p],
                                                    get_num_threads_c(), self.partials)
            norm = sqrt(total)
            if isfinite(norm) and norm <= self.global_clipnorm:
                return
            scale = self.global_clipnorm / norm if isfinite(norm) else NAN
            for p in range(self.n_params):
                self._scale(p, <float>scale)
        elif self.clipvalue > 0:
            v = <float>self.clipvalue
            for p in range(self.n_params):
                g = self.grad[p]
                for j in range(self.param_size[p]):
                    if g[j] > v:
                        g[j] = v
                    elif g[j] < -v:
                        g[j] = -v

    cdef void _update(self, double lr, intp_t step) noexcept nogil:
        cdef intp_t p
        cdef int nt
        cdef double decay, lr_t
        for p in range(self.n_params):
            nt = threads_for_elements(self.param_size[p])
            decay = lr * self.weight_decay if self.param_decay[p] else 0.0
            if self.opt_kind == 0:
                sgd_raw[float](self.param[p], self.grad[p],
                               self.slot0[p] if self.momentum != 0 else NULL,
                               self.param_size[p], <float>lr, <float>self.momentum,
                               self.nesterov, <float>decay, nt)
            elif self.opt_kind == 1:
                lr_t = lr * sqrt(1 - pow(self.beta_2, step)) / (1 - pow(self.beta_1, step))
                adam_raw[float](self.param[p], self.grad[p], self.slot0[p], self.slot1[p],
                                self.param_size[p], <float>lr_t, <float>(1 - self.beta_1),
                                <float>(1 - self.beta_2), <float>self.epsilon, <float>decay, nt)
            elif self.opt_kind == 2:
                rmsprop_raw[float](self.param[p], self.grad[p], self.slot0[p],
                                   self.slot1[p] if self.momentum > 0 else NULL,
                                   (self.slot2[p] if self.momentum > 0 else self.slot1[p])
                                   if self.centered else NULL,
                                   self.param_size[p], <float>lr, <float>self.rho,
                                   <float>(1 - self.rho), <float>self.momentum,
                                   <float>self.epsilon, <float>decay, nt)
            else:
                adagrad_raw[float](self.param[p], self.grad[p], self.slot0[p],
                                   self.param_size[p], <float>lr, <float>self.epsilon,
                                   <float>decay, nt)
