"""Payload encoding by stable type name, with upcasters that lift old schema versions."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import msgspec

from turnlog.contracts.events import EventPayload
from turnlog.services.app.log.errors import UnknownEventType, UnsupportedSchemaVersion

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]

_encoder = msgspec.json.Encoder()


class EventCodec:
    """Turns payload Structs into (type name, schema version, bytes) and back."""

    def __init__(self, payload_types: Iterable[type[EventPayload]]) -> None:
        self._types: dict[str, type[EventPayload]] = {}
        self._decoders: dict[str, msgspec.json.Decoder[Any]] = {}
        self._upcasters: dict[tuple[str, int], Upcaster] = {}
        for payload_type in payload_types:
            self.register(payload_type)

    def register(self, payload_type: type[EventPayload]) -> None:
        self._types[payload_type.TYPE] = payload_type
        self._decoders[payload_type.TYPE] = msgspec.json.Decoder(payload_type)

    def register_upcaster(self, type_name: str, from_version: int, upcast: Upcaster) -> None:
        """``upcast`` turns a decoded payload of ``from_version`` into ``from_version + 1``."""
        self._upcasters[(type_name, from_version)] = upcast

    def encode(self, payload: EventPayload) -> bytes:
        return _encoder.encode(payload)

    def payload_type(self, type_name: str) -> type[EventPayload]:
        try:
            return self._types[type_name]
        except KeyError:
            raise UnknownEventType(type_name, list(self._types)) from None

    def knows(self, type_name: str) -> bool:
        return type_name in self._types

    def decode(self, type_name: str, schema_version: int, data: bytes) -> EventPayload:
        payload_type = self.payload_type(type_name)
        current = payload_type.SCHEMA_VERSION
        try:
            if schema_version == current:
                result: EventPayload = self._decoders[type_name].decode(data)
                return result
            if schema_version > current:
                raise UnsupportedSchemaVersion(
                    type_name, schema_version, current, "written by newer code"
                )
            raw = msgspec.json.decode(data)
            for version in range(schema_version, current):
                upcast = self._upcasters.get((type_name, version))
                if upcast is None:
                    raise UnsupportedSchemaVersion(
                        type_name,
                        schema_version,
                        current,
                        f"no upcaster from version {version} to {version + 1}",
                    )
                raw = upcast(raw)
            return msgspec.convert(raw, payload_type)
        except msgspec.ValidationError as e:
            raise UnsupportedSchemaVersion(
                type_name, schema_version, current, f"payload does not match: {e}"
            ) from e
