"""What the queue knows about one message: its envelope and per-recipient state.

A `QueueEntry` is serialised as one line of JSON: at the head of the message file
when the message is stored, and as the small state file whose directory (active/,
deferred/, hold/) is the message's state once the queue changes it. The directory
is the only record of the state, so `state` is not written into the file, and
neither is `recovered`, which only describes the running process. Decoding
tolerates missing optional fields (older files) and reports anything malformed as
`ValueError`. See docs/on-disk-layout.md.

Standards: RFC 3461 §4.2 (ORCPT: the original recipient is kept per recipient),
RFC 3464 §2.3 (per-recipient status, remote reply and last attempt for DSNs).
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field, fields

_FORMAT = 1


class QueueState(enum.Enum):
    ACTIVE = "active"  # due for delivery now
    DEFERRED = "deferred"  # waiting for next_attempt
    HOLD = "hold"  # held by an administrator


class RecipientStatus(enum.Enum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


@dataclass(slots=True)
class RecipientState:
    address: str  # final address after alias expansion
    original: str  # address as given in RCPT TO (for DSN Original-Recipient)
    status: RecipientStatus = RecipientStatus.PENDING
    attempts: int = 0
    last_status: str = ""  # enhanced status code of the last attempt
    last_detail: str = ""  # reply text of the last attempt
    remote_reply: str | None = None

    def as_event(self) -> dict[str, object]:
        """The fields of its delivery events (`delivered`, `deferred`, …) in the log."""
        return {
            "recipient": self.address,
            "original": self.original,
            "status": self.last_status,
            "detail": self.last_detail,
            "remote_reply": self.remote_reply,
            "attempts": self.attempts,
        }


@dataclass(slots=True)
class QueueEntry:
    qid: str
    sender: str  # "" for the null reverse-path <>
    recipients: list[RecipientState]
    arrival: float  # seconds since epoch when the 250 was given
    size: int  # octets of the stored message
    state: QueueState = QueueState.ACTIVE
    next_attempt: float = 0.0
    attempts: int = 0
    last_attempt: float = 0.0  # when the last delivery attempt started (DSN Last-Attempt-Date)
    message_id: str = ""
    client: dict[str, str] = field(default_factory=dict)  # addr, helo, tls, auth, protocol
    warned: bool = False  # delay warning sent (RFC 3464 "delayed")
    recovered: bool = False  # an earlier attempt may have been cut off (crash, failed save)

    @property
    def pending(self) -> list[RecipientState]:
        return [r for r in self.recipients if r.status is RecipientStatus.PENDING]

    @property
    def delivered(self) -> list[RecipientState]:
        return [r for r in self.recipients if r.status is RecipientStatus.DELIVERED]

    def to_json(self) -> bytes:
        """The contents of the state file."""
        record: dict[str, object] = {name: getattr(self, name) for name in _STORED_FIELDS}
        record["recipients"] = [
            {f.name: getattr(r, f.name) for f in _RECIPIENT_FIELDS} | {"status": r.status.value}
            for r in self.recipients
        ]
        record["format"] = _FORMAT
        return json.dumps(record, sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes, state: QueueState) -> QueueEntry:
        """Decode a state file found in the directory of `state`; `ValueError` if malformed."""
        try:
            record = json.loads(data)
            if record.get("format") != _FORMAT:
                raise ValueError(f"unknown state file format {record.get('format')!r}")
            values = {name: record[name] for name in _STORED_FIELDS if name in record}
            values["recipients"] = [
                RecipientState(**(r | {"status": RecipientStatus(r["status"])}))
                for r in record["recipients"]
            ]
            return cls(**values, state=state)
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"malformed state file: {exc!r}") from exc


_RECIPIENT_FIELDS = fields(RecipientState)
_STORED_FIELDS = tuple(f.name for f in fields(QueueEntry) if f.name not in {"state", "recovered"})
