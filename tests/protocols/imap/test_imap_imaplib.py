"""Python's imaplib, a real IMAP4rev1 client, against the core with an in-memory mailbox:
greeting, CAPABILITY, LOGIN, SELECT, APPEND with a synchronising literal, SEARCH, FETCH of
literals and structures, STORE, UID commands, EXPUNGE and LOGOUT, without a socket."""

from __future__ import annotations

import imaplib

from postoffice.protocols.imap import Atom, No, Ok, SequenceSet, codes, events, responses
from postoffice.protocols.imap.fetch import FetchAttribute
from postoffice.protocols.imap.sections import section
from postoffice.protocols.imap.structure import bodystructure, envelope

from .driver import Session, default_answer

CAPABILITIES = ("IMAP4rev1", "IMAP4rev2", "LITERAL+", "IDLE", "UIDPLUS", "AUTH=PLAIN")
MESSAGE = b"From: Ann <ann@example.org>\r\nSubject: hello\r\n\r\nHi there.\r\n"


class Mailbox:
    """One folder: (uid, flags, message) triples, answered as a simple server would."""

    def __init__(self) -> None:
        self.messages: list[tuple[int, set[str], bytes]] = [(1, set(), MESSAGE)]
        self.next_uid = 2

    def answer(self, event: events.Event) -> list[responses.Response]:
        match event:
            case events.Capability():
                return [responses.Capabilities(CAPABILITIES), Ok("CAPABILITY completed")]
            case events.Select(mailbox="INBOX"):
                return [
                    responses.Flags(("\\Seen", "\\Deleted")),
                    responses.Exists(len(self.messages)),
                    responses.UntaggedOk("UIDs valid", codes.uidvalidity(7)),
                    responses.UntaggedOk("next UID", codes.uidnext(self.next_uid)),
                    Ok("SELECT completed", codes.READ_WRITE),
                ]
            case events.Select():
                return [No("no such mailbox", codes.NONEXISTENT)]
            case events.Append(messages=(events.AppendMessage(flags, _, message),)):
                uid = self.next_uid
                self.messages.append((uid, set(flags), message))
                self.next_uid += 1
                return [Ok("APPEND completed", codes.appenduid(7, SequenceSet.of([uid])))]
            case events.Search(uid=uid):
                numbers = tuple(m[0] if uid else n for n, m in enumerate(self.messages, 1))
                return [responses.SearchResult(numbers), Ok("SEARCH completed")]
            case events.Fetch(sequence=sequence, request=request, uid=uid):
                found = []
                for number, (message_uid, flags, message) in enumerate(self.messages, 1):
                    key, largest = (
                        (message_uid, self.next_uid - 1) if uid else (number, len(self.messages))
                    )
                    if sequence.contains(key, largest):
                        items = tuple(
                            self._item(a, message_uid, flags, message) for a in request.attributes
                        )
                        found.append(responses.FetchResult(number, items))
                return [*found, Ok("FETCH completed")]
            case events.Store(sequence=sequence, flags=flags):
                for number, (_, message_flags, _) in enumerate(self.messages, 1):
                    if sequence.contains(number, len(self.messages)):
                        message_flags.update(flags)
                return [Ok("STORE completed")]
            case events.Expunge():
                kept = [m for m in self.messages if "\\Deleted" not in m[1]]
                gone = [n for n, m in enumerate(self.messages, 1) if "\\Deleted" in m[1]]
                self.messages = kept
                return [*(responses.Expunge(n) for n in reversed(gone)), Ok("EXPUNGE completed")]
        return default_answer(event)

    @staticmethod
    def _item(
        attribute: FetchAttribute, uid: int, flags: set[str], message: bytes
    ) -> tuple[str, object]:
        match attribute.name:
            case "UID":
                return "UID", uid
            case "FLAGS":
                return "FLAGS", tuple(Atom(f) for f in sorted(flags))
            case "RFC822.SIZE":
                return "RFC822.SIZE", len(message)
            case "ENVELOPE":
                return "ENVELOPE", envelope(message)
            case "BODYSTRUCTURE":
                return "BODYSTRUCTURE", bodystructure(message)
        assert attribute.section is not None
        return attribute.response_name, section(message, attribute.section, attribute.partial)


class Loopback(imaplib.IMAP4):
    """imaplib with its socket replaced by a Session driving the core."""

    def __init__(self, mailbox: Mailbox) -> None:
        self.session = Session(answer=mailbox.answer)
        self.pending = bytearray()
        super().__init__()

    def open(self, host: str = "", port: int = 143, timeout: float | None = None) -> None:
        self.host, self.port = host, port
        self.pending += self.session.output()

    def send(self, data: bytes) -> None:
        self.session.feed(data)
        self.pending += self.session.output()

    def readline(self) -> bytes:
        end = self.pending.index(b"\n") + 1
        line = bytes(self.pending[:end])
        del self.pending[:end]
        return line

    def read(self, size: int) -> bytes:
        data = bytes(self.pending[:size])
        del self.pending[:size]
        return data

    def shutdown(self) -> None:
        pass


def test_imaplib_session() -> None:
    mailbox = Mailbox()
    client = Loopback(mailbox)
    assert "IMAP4REV1" in client.capabilities
    assert client.login("alice", "secret pass")[0] == "OK"
    typ, data = client.select("INBOX")
    assert (typ, data) == ("OK", [b"1"])
    assert client.select("Nowhere")[0] == "NO"
    client.select("INBOX")

    typ, data = client.append(
        "INBOX", "(\\Seen)", imaplib.Time2Internaldate(0), b"Subject: two\r\n\r\nsecond\r\n"
    )
    assert typ == "OK" and b"APPENDUID 7 2" in data[0]
    assert mailbox.messages[-1] == (2, {"\\Seen"}, b"Subject: two\r\n\r\nsecond\r\n")

    assert client.search(None, "ALL") == ("OK", [b"1 2"])
    assert client.uid("SEARCH", "UNSEEN") == ("OK", [b"1 2"])

    typ, data = client.fetch("1", "(UID RFC822.SIZE BODY.PEEK[HEADER.FIELDS (Subject)] BODY[TEXT])")
    assert typ == "OK"
    assert data[0][1] == b"Subject: hello\r\n\r\n"
    assert data[1][1] == b"Hi there.\r\n"
    assert b"UID 1 RFC822.SIZE %d" % len(MESSAGE) in data[0][0]

    typ, data = client.fetch("1:*", "(ENVELOPE BODYSTRUCTURE)")
    assert typ == "OK" and len(data) == 2
    assert b'"hello" (("Ann" NIL "ann" "example.org"))' in data[0]

    assert client.uid("FETCH", "2", "(FLAGS)") == ("OK", [b"2 (FLAGS (\\Seen))"])
    assert client.store("1", "+FLAGS", "(\\Deleted)")[0] == "OK"
    assert client.expunge() == ("OK", [b"1"])
    assert [m[0] for m in mailbox.messages] == [2]
    assert client.logout()[0] == "BYE"
    assert client.session.conn.closed
