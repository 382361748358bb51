"""The Ray launcher: N workers as Ray tasks, each with its CPUs and GPUs.

Connects to ``address`` (``--ray-address``), else to ``RAY_ADDRESS``, else starts a
local Ray instance. Each task runs :func:`rnnsweep.study.run_worker` in a Ray worker
process; Ray places it (``num_cpus``/``num_gpus``) and re-runs it, up to
``max_retries`` times, when its process or node is lost. The slot queue then re-runs
the lost worker's slots once each, with their stored parameters and seed.

The storage URL is not a task argument and not in a ``runtime_env``: Ray writes a
runtime_env, env_vars included, to its agent log and shows it in the dashboard. The
URL is put in Ray's object store, and each task receives only a reference to it.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from rnnsweep.errors import LaunchError
from rnnsweep.launch import ResourceSettings, WorkerArgs

__all__ = ["RayLauncher", "RayWorkers", "ray_worker"]


def ray_worker(secret: list[Any], args: dict[str, Any]) -> dict[str, Any]:
    """One worker, in a Ray worker process: train the study's slots until it is complete.

    ``secret`` is ``[ObjectRef]`` of the storage URL (nested, so Ray passes the
    reference and the task fetches the value).
    """
    import socket

    import ray

    from rnnsweep.store import Store
    from rnnsweep.study import WorkerOptions, run_worker

    url = ray.get(secret[0])
    a = WorkerArgs(**args)
    store = Store(url, create=False)
    try:
        summary = run_worker(
            store,
            a.study,
            WorkerOptions(
                device=a.device,
                pack_size=a.pack_size,
                threads=a.threads,
                heartbeat=a.heartbeat,
                grace=a.grace,
            ),
        )
    finally:
        store.dispose()
    return {"host": socket.gethostname(), "pid": os.getpid(), "trials": summary.trials_run}


@dataclass
class RayWorkers:
    refs: list[Any]
    address: str
    results: list[dict[str, Any]] = field(default_factory=list)

    @property
    def where(self) -> str:
        return f"Ray cluster {self.address}"

    def running(self) -> bool:
        import ray

        ready, _ = ray.wait(self.refs, num_returns=len(self.refs), timeout=0)
        return len(ready) < len(self.refs)

    def complete(self) -> None:
        """Workers exit by themselves once every slot is done."""

    def stop(self) -> None:
        """Interrupt each task (KeyboardInterrupt in it): its slots are handed back."""
        import ray

        for r in self.refs:
            ray.cancel(r)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            ready, _ = ray.wait(self.refs, num_returns=len(self.refs), timeout=1)
            if len(ready) == len(self.refs):
                break

    def failures(self) -> list[str]:
        import ray

        out = []
        for i, r in enumerate(self.refs):
            try:
                self.results.append(ray.get(r, timeout=5))
            except Exception as exc:  # noqa: BLE001 - report each lost worker, go on
                out.append(f"worker {i}: {type(exc).__name__}")
        return out

    def close(self) -> None:
        import ray

        ray.shutdown()


class RayLauncher:
    def __init__(self, settings: ResourceSettings) -> None:
        self.settings = settings

    def start(self, url: str, n: int, args: WorkerArgs) -> RayWorkers:
        try:
            import ray
        except ImportError:
            raise LaunchError(
                "--launcher ray needs the ray package: pip install 'rnnsweep[ray]'"
            ) from None
        s = self.settings
        address = s.address or os.environ.get("RAY_ADDRESS") or None
        try:
            info = ray.init(
                address=address,
                include_dashboard=False if address is None else None,
                log_to_driver=False,  # workers' output would break the progress bar
                logging_level=logging.WARNING,
                configure_logging=False,
            )
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise LaunchError(f"cannot connect to Ray at {address!r}: {exc}") from None
        remote = ray.remote(ray_worker).options(
            num_cpus=s.cpus_per_worker,
            num_gpus=s.gpus_per_worker,
            max_retries=s.max_retries,
            retry_exceptions=False,
            name=f"rnnsweep-worker:{args.study}",
        )
        secret = ray.put(url)
        refs = [remote.remote([secret], asdict(args)) for _ in range(n)]
        where = address or getattr(info, "address_info", {}).get("address", "local")
        return RayWorkers(refs, where)
