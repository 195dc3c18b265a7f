"""What the bench measures: the system exactly as `make run` starts it (devstack.runner.Stack), on a database of
its own, with its processes found by role for the sampler and the profiler."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import psutil

from bench import log
from devstack.embedded import free_port
from devstack.runner import Stack
from shared.settings import Settings


class SystemUnderTest:
    """`python -m devstack.launcher` in its own process group, its own STATE_DIR, broker port and HTTP ports,
    DATABASE_URL pointing at `database_url`."""

    def __init__(self, *, name: str, workdir: Path, database_url: str, partitions: int, instances: int) -> None:
        self.name = name
        self.workdir = workdir
        self.instances = instances
        self.broker_port = free_port()
        self.settings = Settings()  # topic names and group ids: the defaults, as `make run` uses them
        self.stack = Stack(
            env={
                "DATABASE_URL": database_url,
                "EMBEDDED_BROKER_PORT": str(self.broker_port),
                "TOPIC_PARTITIONS": str(partitions),
            },
            state_dir=workdir / "state",
            log_path=workdir / "system.log",
            scoring_instances=instances,
            unset=("KAFKA_BOOTSTRAP_SERVERS",),
        )  # the launcher starts its own broker
        self._processes: dict[str, psutil.Process] = {}
        self._processes_until = 0.0

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.broker_port}"

    @property
    def log_path(self) -> Path:
        return self.stack.log_path

    def start(self, *, timeout_s: float = 120.0) -> SystemUnderTest:
        self.stack.start(timeout_s=timeout_s)
        return self

    def log_tail(self, lines: int = 30) -> str:
        return self.stack.log_tail(lines)

    def scoring_batches(self) -> tuple[float, float, float]:
        """Over every scoring instance so far: (transactions, facts, seconds), from their /metrics."""
        totals = [0.0, 0.0, 0.0]
        wanted = {
            "loyalty_batch_size_messages_count": 0,
            "loyalty_batch_size_messages_sum": 1,
            "loyalty_batch_duration_seconds_sum": 2,
        }
        for port in self.stack.scoring_ports:
            body = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
            for line in body.splitlines():
                name, _, rest = line.partition("{")
                if name in wanted and 'service="scoring"' in rest:
                    totals[wanted[name]] += float(rest.rsplit(" ", 1)[1])
        return totals[0], totals[1], totals[2]

    def processes(self) -> dict[str, psutil.Process]:
        """The launcher's processes by role: launcher, broker, ingest, scoring-0, relay-0, scoring-1, relay-1, ...

        Looked up again every 5 s or when one of them has exited: finding a process's children reads every
        process of the machine, which the sampler did twice a second on the CPU it measures.
        """
        known = self._processes
        if known and time.monotonic() < self._processes_until and all(p.is_running() for p in known.values()):
            return known
        self._processes = self._find_processes()
        self._processes_until = time.monotonic() + 5.0
        return self._processes

    def _find_processes(self) -> dict[str, psutil.Process]:
        if self.stack.process.popen is None:
            return {}
        try:
            launcher = psutil.Process(self.stack.pid)
            children = launcher.children(recursive=True)
        except psutil.NoSuchProcess:
            return {}
        out: dict[str, psutil.Process] = {"launcher": launcher}
        scoring = relays = 0
        for child in sorted(children, key=lambda p: p.pid):
            try:
                cmd = " ".join(child.cmdline())
            except psutil.Error:
                continue
            if "services.ingest" in cmd:
                out["ingest"] = child
            elif "services.scoring.migrate" in cmd:
                continue
            elif "services.scoring.relay_process" in cmd:  # each scoring process's child
                out[f"relay-{relays}"] = child
                relays += 1
            elif "services.scoring" in cmd:
                out[f"scoring-{scoring}"] = child
                scoring += 1
            elif "broker" in cmd and "--listener-url" in cmd:
                out["broker"] = child
        return out

    def stop(self, timeout_s: float = 60.0) -> dict[str, Any]:
        """SIGTERM the launcher, wait, then make sure nothing of its process group is left."""
        process = self.stack.process
        if process.popen is None:
            return {}
        report: dict[str, Any] = {"clean": True}
        if not process.stop(timeout_s):
            report["clean"] = False
            log(f"{self.name}: launcher did not stop within {timeout_s}s; killed its group")
        report["exit_code"] = process.exit_code
        left = process.reap_group()
        if left:
            report["clean"] = False
            report["left_over"] = left
            log(f"{self.name}: processes left in the group after stop: {left}; killed them")
        return report
