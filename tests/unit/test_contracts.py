"""Wire contracts: golden files decode and re-encode to the same bytes; inbound messages
refuse unknown fields; the JSON Schema is printed for other languages."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import msgspec
import pytest

from turnlog.contracts import bus, events

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
CASES: list[tuple[str, Any, type]] = [
    ("inbound_message.json", bus.Inbound, bus.InboundMessage),
    ("close_session.json", bus.Inbound, bus.CloseSession),
    ("set_session_vars.json", bus.Inbound, bus.SetSessionVars),
    ("prompt_answer.json", bus.Inbound, bus.PromptAnswer),
    ("event_envelope.json", bus.EventEnvelope, bus.EventEnvelope),
    ("live_chunk.json", bus.Live, bus.LiveChunk),
    ("live_notification.json", bus.Live, bus.LiveNotification),
    ("live_reply.json", bus.Live, bus.LiveReply),
    ("live_block.json", bus.Live, bus.LiveBlock),
    ("live_done.json", bus.Live, bus.LiveDone),
    ("dead_letter.json", bus.DeadLetter, bus.DeadLetter),
    ("user_erased.json", events.UserErased, events.UserErased),
]


@pytest.mark.parametrize(("name", "wire_type", "expected"), CASES, ids=[c[0] for c in CASES])
def test_golden_files_decode_and_reencode_byte_for_byte(
    name: str, wire_type: Any, expected: type
) -> None:
    raw = (GOLDEN / name).read_bytes()
    value = msgspec.json.decode(raw, type=wire_type)
    assert type(value) is expected
    assert msgspec.json.encode(value) == raw


def test_golden_values_mean_what_they_say() -> None:
    message = msgspec.json.decode((GOLDEN / "inbound_message.json").read_bytes(), type=bus.Inbound)
    assert isinstance(message, bus.InboundMessage)
    assert message.user.org_id == "acme" and message.attachments[0].size == 42
    letter = msgspec.json.decode((GOLDEN / "dead_letter.json").read_bytes(), type=bus.DeadLetter)
    assert letter.original == b'{"kind":"message"}'


def test_an_erasure_recorded_before_apps_were_named_still_reads() -> None:
    old = b'{"user_id":"alice","reason":"","key_generations":[1]}'
    assert msgspec.json.decode(old, type=events.UserErased).apps == ()


def test_inbound_messages_refuse_unknown_fields_and_outbound_ones_tolerate_them() -> None:
    with pytest.raises(msgspec.ValidationError, match="unknown field `txt`"):
        msgspec.json.decode(
            b'{"kind":"message","message_id":"m","user":{"id":"u"},"text":"x","txt":"typo"}',
            type=bus.Inbound,
        )
    envelope = json.loads((GOLDEN / "event_envelope.json").read_text())
    envelope["added_later"] = True
    decoded = msgspec.json.decode(json.dumps(envelope), type=bus.EventEnvelope)
    assert decoded.position == 42


def test_contracts_schema_prints_json_schema_for_every_contract() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "turnlog", "contracts", "schema"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    schemas = json.loads(result.stdout)
    assert set(schemas) == {
        "inbound",
        "event_envelope",
        "live",
        "dead_letter",
        "integration_command",
        "integration_answer",
        "integration_changed",
    }
    inbound = schemas["inbound"]
    assert inbound["discriminator"]["propertyName"] == "kind"
    assert set(inbound["discriminator"]["mapping"]) == {
        "message",
        "close",
        "set_vars",
        "prompt_answer",
    }
    message = inbound["$defs"]["InboundMessage"]
    assert message["additionalProperties"] is False
    assert {"message_id", "user", "text"} <= set(message["required"])
