"""The state cache of a scoring process: what it last committed for recently written customers (see the
compare-and-set in `services.scoring.store`, which makes a stale entry harmless)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping

from services.scoring.domain.state import CustomerState
from services.scoring.health.marks import NO_MARK, HealthMark


class StateCache:
    """The last committed (state, version) of up to `capacity` recently written customers, least recent out first.

    Only the scoring worker's thread touches it. A capacity of 0 keeps nothing, and every batch reads the table.
    """

    def __init__(self, *, capacity: int) -> None:
        self.capacity = capacity
        self._entries: OrderedDict[str, tuple[CustomerState, int]] = OrderedDict()
        # the health mark each cached customer's row holds (absent: none); valid exactly as long as the version is,
        # since a scan or sweep that changes a customer's status moves the row's version too
        self._marks: dict[str, HealthMark] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, customer_id: str) -> tuple[CustomerState, int] | None:
        """The cached (state, version) of `customer_id`, if any."""
        return self._entries.get(customer_id)

    def mark(self, customer_id: str) -> HealthMark:
        """The health mark of a cached customer (NO_MARK when it has none)."""
        return self._marks.get(customer_id, NO_MARK)

    def remember(
        self, written: Mapping[str, tuple[CustomerState, int]], marks: Mapping[str, HealthMark] | None = None
    ) -> None:
        """Record what a committed batch wrote, evicting the least recently written beyond capacity."""
        if not self.capacity:
            return
        entries = self._entries
        for customer_id, entry in written.items():
            entries[customer_id] = entry
            entries.move_to_end(customer_id)
        if marks:
            self._marks.update(marks)
        while len(entries) > self.capacity:
            gone, _ = entries.popitem(last=False)
            self._marks.pop(gone, None)

    def clear(self) -> None:
        """Forget everything: after a failed batch nobody knows which cached versions still hold."""
        self._entries.clear()
        self._marks.clear()
