"""The last (version, hash) of the streams a store has touched, in a bounded cache."""

from __future__ import annotations

from collections import OrderedDict


class Tips:
    """Stream id -> (version, hash) of its last event, for at most ``size`` streams."""

    def __init__(self, size: int) -> None:
        self._tips: OrderedDict[str, tuple[int, bytes]] = OrderedDict()
        self._size = size

    def get(self, stream_id: str) -> tuple[int, bytes] | None:
        return self._tips.get(stream_id)

    def version(self, stream_id: str) -> int:
        """The last version known of ``stream_id``; -1 when it is not known."""
        tip = self._tips.get(stream_id)
        return -1 if tip is None else tip[0]

    def remember(self, stream_id: str, version: int, digest: bytes) -> None:
        self._tips[stream_id] = (version, digest)
        self._tips.move_to_end(stream_id)
        if len(self._tips) > self._size:
            self._tips.popitem(last=False)

    def forget(self, stream_id: str) -> None:
        self._tips.pop(stream_id, None)
