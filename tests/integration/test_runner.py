"""devstack.runner, on small Python children: what the e2e tests, the fault harness and the bench rely on when they
stop, kill, pause and wait for the system's processes."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

import pytest

from devstack.embedded import free_port
from devstack.runner import Process, group_members, port_block, readyz, tail_of, wait_until

IGNORES_SIGTERM = (
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); time.sleep(60)"
)


def child(code: str, tmp_path: Path, **kw: bool) -> Process:
    return Process([sys.executable, "-c", code], env={}, log_path=tmp_path / "child.log", name="child", **kw)


def state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def gone(pid: int) -> bool:
    """Exited: no such process, or a zombie its new parent has not reaped yet."""
    try:
        return state(pid) == "Z"
    except OSError:
        return True


def test_wait_until_returns_the_first_truthy_value_or_names_what_it_waited_for() -> None:
    calls = iter([None, 0, "got"])
    assert wait_until(lambda: next(calls), interval_s=0) == "got"
    with pytest.raises(AssertionError, match="waiting for nothing; last value: 0"):
        wait_until(lambda: 0, timeout_s=0.05, interval_s=0.01, what="nothing")


def test_a_child_logs_pauses_continues_and_stops_on_sigterm(tmp_path: Path) -> None:
    proc = child("import time; print('hello', flush=True); time.sleep(60)", tmp_path).start(banner="start #1")
    wait_until(lambda: "hello" in proc.log_tail(), what="the child's output")
    assert tail_of(proc.log_path, 2).splitlines() == ["==== start #1 ====", "hello"]
    assert proc.alive() and proc.exit_code is None and proc.uptime > 0
    proc.pause()
    wait_until(lambda: state(proc.pid) == "T", what="stopped")
    proc.cont()
    wait_until(lambda: state(proc.pid) != "T", what="running again")
    proc.pause()
    assert proc.stop(timeout_s=10)  # continued first: a stopped process would not see the SIGTERM
    assert proc.exit_code == -signal.SIGTERM and not proc.alive() and proc.uptime == 0.0


def test_a_child_that_ignores_sigterm_is_killed_after_the_timeout(tmp_path: Path) -> None:
    proc = child(IGNORES_SIGTERM, tmp_path).start()
    wait_until(lambda: "up" in proc.log_tail(), what="the child's handler")
    started = time.monotonic()
    assert not proc.stop(timeout_s=0.5)
    assert proc.exit_code == -signal.SIGKILL and time.monotonic() - started < 10


def test_kill_takes_the_whole_group_of_a_child_in_its_own_group(tmp_path: Path) -> None:
    spawns = (
        "import subprocess, sys, time; "
        f"p = subprocess.Popen([sys.executable, '-c', {IGNORES_SIGTERM!r}]); print(p.pid, flush=True); "
        "time.sleep(60)"
    )
    proc = child(spawns, tmp_path, own_group=True).start()
    grandchild = int(wait_until(lambda: proc.log_tail().split()[0] if proc.log_tail() else None, what="a pid"))
    assert proc.pgid == proc.pid and set(group_members(proc.pid)) == {proc.pid, grandchild}
    proc.kill()
    assert proc.exit_code == -signal.SIGKILL
    wait_until(lambda: gone(grandchild), what="the grandchild gone")


def test_reap_group_kills_what_the_leader_left_behind(tmp_path: Path) -> None:
    leaves = (
        "import subprocess, sys; "
        f"p = subprocess.Popen([sys.executable, '-c', {IGNORES_SIGTERM!r}]); print(p.pid, flush=True)"
    )
    proc = child(leaves, tmp_path, own_group=True).start()
    wait_until(lambda: proc.exit_code is not None, what="the leader to exit")
    orphan = int(proc.log_tail().split()[0])
    assert proc.reap_group(timeout_s=0.5) == [orphan]
    wait_until(lambda: gone(orphan), what="the orphan gone")


def test_waiting_for_readiness_fails_at_once_when_the_child_exits(tmp_path: Path) -> None:
    proc = child("import sys; print('bad config', flush=True); sys.exit(3)", tmp_path).start()
    started = time.monotonic()
    with pytest.raises(RuntimeError, match="child exited with 3") as failed:
        proc.wait_ready([free_port()], timeout_s=30)
    assert "bad config" in str(failed.value) and time.monotonic() - started < 10
    assert readyz(free_port()) is None


def test_a_port_block_leaves_room_for_every_scoring_instance() -> None:
    port = port_block(3)
    assert all(0 < port + 10 * i < 65536 for i in range(3))
