"""Docker HEALTHCHECK: exit 0 when /healthz of the service in this container answers 200.

The container runs ingest (INGEST_PORT) or scoring (SCORING_PORT); whichever answers counts, so the same
image and health check serve both. Standard library only: the slim image has no curl.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request


def healthy(port: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
            return bool(response.status == 200)
    except (OSError, urllib.error.URLError):
        return False


def main() -> int:
    ports = [os.environ.get("INGEST_PORT", "8001"), os.environ.get("SCORING_PORT", "8002")]
    service = os.environ.get("LOYALTY_SERVICE", "")
    if service == "scoring":
        ports.reverse()
    return 0 if any(healthy(port) for port in ports) else 1


if __name__ == "__main__":
    sys.exit(main())
