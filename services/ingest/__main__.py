"""`python -m services.ingest`: validate the shop's events and hand them on to scoring."""

from services.ingest.service import main

if __name__ == "__main__":
    raise SystemExit(main())
