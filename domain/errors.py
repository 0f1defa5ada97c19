"""Errors raised by the model when a command would break one of its rules, and the root
of every error turnlog raises on purpose (``TurnlogError``, defined here, in the lowest
layer that raises: contracts hold data only)."""

from __future__ import annotations


class TurnlogError(Exception):
    """Base of every error turnlog raises on purpose (``turnlog.TurnlogError``): a rule
    the model enforces, a store or server that refuses or cannot be reached, an app
    declared or used wrongly, a request refused. Anything else escaping turnlog is a bug.

    Each class names itself by ``code``; the adapters turn codes into what their wire
    says (an HTTP status in ``services/adapters/http/errors.py``, a dead letter's reason
    in ``services/adapters/nats/dead_letters.py``)."""

    code: str = "error"
    """A stable snake_case name of the error, shared only by errors that mean the same
    on the wire."""


class DomainError(TurnlogError):
    """Base of every error the model raises for a command it refuses."""

    code = "domain_error"


class SessionClosed(DomainError):
    """Raised when anything is recorded on a session after ``session.ended``."""

    code = "session_closed"

    def __init__(self, session_id: object) -> None:
        self.session_id = session_id
        super().__init__(f"session {session_id} has ended; nothing more can be recorded on it")


class TurnInProgress(DomainError):
    """Raised when a message arrives, or the session ends, while another turn is still open."""

    code = "turn_in_progress"

    def __init__(self, message_id: str) -> None:
        self.message_id = message_id
        super().__init__(f"turn for message {message_id!r} is still in progress")


class NoTurnInProgress(DomainError):
    """Raised when a turn is completed or interrupted but none is open."""

    code = "no_turn_in_progress"

    def __init__(self) -> None:
        super().__init__("no turn is in progress")


class PromptWaiting(DomainError):
    """Raised when a handler prompts while an earlier prompt is still waiting."""

    code = "prompt_waiting"

    def __init__(self, prompt_id: str) -> None:
        self.prompt_id = prompt_id
        super().__init__(f"prompt {prompt_id!r} is still waiting for the user")


class NoPromptWaiting(DomainError):
    """Raised when a prompt is answered that is not the one waiting (or none is)."""

    code = "no_prompt_waiting"

    def __init__(self, prompt_id: str | None) -> None:
        self.prompt_id = prompt_id
        what = f"prompt {prompt_id!r} is not waiting" if prompt_id else "no prompt is waiting"
        super().__init__(what)


class NotJSONEncodable(DomainError):
    """Raised when a stored value (data, block payload, effect result) is not plain JSON."""

    code = "not_json_encodable"

    def __init__(self, path: str, value: object) -> None:
        self.path = path
        self.value_type = type(value).__name__
        super().__init__(
            f"{path} holds a {self.value_type}, which is not JSON-encodable "
            "(allowed: None, bool, int, finite float, str, list, dict with str keys)"
        )


class TooLarge(DomainError):
    """Raised when a text or an encoded payload is larger than the model accepts."""

    code = "too_large"

    def __init__(self, what: str, size: int, limit: int) -> None:
        self.what = what
        self.size = size
        self.limit = limit
        super().__init__(f"{what} is {size} long; the limit is {limit}")


class InvalidValue(DomainError):
    """Raised when a key, name or identifier is empty or otherwise unusable."""

    code = "invalid_value"


class InvalidText(InvalidValue):
    """Raised when a text to store holds U+0000 (NUL) or a surrogate code point on its
    own (U+D800 to U+DFFF): neither can be stored by PostgreSQL (text, jsonb) or encoded
    as UTF-8. The message names where, never the text itself."""

    code = "invalid_text"

    def __init__(self, what: str, index: int, char: str) -> None:
        self.what, self.index = what, index
        self.char = f"U+{ord(char):04X}"
        kind = "NUL" if char == "\x00" else "a lone surrogate"
        super().__init__(
            f"{what} holds {kind} ({self.char}) at index {index}; turnlog stores no U+0000"
            " and no lone surrogate (U+D800 to U+DFFF)"
        )


class TooDeep(InvalidValue):
    """Raised when lists and objects in a stored JSON value nest deeper than allowed."""

    code = "too_deep"

    def __init__(self, path: str, limit: int) -> None:
        self.path, self.limit = path, limit
        where = path if len(path) <= 120 else path[:120] + "..."
        super().__init__(f"{where} nests lists and objects deeper than {limit} levels")


class InvalidUser(InvalidValue):
    """Raised when a user id from outside turnlog starts with a prefix turnlog reserves
    (``org:`` for owner keys, ``app:`` for an app's own system user)."""

    code = "invalid_user"


class UnknownDataKey(DomainError):
    """Raised when a ``session.data`` key that is not set is deleted."""

    code = "unknown_data_key"

    def __init__(self, key: str) -> None:
        self.key = key
        super().__init__(f"session.data has no key {key!r}")


class DocumentDeleted(DomainError):
    """Raised when a deleted document is updated or deleted again."""

    code = "document_deleted"

    def __init__(self, doc_id: str) -> None:
        self.doc_id = doc_id
        super().__init__(f"document {doc_id!r} has been deleted")


class QueryError(DomainError):
    """Raised when a collection filter, update or sort is malformed: an unknown operator, a
    field path that is not allowed, or an operand of the wrong kind."""

    code = "invalid_query"
