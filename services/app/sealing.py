"""Per-user keys, and the one place events are sealed and unsealed.

Writers seal the personal fields of what they append with the key of the user the data
belongs to; readers that present content unseal what they read; integrity and transfer
paths (verify, export, import) keep the stored bytes. Erasing a user destroys their keys:
the log never changes, and what was sealed with those keys reads as erased from then on.
"""

from __future__ import annotations

import os
import time
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from typing import Any

import msgspec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from turnlog.services.app import sealed
from turnlog.services.app.log.records import NewEvent, RecordedEvent, Snapshot
from turnlog.services.app.ports import KeyStore
from turnlog.services.app.sealed import PERSONAL, SECRET, SNAPSHOT_FIELDS, KeyId, SealError

KEY_BYTES = 32
_object = msgspec.json.Decoder(dict[str, msgspec.Raw])
_encode = msgspec.json.Encoder().encode


class KeyMissing(SealError):
    """Raised when an event names a key the keys table does not hold: the log was moved
    (export / import) without its ``turnlog_user_keys`` table."""

    code = "key_missing"

    def __init__(self, user_id: str, generation: int) -> None:
        self.user_id, self.generation = user_id, generation
        super().__init__(
            f"no key {generation} for user {user_id!r} in turnlog_user_keys: the log was"
            " moved without its keys (copy that table along with the events)"
        )


class KeyRing:
    """The users' keys (in a KeyStore): made on first use (32 random bytes), destroyed by
    ``erase``. Keys used to seal are cached for ``recheck_after`` seconds, so a process
    learns of an erasure made elsewhere within that time (meanwhile it seals with the
    destroyed key: what it writes reads as erased, never in clear). Keys used to unseal
    are read for each call, so an erasure shows at once; destroyed ones are remembered.
    """

    def __init__(
        self, keys: KeyStore, *, recheck_after: float = 30.0, cache_size: int = 100_000
    ) -> None:
        self.store = keys
        self.recheck_after = recheck_after
        self.cache_size = cache_size
        self._sealing: OrderedDict[str, tuple[int, AESGCM, float]] = OrderedDict()
        self._erased: set[KeyId] = set()

    # -- sealing ------------------------------------------------------------------------

    async def seal(
        self, user_id: str, events: Sequence[NewEvent], *, holding: Any = None
    ) -> list[NewEvent]:
        """``events`` with their personal fields sealed with ``user_id``'s current key.
        ``holding``: a connection in the transaction that will append them; the key is
        then checked under a share lock there, so an erasure either waits for that
        transaction or has happened (and a new key is used): never a destroyed key."""
        if not any(e.type in PERSONAL for e in events):
            return list(events)
        generation, key = await self.current_key(user_id)
        for _ in range(5):
            if holding is None or await self.store.live(holding, user_id, generation):
                break
            self._forget(user_id, generation)  # erased since: seal with the next key
            generation, key = await self.current_key(user_id)
        else:
            raise SealError(f"the keys of user {user_id!r} keep being erased; not sealed")
        return [
            msgspec.structs.replace(
                e, payload=sealed.seal(e.payload, PERSONAL[e.type], user_id, generation, key)
            )
            if e.type in PERSONAL
            else e
            for e in events
        ]

    async def seal_snapshot(self, user_id: str, snapshot: Snapshot) -> Snapshot:
        """A snapshot holds a session's plain state: it is sealed whole."""
        generation, key = await self.current_key(user_id)
        wrapped = _encode({"state": msgspec.Raw(snapshot.state)})
        state = sealed.seal(wrapped, SNAPSHOT_FIELDS, user_id, generation, key)
        return msgspec.structs.replace(snapshot, state=state)

    async def current_key(self, user_id: str) -> tuple[int, AESGCM]:
        """The generation and key to seal ``user_id``'s data with, made if there is none
        (or only destroyed ones)."""
        now = time.monotonic()
        cached = self._sealing.get(user_id)
        if cached is not None and now - cached[2] < self.recheck_after:
            self._sealing.move_to_end(user_id)
            return cached[0], cached[1]
        for _ in range(5):
            row = await self.store.latest(user_id)
            if row is not None and row[1] is not None:
                key = cached[1] if cached and cached[0] == row[0] else AESGCM(row[1])
                self._remember(user_id, row[0], key, now)
                return row[0], key
            generation = row[0] + 1 if row is not None else 1
            await self.store.create(user_id, generation, os.urandom(KEY_BYTES))
        raise SealError(f"could not make a key for user {user_id!r} (erased while making it)")

    def _remember(self, user_id: str, generation: int, key: AESGCM, at: float) -> None:
        self._sealing[user_id] = (generation, key, at)
        self._sealing.move_to_end(user_id)
        if len(self._sealing) > self.cache_size:
            self._sealing.popitem(last=False)

    # -- unsealing ----------------------------------------------------------------------

    async def unseal(
        self, records: Sequence[RecordedEvent], *, secrets: bool = False
    ) -> list[RecordedEvent]:
        """``records`` with plain payloads (same type, version, hashes...): sealed fields
        opened, or placeholders where the key was destroyed. One query for the keys.
        Secret fields (credentials) stay withheld unless ``secrets``."""
        parsed = {}
        for i, r in enumerate(records):
            found = sealed.parse(r.payload)
            if found is not None:
                parsed[i] = found
        if not parsed:
            return list(records)
        keys = await self.keys({(m.user, m.key) for m, _ in parsed.values()})
        out = list(records)
        for i, (marker, fields) in parsed.items():
            withheld = () if secrets else SECRET.get(records[i].type, ())
            plain = sealed.open_(marker, fields, keys[(marker.user, marker.key)], withheld)
            out[i] = msgspec.structs.replace(records[i], payload=plain)
        return out

    async def unseal_snapshot(self, snapshot: Snapshot) -> Snapshot | None:
        """The plain snapshot; None when its user's key was destroyed."""
        found = sealed.parse(snapshot.state)
        if found is None:
            return snapshot
        marker, fields = found
        keys = await self.keys({(marker.user, marker.key)})
        state = _object.decode(sealed.open_(marker, fields, keys[(marker.user, marker.key)]))
        if bytes(state["state"]) == b"null":
            return None
        return msgspec.structs.replace(snapshot, state=bytes(state["state"]))

    async def keys(self, wanted: Iterable[KeyId]) -> dict[KeyId, AESGCM | None]:
        """The keys named (None: destroyed); KeyMissing for one the table lacks."""
        out: dict[KeyId, AESGCM | None] = {}
        ask = []
        for key_id in wanted:
            if key_id in self._erased:
                out[key_id] = None
            else:
                ask.append(key_id)
        if ask:
            for user_id, generation, key in await self.store.find(ask):
                if key is None:
                    self._forget(user_id, generation)
                out[(user_id, generation)] = AESGCM(key) if key is not None else None
            for key_id in ask:
                if key_id not in out:
                    raise KeyMissing(*key_id)
        return out

    def _forget(self, user_id: str, generation: int) -> None:
        self._erased.add((user_id, generation))
        cached = self._sealing.get(user_id)
        if cached is not None and cached[0] <= generation:
            del self._sealing[user_id]

    # -- erasing ------------------------------------------------------------------------

    async def erase(self, holding: Any, user_id: str) -> list[int]:
        """Destroy ``user_id``'s keys (in ``holding``'s transaction); their generations."""
        generations = await self.store.destroy(holding, user_id)
        for generation in generations:
            self._forget(user_id, generation)
        return generations
