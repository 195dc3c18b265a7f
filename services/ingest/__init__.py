"""Ingest: validates the shop's events and hands them on to scoring (facts) or to the dead-letter topic."""
