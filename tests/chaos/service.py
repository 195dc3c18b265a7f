"""One service process of a fault run: `python -m services.ingest` / `python -m services.scoring` with its own log
file, restarted by `Harness.tick()` after it died (FAULT_INJECTION self-kills included) until its fault budget is
spent, after which it runs without FAULT_INJECTION so the run can complete."""

from __future__ import annotations

import signal
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from devstack.runner import Process, python_module, readyz, tail_of


class Service:
    """One service process; `restart` = the harness starts it again whenever it dies."""

    def __init__(
        self,
        name: str,
        module: str,
        env: dict[str, str],
        log_dir: Path,
        *,
        port: int,
        faults: str = "",
        fault_budget: int = 0,
        restart: bool = True,
    ) -> None:
        self.name, self.module, self.env, self.port = name, module, env, port
        self.log_path = log_dir / f"{name}.log"
        self.faults, self.fault_budget, self.restart = faults, fault_budget, restart
        self.proc: Process | None = None
        self.starts = 0
        self.kills = 0  # deaths by SIGKILL (ours or FAULT_INJECTION's)
        self.other_deaths: list[int] = []  # exits we did not cause: a crash
        self.stopped = False  # stopped on purpose: not restarted
        self._counted: Process | None = None

    @property
    def uptime(self) -> float:
        return self.proc.uptime if self.proc is not None else 0.0

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def paused(self) -> bool:
        return self.proc is not None and self.proc.paused

    def alive(self) -> bool:
        return self.proc is not None and self.proc.alive()

    def start(self) -> None:
        env = dict(self.env)
        if self.faults and self.kills < self.fault_budget:
            env["FAULT_INJECTION"] = self.faults
        else:
            env.pop("FAULT_INJECTION", None)
        banner = (
            f"start #{self.starts + 1} (FAULT_INJECTION={env.get('FAULT_INJECTION', '')}) "
            f"at {datetime.now(UTC).isoformat()}"
        )
        self.proc = Process(python_module(self.module), env=env, log_path=self.log_path, name=self.name)
        self.proc.start(banner=banner)
        self.starts += 1
        self.stopped = False

    def reap(self) -> bool:
        """Account for a death; True when the process is dead and should be started again."""
        if self.proc is None or (code := self.proc.exit_code) is None:
            return False
        if self._counted is not self.proc:  # count each death once
            self._counted = self.proc
            if code == -signal.SIGKILL:
                self.kills += 1
            elif not self.stopped:
                self.other_deaths.append(code)
        return self.restart and not self.stopped

    def kill(self) -> None:
        """kill -9."""
        if self.proc is not None:
            self.proc.kill()

    def pause(self) -> None:
        assert self.proc is not None
        self.proc.pause()

    def cont(self) -> None:
        assert self.proc is not None
        self.proc.cont()

    def stop(self, timeout_s: float = 30.0) -> None:
        """SIGTERM (graceful: the batch in hand is finished) and wait; kill -9 if it does not stop."""
        self.stopped = True
        if self.proc is not None:
            self.proc.stop(timeout_s)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def readyz(self) -> tuple[int, dict[str, Any]] | None:
        return readyz(self.port, timeout_s=8)

    def log_tail(self, lines: int = 30) -> str:
        return tail_of(self.log_path, lines)
