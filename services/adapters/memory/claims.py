"""Claims in one process: held until released."""

from __future__ import annotations


class MemoryClaim:
    def __init__(self, held: set[tuple[int, int]], key: tuple[int, int]) -> None:
        self._held, self.key = held, key
        self._released = False

    async def alive(self) -> bool:
        return not self._released

    async def release(self) -> None:
        if not self._released:
            self._released = True
            self._held.discard(self.key)


class MemoryClaims:
    def __init__(self) -> None:
        self._held: set[tuple[int, int]] = set()

    async def try_claim(self, key: tuple[int, int]) -> MemoryClaim | None:
        if key in self._held:
            return None
        self._held.add(key)
        return MemoryClaim(self._held, key)

    async def held(self, space: int) -> set[int]:
        return {n for s, n in self._held if s == space}
