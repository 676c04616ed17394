"""Single-threaded BLAS for the many small decompositions of the analyses; its own
module so that uncertainty and the modules that use it need not import each other."""

from __future__ import annotations

import functools

from threadpoolctl import threadpool_limits


def single_threaded_blas(func):
    """Run ``func`` with single-threaded BLAS.

    The analyses decompose thousands of small (H x E) matrices one at a time; a
    multi-threaded BLAS spends most of such a call synchronising its threads (on a busy
    2-core machine a 256 x 64 SVD took 80 ms instead of 2 ms)."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        with threadpool_limits(limits=1, user_api="blas"):
            return func(*args, **kwargs)

    return wrapper
