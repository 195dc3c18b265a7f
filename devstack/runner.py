"""Child processes for the programs that drive the system from outside: the tests, the fault harness, the bench.

- `Process`: one child with its own log file, started so that it dies with the thread that started it
  (`die_with_parent`); readiness on /readyz, SIGTERM-then-SIGKILL stop, kill -9, SIGSTOP/SIGCONT, exit code.
- `Stack`: the whole system as `make run` starts it (`python -m devstack.launcher`), in its own process group,
  on ports of its own.
- `wait_until`: the one polling helper, so that every wait has a deadline and none is a fixed sleep.

It needs nothing beyond what `make run` needs (no HTTP client, no psutil), and the production image never ships it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from devstack.embedded import free_port
from devstack.launcher import SCORING_PORT_STEP
from shared.runtime import die_with_parent

T = TypeVar("T")
ROOT = Path(__file__).resolve().parents[1]

# loopback only: a proxy from the environment (http_proxy) must never see a readiness probe
_LOCAL = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def wait_until(
    check: Callable[[], T | None],
    *,
    timeout_s: float = 20.0,
    interval_s: float = 0.1,
    what: str = "condition",
    tick: Callable[[], None] | None = None,
) -> T:
    """Poll `check` (calling `tick` before each poll) until it returns something truthy, or fail after
    `timeout_s` with an AssertionError naming `what` and the last value."""
    deadline = time.monotonic() + timeout_s
    last: T | None = None
    while time.monotonic() < deadline:
        if tick is not None:
            tick()
        last = check()
        if last:
            return last
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}; last value: {last!r}")


def tail_of(path: Path, lines: int) -> str:
    """The last `lines` lines of a log file, or "" when there is none yet."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def readyz(port: int, *, timeout_s: float = 5.0) -> tuple[int, dict[str, Any]] | None:
    """(status, body) of GET 127.0.0.1:`port`/readyz; None while nothing answers with JSON."""
    try:
        with _LOCAL.open(f"http://127.0.0.1:{port}/readyz", timeout=timeout_s) as response:
            return int(response.status), json.loads(response.read())
    except urllib.error.HTTPError as exc:  # 503 while a dependency is unreachable, with the reason in the body
        try:
            return exc.code, json.loads(exc.read())
        except ValueError:
            return None
        finally:
            exc.close()
    except (OSError, ValueError):
        return None


def python_module(module: str) -> list[str]:
    """The command line of `python -m module` with this interpreter."""
    return [sys.executable, "-m", module]


def port_block(count: int, *, step: int = SCORING_PORT_STEP) -> int:
    """A free port p with p + step*i free too for every i < count (the launcher's scoring instance i listens
    on SCORING_PORT + step*i)."""
    for _ in range(200):
        port = free_port()
        if all(_bindable(port + step * i) for i in range(1, count)):
            return port
    raise RuntimeError(f"no block of {count} free ports {step} apart")


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def group_members(pgid: int) -> list[int]:
    """Pids of every process (zombies included) in process group `pgid`."""
    try:
        names = os.listdir("/proc")
    except OSError:
        return []
    out = []
    for name in names:
        if not name.isdigit():
            continue
        try:
            if os.getpgid(int(name)) == pgid:
                out.append(int(name))
        except OSError:
            continue
    return out


