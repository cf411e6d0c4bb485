"""What every task does first in a worker process: one OpenCV thread, and no life after its parent.

A loky worker whose parent was killed (kill -9, the OOM killer) would otherwise go on rendering into the
dead run's folder for minutes. Each worker started by the parent watches its parent pid and exits within
half a second of losing it. Workers of a remote cluster (Dask, Ray) are not the parent's children and
are left to their cluster.
"""
from __future__ import annotations

import os
import threading
import time

import cv2

POLL_SECONDS = 0.5
_watching: list[int] = []
# loky restarts a worker whose resident memory grew by 300 MB, taking it for a leak, and warns "A worker stopped
# while some jobs were given to the executor". A worker's growth here is the bank's read-only memory maps (the
# page cache of a large input set), shared and reclaimable, not a leak; so the threshold is raised for our workers.
LOKY_LEAK_THRESHOLD = 64 * 2**30


def _watch(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(POLL_SECONDS)
    os._exit(1)  # the parent is gone: nothing will read what this process writes


def start(parent_pid: int) -> None:
    """Call at the top of every worker task (cheap after the first call in a process)."""
    if _watching:
        return
    cv2.setNumThreads(1)  # one OpenCV thread per worker: the pool already fills the cores
    _watching.append(parent_pid)
    try:
        from joblib.externals.loky import process_executor
        process_executor._MAX_MEMORY_LEAK_SIZE = max(process_executor._MAX_MEMORY_LEAK_SIZE, LOKY_LEAK_THRESHOLD)
    except ImportError:
        pass
    if os.getpid() != parent_pid and os.getppid() == parent_pid:
        threading.Thread(target=_watch, args=(parent_pid,), name="quiltgen-parent-watch", daemon=True).start()


def call(parent_pid: int, function, *args):
    """Run ``function(*args)`` as a worker task: what the parent submits to joblib."""
    start(parent_pid)
    return function(*args)
