"""Map the ``workers`` config group onto a joblib backend; the ``Parallel`` call itself never changes.

loky and sequential run on this machine. dask joins the cluster at ``workers.scheduler_address`` or
starts a local one; ray does the same through Ray's joblib backend. Both are optional extras, and
both need the output folder on a path every worker can reach.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager

from joblib import effective_n_jobs, parallel_config

from pipeline.errors import ConfigError

log = logging.getLogger(__name__)
DASK_CONNECT_TIMEOUT = "30s"


def _missing_extra(backend: str, package: str) -> ConfigError:
    return ConfigError(f"workers.backend: '{backend}' needs the optional {package} package; "
                       f"install it with pip install 'quiltgen[{backend}]' or choose workers=loky")


@contextmanager
def _dask(workers: dict) -> Iterator[int]:
    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")  # else distributed floods the job log
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError:
        raise _missing_extra("dask", "dask[distributed]") from None
    address = workers["scheduler_address"]
    if address:
        cluster = None
        try:
            client = Client(address, timeout=DASK_CONNECT_TIMEOUT)
        except OSError as exc:  # distributed raises OSError (or its TimeoutError subclass) after retrying
            raise ConfigError(f"workers.scheduler_address: no Dask scheduler answered at {address} within "
                              f"{DASK_CONNECT_TIMEOUT} ({exc}); start one there (dask scheduler) or leave "
                              f"workers.scheduler_address unset to start a local cluster") from None
    else:
        cluster = LocalCluster(n_workers=effective_n_jobs(workers["n_jobs"]), threads_per_worker=1,
                               processes=True, dashboard_address=None)
        client = Client(cluster)
    try:
        n_workers = max(1, sum(client.nthreads().values()))
        log.info("dask cluster at %s with %d worker threads", client.scheduler.address, n_workers)
        with parallel_config(backend="dask", n_jobs=-1):
            yield n_workers
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _not_the_context_warning(record: logging.LogRecord) -> bool:
    """joblib passes its process context to Ray's Pool, which ignores it with a warning on every run."""
    return "'context' argument is not supported" not in record.getMessage()


@contextmanager
def _ray(workers: dict) -> Iterator[int]:
    try:
        import ray
        from ray.util.joblib import register_ray
    except ImportError:
        raise _missing_extra("ray", "ray") from None
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    address = workers["scheduler_address"]
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        ray.init(num_cpus=effective_n_jobs(workers["n_jobs"]), include_dashboard=False, log_to_driver=False)
    logging.getLogger("ray.util.multiprocessing.pool").addFilter(_not_the_context_warning)  # once: same object
    try:
        register_ray()
        n_workers = max(1, int(ray.cluster_resources().get("CPU", 1)))
        with parallel_config(backend="ray", n_jobs=n_workers):
            yield n_workers
    finally:
        ray.shutdown()


@contextmanager
def parallel_backend(workers: dict) -> Iterator[int]:
    """Activate the configured backend for joblib's ``Parallel``; yields the number of workers."""
    backend = workers["backend"]
    if backend == "dask":
        with _dask(workers) as n_workers:
            yield n_workers
    elif backend == "ray":
        with _ray(workers) as n_workers:
            yield n_workers
    else:
        with parallel_config(backend=backend, n_jobs=workers["n_jobs"]):
            yield effective_n_jobs(workers["n_jobs"])
