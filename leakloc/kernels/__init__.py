"""Numba hot loops. Each private ``_kernel`` is wrapped by a public checked function."""
