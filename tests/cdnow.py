"""The CDNOW sample of Fader, Hardie & Lee (2005): 2,357 customers, one purchase a line (tests/data/README.md)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

CDNOW_SAMPLE = Path(__file__).parent / "data" / "CDNOW_sample.txt"
CALIBRATION_END = date(1997, 9, 30)  # the paper's 39 weeks: 1997-01-01 to 1997-09-30, both included
# what the paper's table 1 gives for BG/NBD on this sample, and its conditional expectation example
PAPER_PARAMS = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}
PAPER_LL = -9582.4


def purchases() -> list[tuple[str, date, str]]:
    """(customer id, day, amount) of every line: `id  customer_index  yyyymmdd  quantity  amount`."""
    rows = []
    for line in CDNOW_SAMPLE.read_text().splitlines():
        customer, _, day, _, amount = line.split()
        rows.append((customer, date(int(day[:4]), int(day[4:6]), int(day[6:])), amount))
    return rows


def order_days() -> dict[str, set[date]]:
    """Each customer's distinct order days."""
    days: dict[str, set[date]] = {}
    for customer, day, _ in purchases():
        days.setdefault(customer, set()).add(day)
    return days


def sig3(value: float) -> str:
    """`value` to 3 significant digits, as the paper's table is compared."""
    return f"{value:.3g}"