class Process:
    """One child process, stdout and stderr appended to `log_path`.

    With `own_group` it leads a new session, and SIGKILL goes to the whole group: the launcher's children (the
    broker, PostgreSQL, the services) must not outlive a kill -9 of the launcher. SIGTERM, SIGSTOP and SIGCONT
    go to the process alone; the launcher forwards SIGTERM itself.
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        log_path: Path,
        cwd: Path = ROOT,
        own_group: bool = False,
        name: str = "",
    ) -> None:
        self.argv, self.env, self.log_path, self.cwd, self.own_group = list(argv), dict(env), log_path, cwd, own_group
        self.name = name or (argv[2] if len(argv) > 2 and argv[1] == "-m" else Path(argv[0]).name)
        self.popen: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0
        self.paused = False

    def start(self, *, banner: str = "") -> Process:
        """Start it; `banner` is written to the log first, to tell one start from the next in a shared log."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            if banner:
                log.write(f"\n==== {banner} ====\n".encode())
                log.flush()
            self.popen = subprocess.Popen(
                self.argv,
                cwd=self.cwd,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=self.own_group,
                preexec_fn=die_with_parent,
            )
        self.started_at = time.monotonic()
        self.paused = False
        return self

    @property
    def pid(self) -> int:
        if self.popen is None:
            raise RuntimeError(f"{self.name} was never started")
        return self.popen.pid

    @property
    def pgid(self) -> int:
        return self.pid if self.own_group else os.getpgid(self.pid)

    @property
    def exit_code(self) -> int | None:
        """The exit status once it has exited (negative: killed by that signal), else None."""
        return None if self.popen is None else self.popen.poll()

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    @property
    def uptime(self) -> float:
        """Seconds since the start while it runs, else 0."""
        return time.monotonic() - self.started_at if self.alive() else 0.0

    def log_tail(self, lines: int = 30) -> str:
        return tail_of(self.log_path, lines)

    def wait_ready(self, ports: Iterable[int], *, timeout_s: float, interval_s: float = 0.2) -> None:
        """Wait until /readyz answers 200 on every one of `ports`; fail at once should the process exit."""
        wanted = list(ports)

        def ready() -> bool:
            if not self.alive():
                raise RuntimeError(f"{self.name} exited with {self.exit_code}; log {self.log_path}:\n{self.log_tail()}")
            return all((got := readyz(port)) is not None and got[0] == 200 for port in wanted)

        wait_until(
            ready,
            timeout_s=timeout_s,
            interval_s=interval_s,
            what=f"{self.name} ready on {wanted} (log: {self.log_path})",
        )

    def pause(self) -> None:
        os.kill(self.pid, signal.SIGSTOP)
        self.paused = True

    def cont(self) -> None:
        os.kill(self.pid, signal.SIGCONT)
        self.paused = False

    def kill(self, *, wait_s: float = 10.0) -> None:
        """kill -9 (its whole group with `own_group`), and reap it."""
        if self.popen is None or self.popen.poll() is not None:
            return
        if self.own_group:
            os.killpg(self.pid, signal.SIGKILL)
        else:
            self.popen.kill()
        self.popen.wait(wait_s)
        self.paused = False

    def stop(self, timeout_s: float = 30.0) -> bool:
        """SIGTERM and wait; after `timeout_s`, kill -9. True when it exited on the SIGTERM in time."""
        if self.popen is None or self.popen.poll() is not None:
            return True
        if self.paused:
            self.cont()  # a stopped process handles no SIGTERM
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout_s)
            return True
        except subprocess.TimeoutExpired:
            self.kill()
            return False

    def reap_group(self, timeout_s: float = 10.0) -> list[int]:
        """After a stop: wait up to `timeout_s` for its process group to empty, then kill -9 what is left;
        returns the pids that were left."""
        pgid = self.pid
        deadline = time.monotonic() + timeout_s
        left = group_members(pgid)
        while left and time.monotonic() < deadline:
            time.sleep(0.2)
            left = group_members(pgid)
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return left


class Stack:
    """The whole system as `make run` starts it: `python -m devstack.launcher` in its own process group, with its
    own HTTP ports and STATE_DIR; `env` says where the database and broker are (or, unset, that the launcher
    starts its own)."""

    def __init__(
        self,
        *,
        env: Mapping[str, str],
        state_dir: Path,
        log_path: Path | None = None,
        scoring_instances: int = 1,
        unset: Iterable[str] = (),
    ) -> None:
        self.ingest_port = free_port()
        self.scoring_port = port_block(scoring_instances)
        self.scoring_ports = [self.scoring_port + SCORING_PORT_STEP * i for i in range(scoring_instances)]
        self.env = {
            **os.environ,
            **env,
            "INGEST_PORT": str(self.ingest_port),
            "SCORING_PORT": str(self.scoring_port),
            "SCORING_INSTANCES": str(scoring_instances),
            "STATE_DIR": str(state_dir),
            "LOG_FORMAT": "text",
            "PYTHONUNBUFFERED": "1",
        }
        for name in unset:
            self.env.pop(name, None)
        self.process = Process(
            python_module("devstack.launcher"),
            env=self.env,
            log_path=log_path or state_dir / "system.log",
            own_group=True,
        )

    @property
    def log_path(self) -> Path:
        return self.process.log_path

    @property
    def pid(self) -> int:
        return self.process.pid

    def start(self, *, timeout_s: float = 60.0) -> Stack:
        """Start the launcher and wait until ingest and every scoring instance are ready; a start that fails
        leaves no process behind."""
        self.process.start()
        try:
            self.process.wait_ready([self.ingest_port, *self.scoring_ports], timeout_s=timeout_s)
        except BaseException:
            self.process.kill()
            raise
        return self

    def stop(self, timeout_s: float = 30.0) -> bool:
        """SIGTERM the launcher (it stops what it started) and wait; True when it stopped in time, else its whole
        group was killed."""
        return self.process.stop(timeout_s)

    def kill(self) -> None:
        self.process.kill()

    def log_tail(self, lines: int = 40) -> str:
        return self.process.log_tail(lines)
