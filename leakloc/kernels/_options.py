"""The one place that holds the Numba options for every kernel."""
from numba import njit, prange  # noqa: F401  (re-exported)

#: serial kernels
JIT = dict(cache=True, nogil=True, fastmath=False, error_model="numpy")
#: kernels that split work over z with ``prange``
JIT_PARALLEL = dict(JIT, parallel=True)
#: small per-voxel helpers inlined into their callers at the Numba IR level (a real call would
#: pass every array argument with reference counting, which costs more than the helper itself)
JIT_INLINE = dict(JIT, inline="always")
