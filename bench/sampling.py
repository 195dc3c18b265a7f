"""Peak memory and CPU seconds of every process of the system under test (and of PostgreSQL and the bench), from
/proc and psutil, sampled by a thread while the phases run."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field

import psutil

from bench.system import SystemUnderTest
from devstack.embedded import EmbeddedPostgres


@dataclass
class ResourceSampler:
    """Samples peak RSS (VmHWM every 0.5 s, PostgreSQL's PSS every 2 s) and CPU seconds of each role.

    VmHWM is the kernel's own peak, so sampling it often only matters for a process that is replaced. PSS needs
    /proc/<pid>/smaps (~3 ms a backend), which at every 0.5 s cost the bench ~5 % of a core during a run.
    """

    system: SystemUnderTest
    pg: EmbeddedPostgres
    interval_s: float = 0.5
    pss_every: int = 4
    peak_rss: dict[str, int] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> ResourceSampler:
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> dict[str, float]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        return self.peaks()

    def peaks(self) -> dict[str, float]:
        """Peak RSS so far of each role, MiB."""
        self.sample()
        return {role: round(n / 2**20, 1) for role, n in sorted(self.peak_rss.items())}

    def _run(self) -> None:
        n = 0
        while not self._stop.wait(self.interval_s):
            n += 1
            self.sample(pss=n % self.pss_every == 0)

    def _pg_processes(self) -> list[psutil.Process]:
        try:
            root = psutil.Process(self.pg.proc.pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def sample(self, *, pss: bool = True) -> None:
        for role, proc in self.system.processes().items():
            hwm = _vm_hwm(proc.pid)
            if hwm:
                self.peak_rss[role] = max(self.peak_rss.get(role, 0), hwm)
        if pss:
            self._sample_pss()

    def _sample_pss(self) -> None:
        pss = 0
        for proc in self._pg_processes():
            try:
                pss += proc.memory_full_info().pss
            except psutil.Error:
                continue
        self.peak_rss["postgres (PSS, all backends)"] = max(self.peak_rss.get("postgres (PSS, all backends)", 0), pss)

    def run_queue_seconds(self) -> dict[str, float]:
        """Seconds each role's threads sat runnable but waiting for a CPU (schedstat): the cost of a noisy box."""
        out: dict[str, float] = {}
        for role, proc in self.system.processes().items():
            out[role] = _run_delay(proc.pid)
        out["postgres"] = sum(_run_delay(p.pid) for p in self._pg_processes())
        return out

    def cpu_seconds(self) -> dict[str, float]:
        """CPU seconds (user+system) so far of each role; PostgreSQL summed over its processes."""
        out: dict[str, float] = {}
        for role, proc in self.system.processes().items():
            try:
                t = proc.cpu_times()
                out[role] = t.user + t.system
            except psutil.Error:
                continue
        total = 0.0
        for proc in self._pg_processes():
            try:
                t = proc.cpu_times()
                total += t.user + t.system
            except psutil.Error:
                continue
        out["postgres"] = total
        me = psutil.Process().cpu_times()
        out["bench (producer, polling)"] = me.user + me.system
        return out


def _run_delay(pid: int) -> float:
    total = 0
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{task}/schedstat") as fh:
                    total += int(fh.read().split()[1])
            except (OSError, IndexError, ValueError):
                continue
    except OSError:
        return 0.0
    return total / 1e9


def _vm_hwm(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0
