"""Container entry point: `ingest`, `scoring`, `migrate`, `topics`, `replay` or any command.

Without arguments the service named by LOYALTY_SERVICE (build argument SERVICE, default `ingest`) runs.
The process replaces this one (exec), so it is PID 1 and receives SIGTERM directly.
"""

from __future__ import annotations

import os
import sys

COMMANDS = {
    "ingest": ["-m", "services.ingest"],
    "scoring": ["-m", "services.scoring"],
    "migrate": ["-m", "services.scoring.migrate"],
    "replay": ["-m", "services.ingest.replay"],
}


def create_topics() -> None:
    """Create every topic of the system that does not exist yet, with TOPIC_PARTITIONS partitions."""
    from shared.adapters.kafka import ensure_topics
    from shared.settings import Settings

    settings = Settings()
    ensure_topics(settings, timeout_s=120.0)
    print(f"topics present: {', '.join(settings.all_topics)} ({settings.topic_partitions} partitions when created)")


def main(argv: list[str]) -> None:
    args = argv or [os.environ.get("LOYALTY_SERVICE", "ingest")]
    command, rest = args[0], args[1:]
    if command == "topics":
        create_topics()
    elif command in COMMANDS:
        os.execv(sys.executable, [sys.executable, *COMMANDS[command], *rest])
    else:
        os.execvp(command, args)


if __name__ == "__main__":
    main(sys.argv[1:])
