"""Parse one complete IMAP command into an event, or into a CommandError with the answer.

The tag comes first: without a readable tag the answer is an untagged BAD (RFC 9051 §7.1.3).
Then the command name, case-insensitive, picks its parser from an explicit dict (UID picks
from a second one). Parsers are pure functions of the command's bytes and the session's
UTF-8 mode; they never see the session state, whose rules live in states.py. The grammar
is followed strictly (one SP between elements, nothing after the end), because a lenient
reading of a malformed command is how two parties come to disagree about where a command
ends. A line may end in a bare LF as well as CRLF: IMAP carries no dot-terminated data a
client sends, so there is nothing to smuggle, and hand-typed sessions send LF.

Standards: RFC 9051 §6, §9 (command grammar); RFC 3501 §6.3.9, §6.4.1 (LSUB, CHECK);
RFC 2177 §3; RFC 2971 §3.1; RFC 4315 §2.1; RFC 4959 §3; RFC 5161 §3.1; RFC 5258 §3;
RFC 5819 §2; RFC 6154 §3, §5; RFC 6851 §3; RFC 7162 §3.1.2-§3.1.3, §3.2.5; RFC 7889 §3;
RFC 3502 §6 (MULTIAPPEND)
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import partial
from typing import Any

from postoffice.protocols.imap.events import (
    Append,
    AppendMessage,
    Authenticate,
    AuthenticateData,
    Capability,
    Check,
    Close,
    Command,
    CommandError,
    Copy,
    Create,
    Delete,
    Done,
    Enable,
    Examine,
    Expunge,
    Fetch,
    Id,
    Idle,
    List,
    Login,
    Logout,
    Lsub,
    Move,
    Namespace,
    Noop,
    Qresync,
    Rename,
    Search,
    Select,
    StartTls,
    Status,
    Store,
    StoreMode,
    Subscribe,
    Unselect,
    Unsubscribe,
)
from postoffice.protocols.imap.fetch import parse_fetch
from postoffice.protocols.imap.lexer import MAX_NUMBER64, Cursor, ParseError, ParseLimits
from postoffice.protocols.imap.responses import (
    EXPECTED_DONE,
    UNKNOWN_COMMAND,
    No,
    syntax,
)
from postoffice.protocols.imap.search import parse_search

Parser = Callable[[Cursor, str], Command]

# RFC 9051 §6.3.11, RFC 3501 §6.3.10 (RECENT), RFC 7162 §3.1.8, RFC 7889 §3.2
STATUS_ITEMS = frozenset(
    {
        "MESSAGES",
        "UIDNEXT",
        "UIDVALIDITY",
        "UNSEEN",
        "DELETED",
        "SIZE",
        "RECENT",
        "HIGHESTMODSEQ",
        "APPENDLIMIT",
    }
)
LIST_SELECTION = frozenset({"SUBSCRIBED", "REMOTE", "RECURSIVEMATCH", "SPECIAL-USE"})
LIST_RETURNS = frozenset({"SUBSCRIBED", "CHILDREN", "SPECIAL-USE", "STATUS"})
# RFC 6154 §2: the special-use attributes, matched without regard to case
SPECIAL_USE = {
    a.upper(): a
    for a in ("\\All", "\\Archive", "\\Drafts", "\\Flagged", "\\Junk", "\\Sent", "\\Trash")
}
ID_PAIRS, ID_FIELD, ID_VALUE = 30, 30, 1024  # RFC 2971 §3.3
_BASE64 = re.compile(rb"[A-Za-z0-9+/]+={0,2}|=")  # RFC 4959 §7: base64 / "="
_STORE_ITEM = re.compile(rb"([+-]?)FLAGS(\.SILENT)?", re.IGNORECASE)
_LINE_END = re.compile(rb"\r?\n\Z")


def parse_command(data: bytes, *, utf8: bool, limits: ParseLimits) -> Command:
    """One whole command (its lines and literals, as framed) as an event."""
    cursor = Cursor(data, utf8=utf8, limits=limits)
    try:
        tag = cursor.tag()
        cursor.sp()
    except ParseError:
        return CommandError(None, syntax("a command starts with a tag and a space"))
    try:
        name = cursor.keyword()
        if name == "UID":
            cursor.sp()
            name = cursor.keyword()
            parser = _UID_COMMANDS.get(name)
        else:
            parser = _COMMANDS.get(name)
        if parser is None:
            return CommandError(tag, UNKNOWN_COMMAND)
        return parser(cursor, tag)
    except ParseError as error:
        if error.code is not None:
            return CommandError(tag, No(error.message, error.code))
        return CommandError(tag, syntax(error.message))


def parse_authenticate_data(line: bytes, tag: str) -> Command:
    """A SASL response line after a challenge (RFC 9051 §6.2.2): base64 or "*"."""
    text = _LINE_END.sub(b"", line)
    if not text.isascii():
        return CommandError(tag, syntax("a SASL response is base64"))
    return AuthenticateData(tag, text.decode("ascii"))


def parse_done(line: bytes, tag: str) -> Command:
    """The line that must end IDLE (RFC 2177 §3)."""
    if _LINE_END.sub(b"", line).upper() == b"DONE":
        return Done(tag)
    return CommandError(tag, EXPECTED_DONE)


def _bare(event: Callable[[str], Command]) -> Parser:
    def parse(cursor: Cursor, tag: str) -> Command:
        cursor.end()
        return event(tag)

    return parse


def _login(cursor: Cursor, tag: str) -> Command:
    cursor.sp()
    user = cursor.text(cursor.astring())
    cursor.sp()
    password = cursor.text(cursor.astring())
    cursor.end()
    return Login(tag, user, password)


def _authenticate(cursor: Cursor, tag: str) -> Command:
    cursor.sp()
    mechanism = cursor.keyword()
    initial = None
    if cursor.accept(b" "):  # RFC 4959 §7: SASL-IR
        found = cursor.match(_BASE64)
        if found is None:
            raise ParseError("the initial response is base64 or =")
        initial = found[0].decode("ascii")
    cursor.end()
    return Authenticate(tag, mechanism, initial)


def _id(cursor: Cursor, tag: str) -> Command:
    cursor.sp()
    if cursor.accept(b"NIL"):
        cursor.end()
        return Id(tag, None)
    cursor.open()
    fields: list[tuple[str, str | None]] = []
    while cursor.peek() != b")":
        if fields:
            cursor.sp()
        field = cursor.text(cursor.string())
        cursor.sp()
        raw = cursor.nstring()
        value = None if raw is None else cursor.text(raw)
        if len(field) > ID_FIELD or len(value or "") > ID_VALUE or len(fields) == ID_PAIRS:
            raise ParseError("ID field, value or list too long")
        fields.append((field, value))
        cursor.count()
    cursor.close()
    cursor.end()
    return Id(tag, tuple(fields))


def _enable(cursor: Cursor, tag: str) -> Command:
    names = []
    while cursor.accept(b" "):
        names.append(cursor.keyword())
        cursor.count()
    if not names:
        raise ParseError("ENABLE needs a capability")
    cursor.end()
    return Enable(tag, tuple(names))


def _select(event: type[Select] | type[Examine]) -> Parser:
    def parse(cursor: Cursor, tag: str) -> Command:
        cursor.sp()
        mailbox = cursor.mailbox()
        params: dict[str, Any] = {}
        if cursor.accept(b" "):  # RFC 9051 §9 select-params; RFC 7162 §3.1.8, §3.2.5
            params = cursor.options(
                {"CONDSTORE": None, "QRESYNC": partial(_qresync, cursor)}, "parameter"
            )
        condstore, qresync = "CONDSTORE" in params, params.get("QRESYNC")
        cursor.end()
        return event(tag, mailbox, condstore, qresync)

    return parse


def _qresync(cursor: Cursor) -> Qresync:
    """RFC 7162 §3.2.5: (uidvalidity modseq [known-uids] [(known-seq known-uid)])."""
    cursor.open()
    uidvalidity = cursor.number(minimum=1)
    cursor.sp()
    modseq = cursor.number(minimum=1, maximum=MAX_NUMBER64)
    known_uids = known_sequence = known_sequence_uids = None
    more = cursor.accept(b" ")
    if more and cursor.peek() != b"(":
        known_uids = cursor.sequence_set()
        more = cursor.accept(b" ")
    if more:  # seq-match-data
        cursor.open()
        known_sequence = cursor.sequence_set()
        cursor.sp()
        known_sequence_uids = cursor.sequence_set()
        cursor.close()
    cursor.close()
    return Qresync(uidvalidity, modseq, known_uids, known_sequence, known_sequence_uids)


def _mailbox_only(event: Callable[[str, str], Command]) -> Parser:
    def parse(cursor: Cursor, tag: str) -> Command:
        cursor.sp()
        mailbox = cursor.mailbox()
        cursor.end()
        return event(tag, mailbox)

    return parse


def _create(cursor: Cursor, tag: str) -> Command:
    cursor.sp()
    mailbox = cursor.mailbox()
    uses: tuple[str, ...] = ()
    if cursor.accept(b" "):  # RFC 6154 §3: create-param "USE" SP "(" use-attr ... ")"
        cursor.open()
        cursor.expect(b"USE ")
        uses = tuple(cursor.items(lambda: _special_use(cursor), empty=True))
        cursor.close()
    cursor.end()
    return Create(tag, mailbox, uses)


def _special_use(cursor: Cursor) -> str:
    cursor.expect(b"\\")
    name = "\\" + cursor.atom()
    return SPECIAL_USE.get(name.upper(), name)


def _rename(cursor: Cursor, tag: str) -> Command:
    cursor.sp()
    old = cursor.mailbox()
    cursor.sp()
    new = cursor.mailbox()
    cursor.end()
    return Rename(tag, old, new)


def _list(cursor: Cursor, tag: str) -> Command:
    cursor.sp()
    selection: frozenset[str] = frozenset()
    if cursor.peek() == b"(":  # RFC 5258 §3.1: list-select-opts
        selection = frozenset(
            cursor.options(dict.fromkeys(LIST_SELECTION), "selection option", empty=True)
        )
        if "RECURSIVEMATCH" in selection and not selection - {"RECURSIVEMATCH", "REMOTE"}:
            raise ParseError("RECURSIVEMATCH needs another selection option")
        cursor.sp()
    reference = cursor.mailbox()
    cursor.sp()
    if cursor.peek() == b"(":  # RFC 5258 §3: several patterns
        patterns = tuple(cursor.items(cursor.list_mailbox))
    else:
        patterns = (cursor.list_mailbox(),)
    returns: dict[str, Any] = {}
    if cursor.accept(b" "):  # RFC 5258 §3.2: list-return-opts
        cursor.expect(b"RETURN ")
        # RFC 5819 §2: STATUS (status-att ...)
        options = dict.fromkeys(LIST_RETURNS) | {"STATUS": partial(_status_items, cursor)}
        returns = cursor.options(options, "return option", empty=True)
    cursor.end()
    return List(tag, reference, patterns, selection, frozenset(returns), returns.get("STATUS", ()))


def _lsub(cursor: Cursor, tag: str) -> Command:
    cursor.sp()
    reference = cursor.mailbox()
    cursor.sp()
    pattern = cursor.list_mailbox()
    cursor.end()
    return Lsub(tag, reference, pattern)


def _status_items(cursor: Cursor) -> tuple[str, ...]:
    items = tuple(cursor.items(cursor.keyword))
    if not set(items) <= STATUS_ITEMS:
        raise ParseError("unknown STATUS item")
    return items


def _status(cursor: Cursor, tag: str) -> Command:
    cursor.sp()
    mailbox = cursor.mailbox()
    cursor.sp()
    items = _status_items(cursor)
    cursor.end()
    return Status(tag, mailbox, items)


def _append(cursor: Cursor, tag: str) -> Command:
    cursor.sp()
    mailbox = cursor.mailbox()
    messages = []
    while cursor.accept(b" "):  # RFC 3502 §6: 1*append-message (MULTIAPPEND)
        messages.append(_append_message(cursor))
        cursor.count()
    if not messages:
        raise ParseError("APPEND needs a message")
    cursor.end()
    return Append(tag, mailbox, tuple(messages))


def _append_message(cursor: Cursor) -> AppendMessage:
    flags: tuple[str, ...] = ()
    if cursor.peek() == b"(":
        flags = cursor.flag_list()
        cursor.sp()
    date = None
    if cursor.peek() == b'"':
        date = cursor.date_time()
        cursor.sp()
    binary = cursor.peek() == b"~"  # RFC 3516 §4.4: literal8
    return AppendMessage(flags, date, cursor.literal(binary=True), binary)


def _search(uid: bool) -> Parser:
    def parse(cursor: Cursor, tag: str) -> Command:
        program = parse_search(cursor)
        cursor.end()
        return Search(tag, uid, program)

    return parse


def _fetch(uid: bool) -> Parser:
    def parse(cursor: Cursor, tag: str) -> Command:
        cursor.sp()
        sequence = cursor.sequence_set()
        cursor.sp()
        request = parse_fetch(cursor)
        cursor.end()
        if request.vanished and not uid:
            raise ParseError("VANISHED is for UID FETCH")  # RFC 7162 §3.2.6
        return Fetch(tag, uid, sequence, request)

    return parse


def _store(uid: bool) -> Parser:
    def parse(cursor: Cursor, tag: str) -> Command:
        cursor.sp()
        sequence = cursor.sequence_set()
        cursor.sp()
        unchanged_since = None
        if cursor.peek() == b"(":  # RFC 7162 §3.1.3: store-modifiers
            cursor.open()
            cursor.expect(b"UNCHANGEDSINCE ")
            unchanged_since = cursor.number(maximum=MAX_NUMBER64)  # mod-sequence-valzer
            cursor.close()
            cursor.sp()
        item = cursor.match(_STORE_ITEM)
        if item is None:
            raise ParseError("expected FLAGS, +FLAGS or -FLAGS")
        mode = StoreMode(item[1].decode("ascii") + "FLAGS")
        cursor.sp()
        if cursor.peek() == b"(":
            flags = cursor.flag_list()
        else:  # RFC 9051 §9: flag *(SP flag)
            flags = (cursor.flag(),)
            while cursor.accept(b" "):
                flags += (cursor.flag(),)
                cursor.count()
        cursor.end()
        return Store(tag, uid, sequence, mode, flags, item[2] is not None, unchanged_since)

    return parse


def _transfer(event: type[Copy] | type[Move], uid: bool) -> Parser:
    def parse(cursor: Cursor, tag: str) -> Command:
        cursor.sp()
        sequence = cursor.sequence_set()
        cursor.sp()
        mailbox = cursor.mailbox()
        cursor.end()
        return event(tag, uid, sequence, mailbox)

    return parse


def _uid_expunge(cursor: Cursor, tag: str) -> Command:
    cursor.sp()
    uids = cursor.sequence_set()
    cursor.end()
    return Expunge(tag, uids)


_COMMANDS: dict[str, Parser] = {
    "CAPABILITY": _bare(Capability),
    "NOOP": _bare(Noop),
    "LOGOUT": _bare(Logout),
    "ID": _id,
    "STARTTLS": _bare(StartTls),
    "AUTHENTICATE": _authenticate,
    "LOGIN": _login,
    "ENABLE": _enable,
    "SELECT": _select(Select),
    "EXAMINE": _select(Examine),
    "NAMESPACE": _bare(Namespace),
    "CREATE": _create,
    "DELETE": _mailbox_only(Delete),
    "RENAME": _rename,
    "SUBSCRIBE": _mailbox_only(Subscribe),
    "UNSUBSCRIBE": _mailbox_only(Unsubscribe),
    "LIST": _list,
    "LSUB": _lsub,
    "STATUS": _status,
    "APPEND": _append,
    "IDLE": _bare(Idle),
    "CHECK": _bare(Check),
    "CLOSE": _bare(Close),
    "UNSELECT": _bare(Unselect),
    "EXPUNGE": _bare(Expunge),
    "SEARCH": _search(uid=False),
    "FETCH": _fetch(uid=False),
    "STORE": _store(uid=False),
    "COPY": _transfer(Copy, uid=False),
    "MOVE": _transfer(Move, uid=False),
}

_UID_COMMANDS: dict[str, Parser] = {
    "SEARCH": _search(uid=True),
    "FETCH": _fetch(uid=True),
    "STORE": _store(uid=True),
    "COPY": _transfer(Copy, uid=True),
    "MOVE": _transfer(Move, uid=True),
    "EXPUNGE": _uid_expunge,  # RFC 4315 §2.1
}
