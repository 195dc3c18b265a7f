"""Sampling profiles of the services under load, with py-spy (`.venv/bin/pip install py-spy`; not a dependency).

`bench.run --profile` records each service process during the throughput phase (collapsed stacks, one file
per role under bench/results/profile-<timestamp>/) and prints where the CPU time went: the functions with the
most samples on the stack (inclusive) and at the top of it (self). `python -m bench.profile FILE...`
summarises existing files. Open a `.txt` in speedscope or turn it into a flame graph with flamegraph.pl.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def py_spy() -> str | None:
    """The py-spy executable next to this Python, or on PATH."""
    local = Path(sys.executable).with_name("py-spy")
    return str(local) if local.exists() else shutil.which("py-spy")


@dataclass
class Recording:
    role: str
    pid: int
    path: Path
    proc: subprocess.Popen[bytes]


def start(pids: dict[str, int], outdir: Path, *, rate: int = 200) -> list[Recording]:
    """Start one `py-spy record` per process (non-blocking sampling: the target is never paused)."""
    exe = py_spy()
    if exe is None:
        raise RuntimeError("py-spy is not installed: .venv/bin/pip install py-spy")
    outdir.mkdir(parents=True, exist_ok=True)
    out = []
    for role, pid in pids.items():
        path = outdir / f"{role}.txt"
        proc = subprocess.Popen(
            [
                exe,
                "record",
                "--pid",
                str(pid),
                "--format",
                "raw",
                "--rate",
                str(rate),
                "--nonblocking",
                "--output",
                str(path),
            ],
            stdout=subprocess.DEVNULL,
            stderr=(outdir / f"{role}.log").open("wb"),
        )
        out.append(Recording(role, pid, path, proc))
    return out


def stop(recordings: list[Recording]) -> dict[str, dict[str, object]]:
    """Stop the recorders (SIGINT makes py-spy write its file) and summarise each."""
    for rec in recordings:
        if rec.proc.poll() is None:
            rec.proc.send_signal(signal.SIGINT)
    out: dict[str, dict[str, object]] = {}
    for rec in recordings:
        try:
            rec.proc.wait(30)
        except subprocess.TimeoutExpired:
            rec.proc.kill()
            rec.proc.wait(5)
        if rec.path.exists():
            out[rec.role] = summarize(rec.path)
    return out


def _short(frame: str) -> str:
    """`func (path/to/file.py:123)` -> `func (file.py)`; line numbers would split one function in many rows."""
    m = _FRAME.match(frame.strip())
    if m is None:
        return frame.strip()
    file = m.group("file")  # py-spy already shortens it: relative to site-packages, the stdlib or the cwd
    parts = Path(file).parts
    if "site-packages" in parts:
        file = "/".join(parts[parts.index("site-packages") + 1 :])
    return f"{m.group('func')} ({file})"


def summarize(path: Path, *, top: int = 25) -> dict[str, object]:
    """Inclusive and self sample shares per function, and per top-level area (our code, kafka, sqlalchemy...)."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    areas: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        n = int(count_text)
        frames = [_short(f) for f in stack.split(";")]
        # drop the thread/process header frame py-spy puts first
        frames = [f for f in frames if not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        total += n
        for f in set(frames):
            inclusive[f] += n
        own[frames[-1]] += n
        areas[_area(frames[-1])] += n
    if total == 0:
        return {"samples": 0}

    def pct(c: Counter[str]) -> list[tuple[str, float]]:
        return [(k, round(100 * v / total, 1)) for k, v in c.most_common(top)]

    return {"samples": total, "inclusive_pct": pct(inclusive), "self_pct": pct(own), "self_by_area_pct": pct(areas)}


def _area(frame: str) -> str:
    file = frame.rsplit("(", 1)[-1].rstrip(")")
    for prefix, name in (
        ("kafka/", "kafka-python"),
        ("sqlalchemy/", "sqlalchemy"),
        ("psycopg", "psycopg"),
        ("pydantic", "pydantic"),
        ("prometheus_client/", "prometheus_client"),
        ("json/", "json"),
        ("lz4", "lz4"),
        ("services/", "services"),
        ("shared/", "shared"),
        ("logging/", "logging"),
        ("uvicorn/", "uvicorn"),
        ("selectors.py", "selectors (stdlib)"),
        ("threading.py", "threading (stdlib)"),
        ("socket.py", "socket (stdlib)"),
    ):
        if file.startswith(prefix) or f"/{prefix}" in file:
            return name
    if file.endswith(("dataclasses.py", "copy.py")):
        return "dataclasses/copy (stdlib)"
    if file.endswith(("decimal.py", "_pydecimal.py")):
        return "decimal"
    return "other: " + file


def render(summaries: dict[str, dict[str, object]], *, top: int = 15) -> str:
    lines = []
    for role, s in summaries.items():
        lines.append(f"== {role}: {s.get('samples', 0)} samples (CPU only, py-spy --nonblocking)")
        for title, key in (
            ("self time by area", "self_by_area_pct"),
            ("inclusive (on the stack)", "inclusive_pct"),
            ("self (top of the stack)", "self_pct"),
        ):
            lines.append(f"  -- {title}")
            for name, p in list(s.get(key, []))[:top]:  # type: ignore[call-overload]
                lines.append(f"  {p:5.1f}%  {name}")
    return "\n".join(lines)


if __name__ == "__main__":
    print(render({Path(p).stem: summarize(Path(p)) for p in sys.argv[1:]}))
