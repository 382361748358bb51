"""The local launcher: N ``rnnsweep worker`` processes on this machine."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field

from rnnsweep.launch import WorkerArgs

__all__ = ["LocalLauncher", "LocalWorkers", "worker_command"]


def worker_command(args: WorkerArgs, device: str | None = None) -> list[str]:
    """This Python running ``rnnsweep worker``: the same install as the caller's."""
    return [sys.executable, "-m", "rnnsweep", *args.argv(device)]


@dataclass
class LocalWorkers:
    procs: list[subprocess.Popen] = field(default_factory=list)
    where: str = "this machine"

    def running(self) -> bool:
        return any(p.poll() is None for p in self.procs)

    def complete(self) -> None:
        """Workers exit by themselves once every slot is done."""

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        for p in self.procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()

    def failures(self) -> list[str]:
        return [str(p.returncode) for p in self.procs if p.returncode != 0]

    def close(self) -> None:
        pass


class LocalLauncher:
    """One worker per visible GPU round-robin (cuda:0, cuda:1, ...), else all on the CPU."""

    def start(self, url: str, n: int, args: WorkerArgs) -> LocalWorkers:
        import torch

        from rnnsweep.study import resolve_device

        device = resolve_device(args.device)
        gpus = torch.cuda.device_count() if device.startswith("cuda") else 0
        # The URL travels in the environment, not argv: a password stays out of `ps`.
        env = {**os.environ, "RNNSWEEP_STORAGE": url}
        procs = []
        for i in range(n):
            dev = f"cuda:{i % gpus}" if gpus else device
            procs.append(subprocess.Popen(worker_command(args, dev), env=env))
        return LocalWorkers(procs)
