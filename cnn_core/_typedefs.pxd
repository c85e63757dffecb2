# Types shared by every kernel: one fused floating type gives float32 and float64 from one
# source (as scikit-learn's sklearn/utils/_typedefs.pxd).
from libc.stdint cimport int64_t

ctypedef fused floating:
    float
    double

ctypedef int64_t intp_t
