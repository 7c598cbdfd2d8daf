"""The selected mailbox of an IMAP session: a snapshot of the store, its updates and lookups.

A session sees its mailbox through `SelectedMailbox`: the message list it last told the
client about (message sequence numbers are positions in it), refreshed from the store's
`messages()` between commands so that changes by other sessions and by delivery are
reported as untagged EXPUNGE (descending, so every number is valid when sent), FETCH
(FLAGS, and MODSEQ once CONDSTORE is on) and EXISTS responses; with QRESYNC enabled one
VANISHED replaces the EXPUNGEs. `resync` answers SELECT's QRESYNC parameter and `vanished`
UID FETCH's VANISHED modifier from the store's record of expunged UIDs; when that record
does not reach back far enough, every UID the client may know and the mailbox no longer
holds is reported, which RFC 7162 §3.2.5.2 allows (seq-match-data is not needed then).
SEARCH criteria (the core's tree, search.py) are evaluated here over `MessageInfo` and,
only for header, body and sent-date keys, the message octets.
FETCH data items are built here too, from the core's structure.py and sections.py.

Standards: RFC 9051 §5.2 (mailbox size and message status updates), §6.4.4 (SEARCH),
§6.4.5 and §7.5.2 (FETCH), §7.4.1 (EXPUNGE); RFC 7162 §3.1 (MODSEQ), §3.2.5 (SELECT
QRESYNC), §3.2.6 (VANISHED modifier), §3.2.10 (VANISHED); RFC 3516 (BINARY)
"""

from __future__ import annotations

import bisect
import contextlib
import datetime
import email.header
import email.utils
import functools
from collections.abc import Callable, Hashable, Iterator, Sequence
from operator import attrgetter

from postoffice.protocols.imap import mime, responses, search, sections, serializer, structure
from postoffice.protocols.imap.events import Qresync
from postoffice.protocols.imap.fetch import FetchAttribute, Section
from postoffice.protocols.imap.sequence import SequenceSet
from postoffice.protocols.imap.serializer import Atom, Literal8, Value
from postoffice.storage.base import Mailbox, MessageInfo

SYSTEM_FLAGS = ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft")
_MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
_CONTENT_FREE = frozenset({"FLAGS", "UID", "INTERNALDATE", "RFC822.SIZE", "MODSEQ"})
_CACHED_MAX = 1 << 20  # larger messages are read with `Mailbox.read`
_SUMMARY_LINES = 1024  # FETCH lines of a listing formatted and written at once
_WHOLE = Section()  # BODY[]: the whole message


@functools.lru_cache(maxsize=256)  # a mailbox has few distinct flag sets
def flag_atoms(flags: frozenset[str]) -> tuple[Atom, ...]:
    return tuple(Atom(flag) for flag in sorted(flags))


def _uid(info: MessageInfo) -> int:
    return info.uid


def internaldate(when: float) -> str:
    """RFC 9051 §9 date-time, in UTC: "17-Jul-1996 02:44:25 +0000"."""
    moment = datetime.datetime.fromtimestamp(when, datetime.UTC)
    return f"{moment.day:02d}-{_MONTHS[moment.month - 1]}-{moment:%Y %H:%M:%S} +0000"


class SelectedMailbox:
    """What one session has told its client about one mailbox."""

    def __init__(
        self,
        name: str,
        mailbox: Mailbox,
        *,
        readonly: bool,
        condstore: bool = False,
        qresync: bool = False,
    ) -> None:
        self.name, self.mailbox, self.readonly = name, mailbox, readonly
        # RFC 7162 §3.1.2: MODSEQ in unsolicited FETCH; §3.2.10: VANISHED, not EXPUNGE
        self.condstore, self.qresync = condstore or qresync, qresync
        # The store's stamp as of the snapshot (taken before it, so nothing slips between):
        # while it stands, `refresh` has nothing to tell and skips re-listing the mailbox.
        stamp, self._settled = mailbox.stamp()
        self._stamp: Hashable = stamp
        self.messages: list[MessageInfo] = mailbox.messages()
        # RFC 5182 §2.1: the last SEARCH ... SAVE result ("$"), as UIDs so that expunged
        # messages drop out of it; a new SELECT starts empty
        self.saved: frozenset[int] = frozenset()

    def close(self) -> None:
        self.mailbox.close()

    # -- addressing --------------------------------------------------------------------

    def targets(self, sequence: SequenceSet, *, uid: bool) -> list[tuple[int, MessageInfo]]:
        """(message number, info) for a sequence set of numbers or UIDs, in mailbox order."""
        if not self.messages:
            return []
        if sequence.saved:  # "$" names the same messages in UID and number commands
            return [(n, m) for n, m in enumerate(self.messages, 1) if m.uid in self.saved]
        if uid:  # the snapshot is in UID order: each range is a slice, found by bisection
            found = []
            for low, high in sequence.resolve(self.messages[-1].uid):
                first = bisect.bisect_left(self.messages, low, key=_uid)
                last = bisect.bisect_right(self.messages, high, key=_uid)
                found += enumerate(self.messages[first:last], first + 1)
            return found
        ranges = sequence.resolve(len(self.messages))
        return [
            (n, self.messages[n - 1])
            for low, high in ranges
            for n in range(low, min(high, len(self.messages)) + 1)
        ]

    def replace(self, info: MessageInfo, number: int = 0) -> int:
        """Put an updated `info` into the snapshot; its message number (0 if gone).

        `number`, the message number it had when the command began, spares the search."""
        if 0 < number <= len(self.messages) and self.messages[number - 1].uid == info.uid:
            self.messages[number - 1] = info
            return number
        for n, old in enumerate(self.messages, 1):
            if old.uid == info.uid:
                self.messages[n - 1] = info
                return n
        return 0

    # -- updates ---------------------------------------------------------------------

    def refresh(self, *, expunges: bool = True) -> list[responses.Response]:
        """Untagged responses that bring the client up to date with the store.

        Without `expunges` (during FETCH, STORE, SEARCH by number: RFC 9051 §7.4.1) vanished
        messages stay in the snapshot and only flag changes and new messages are reported.
        Nothing is re-listed while the store's stamp stands: a command on a large mailbox
        does not pay for a listing. A stamp taken just after a change (not trusted alone: a
        foreign change in the same mtime tick would not move it) is trusted until it
        settles; then the mailbox is listed once more, so such a change is told late, not
        missed. Changes made in this process always move the stamp.
        """
        stamp, settled = self.mailbox.stamp()
        if stamp == self._stamp and (self._settled or not settled):
            return []
        fresh = self.mailbox.messages()
        by_uid = {m.uid: m for m in fresh}
        out: list[responses.Response] = []
        gone = [n for n, m in enumerate(self.messages, 1) if m.uid not in by_uid]
        if expunges:
            out += self._expunged([(n, self.messages[n - 1]) for n in gone])
            self.messages = [m for m in self.messages if m.uid in by_uid]
        self._stamp = None if gone and not expunges else stamp  # expunges still to tell
        self._settled = settled
        known = {m.uid for m in self.messages}
        for n, old in enumerate(self.messages, 1):
            new = by_uid.get(old.uid)
            if new is not None and new.flags != old.flags:
                self.messages[n - 1] = new
                out.append(responses.FetchResult(n, self.flag_items(new)))
        added = [m for m in fresh if m.uid not in known and m.uid > self.last_uid]
        if added:
            self.messages += added
            out.append(responses.Exists(len(self.messages)))
        return out

    def flag_items(self, info: MessageInfo) -> tuple[tuple[str, Value], ...]:
        """What an unsolicited FETCH tells of a message: UID, FLAGS and, under CONDSTORE,
        MODSEQ."""
        items: tuple[tuple[str, Value], ...] = (
            ("UID", info.uid),
            ("FLAGS", flag_atoms(info.flags)),
        )
        return (*items, ("MODSEQ", (info.modseq,))) if self.condstore else items

    def _expunged(self, chosen: list[tuple[int, MessageInfo]]) -> list[responses.Response]:
        """EXPUNGE responses, descending, or one VANISHED of their UIDs under QRESYNC."""
        if not chosen:
            return []
        if self.qresync:
            return [responses.Vanished(SequenceSet.of(m.uid for _, m in chosen))]
        return [responses.Expunge(n) for n, _ in sorted(chosen, key=lambda c: c[0], reverse=True)]

    @property
    def last_uid(self) -> int:
        return self.messages[-1].uid if self.messages else 0

    # -- QRESYNC (RFC 7162 §3.2) ---------------------------------------------------------

    def resync(self, qresync: Qresync) -> list[responses.Response]:
        """SELECT's QRESYNC: VANISHED (EARLIER) for known UIDs expunged since the client's
        modseq, then a FETCH (UID FLAGS MODSEQ) for each known message changed since
        (§3.2.5.1); nothing when UIDVALIDITY differs (the client starts afresh)."""
        if qresync.uidvalidity != self.mailbox.uidvalidity:
            return []
        known = qresync.known_uids
        out: list[responses.Response] = []
        gone = self.vanished(known, qresync.modseq)
        if gone is not None:
            out.append(gone)
        largest = self.mailbox.uidnext - 1
        ranges = None if known is None else known.resolve(largest)
        for n, info in enumerate(self.messages, 1):
            if info.modseq > qresync.modseq and (ranges is None or _within(ranges, info.uid)):
                out.append(responses.FetchResult(n, self.flag_items(info)))
        return out

    def vanished(self, uids: SequenceSet | None, since: int) -> responses.Vanished | None:
        """VANISHED (EARLIER) for the UIDs among `uids` (all when None) expunged after
        modseq `since` and no longer in this session's view; None when there are none."""
        if uids is not None and uids.saved:  # RFC 5182 "$": what SEARCH ... SAVE kept
            if not self.saved:
                return None
            uids = SequenceSet.of(self.saved)
        largest = self.mailbox.uidnext - 1  # "*": any UID ever given, expunged ones too
        ranges = ((1, largest),) if uids is None else uids.resolve(largest)
        if largest < 1 or not ranges:
            return None
        expunged = self.mailbox.expunged_since(since)
        present = [m.uid for m in self.messages]
        if expunged is None:  # the record is too short: every UID we no longer hold
            gone = _gaps(ranges, present, largest)
            return responses.Vanished(SequenceSet(gone), earlier=True) if gone else None
        held = set(present)
        found = [u for u in expunged if u not in held and _within(ranges, u)]
        return responses.Vanished(SequenceSet.of(found), earlier=True) if found else None

    def expunge(self, uids: SequenceSet | None = None) -> list[responses.Response]:
        """Remove messages flagged \\Deleted (within `uids`); EXPUNGE responses, descending."""
        everything = list(enumerate(self.messages, 1))
        chosen = everything if uids is None else self.targets(uids, uid=True)
        return self.remove([(n, m) for n, m in chosen if "\\Deleted" in m.flags])

    def remove(self, chosen: list[tuple[int, MessageInfo]]) -> list[responses.Response]:
        if not chosen:
            return []
        self.mailbox.remove([m.key for _, m in chosen])
        uids = {m.uid for _, m in chosen}
        self.messages = [m for m in self.messages if m.uid not in uids]
        return self._expunged(chosen)

    # -- SEARCH ----------------------------------------------------------------------

    def search(self, key: search.SearchKey) -> list[tuple[int, MessageInfo]]:
        found = []
        for n, info in enumerate(self.messages, 1):
            cache: dict[str, bytes] = {}

            def content(info: MessageInfo = info, cache: dict[str, bytes] = cache) -> bytes:
                if "data" not in cache:
                    try:
                        cache["data"] = self.mailbox.read(info.key)
                    except (KeyError, OSError):
                        cache["data"] = b""
                return cache["data"]

            if _matches(
                key,
                n,
                info=info,
                content=content,
                last_uid=self.last_uid,
                count=len(self.messages),
                saved=self.saved,
            ):
                found.append((n, info))
        return found

    # -- FETCH -----------------------------------------------------------------------

    def fetch_items(
        self, info: MessageInfo, attributes: tuple[FetchAttribute, ...], content: bytes | None
    ) -> list[tuple[str, Value]]:
        """Each attribute's response name and value; `content` when any needs the octets."""
        data = content or b""
        return [(attr.response_name, _fetch_value(attr, info, data)) for attr in attributes]

    def summaries(
        self,
        chosen: list[tuple[int, MessageInfo]],
        attributes: tuple[FetchAttribute, ...],
        utf8: bool,
    ) -> Iterator[bytes]:
        """FETCH lines of content-free `attributes` (not `needs_content`) for `chosen`, in
        chunks: one `%` per message on the core's template, made once per distinct flag
        list with that list written in (a large mailbox has few)."""
        names = tuple(a.response_name for a in attributes)
        templates = _Templates(names, utf8)
        values = _values([name for name in names if name != "FLAGS"], utf8)
        for start in range(0, len(chosen), _SUMMARY_LINES):
            chunk = chosen[start : start + _SUMMARY_LINES]
            yield b"".join([templates[info.flags] % (n, *values(info)) for n, info in chunk])

    def fetch_lines(
        self,
        loaded: list[tuple[int, MessageInfo, bytes | None, bool]],
        attributes: tuple[FetchAttribute, ...],
        with_flags: tuple[FetchAttribute, ...],
        utf8: bool,
    ) -> bytes:
        """The FETCH responses for a batch `load` gave (`with_flags` for newly seen ones).

        When the one content item is the whole message (BODY[], RFC822), a line is the
        core's template cut around the octets, which are copied once, into the result; a
        message the serialiser might quote (short) and one just marked \\Seen (FLAGS
        added) go the general way."""
        content = [at for at, a in enumerate(attributes) if a.name not in _CONTENT_FREE]
        whole = len(content) == 1 and _whole_message(attributes[content[0]])
        if whole:
            at = content[0]
            names = tuple(a.response_name for a in attributes)
            head, tail = responses.FetchLines.around(names, at)
            before, after = _values(names[:at], utf8), _values(names[at + 1 :], utf8)
        pieces = []
        for number, info, data, marked in loaded:
            if whole and not marked and data is not None and len(data) > serializer.QUOTED_MAX:
                pieces += (
                    head % (number, *before(info), len(data)),
                    data,
                    tail % (*after(info),),
                )
            else:
                items = self.fetch_items(info, with_flags if marked else attributes, data)
                pieces.append(responses.FetchResult(number, tuple(items)).to_bytes(utf8))
        return b"".join(pieces)

    def load(
        self, chosen: list[tuple[int, MessageInfo]], *, content: bool, seen: bool
    ) -> list[tuple[int, MessageInfo, bytes | None, bool]]:
        """(number, info, octets, newly seen) for a batch of FETCH targets, in one go on a
        worker thread: the octets when `content`, \\Seen set first when `seen` (the info
        is then the updated one). Messages expunged meanwhile by another session are left
        out, as RFC 9051 §7.4.1 allows."""
        loaded = []
        for number, listed in chosen:
            try:
                data = self._read(listed.key) if content else None
            except (KeyError, OSError):
                continue
            info, marked = listed, False
            if seen and "\\Seen" not in info.flags:
                with contextlib.suppress(KeyError, ValueError):
                    info = self.mailbox.set_flags(info.key, info.flags | {"\\Seen"})
                    marked = True
            loaded.append((number, info, data, marked))
        return loaded

    def load_cached(
        self, chosen: list[tuple[int, MessageInfo]]
    ) -> list[tuple[int, MessageInfo, bytes | None, bool]] | None:
        """`load` with content, without \\Seen, on the event loop: the batch when every
        message is small and wholly in the page cache (`read_cached` never waits for the
        disk), else None and the batch goes to a worker thread. Spares a thread hop and
        the GIL's hand-overs per batch when the mailbox is warm, as it usually is."""
        loaded = []
        for number, info in chosen:
            data = self.mailbox.read_cached(info.key, _CACHED_MAX, info.size)
            if data is None:
                return None
            loaded.append((number, info, data, False))
        return loaded

    def _read(self, key: str) -> bytes:
        """The message's octets: straight from the page cache when it is there (no file
        object, half the cost of `read` for a small message), else `read`."""
        data = self.mailbox.read_cached(key, _CACHED_MAX)
        return self.mailbox.read(key) if data is None else data

    @staticmethod
    def needs_content(attributes: tuple[FetchAttribute, ...]) -> bool:
        return any(a.name not in _CONTENT_FREE for a in attributes)


@functools.lru_cache(maxsize=256)
def _flag_list(flags: frozenset[str], utf8: bool) -> bytes:
    return serializer.write(flag_atoms(flags), utf8)


class _Templates(dict[frozenset[str], bytes]):
    """FETCH line templates by flag set, each made when first asked for."""

    def __init__(self, names: tuple[str, ...], utf8: bool) -> None:
        super().__init__()
        self.names, self.utf8 = names, utf8

    def __missing__(self, flags: frozenset[str]) -> bytes:
        written = _flag_list(flags, self.utf8) if "FLAGS" in self.names else None
        template = self[flags] = responses.FetchLines.template(self.names, written)
        return template


_FIELDS = {"UID": "uid", "RFC822.SIZE": "size", "MODSEQ": "modseq"}  # MessageInfo's


def _values(names: Sequence[str], utf8: bool) -> Callable[[MessageInfo], Sequence[Value]]:
    """What a template wants for content-free items `names` of a message, in order: one
    C-level `attrgetter` call when they are plain numbers."""
    if len(names) > 1 and all(name in _FIELDS for name in names):
        return attrgetter(*[_FIELDS[name] for name in names])

    def one(name: str) -> Callable[[MessageInfo], Value]:
        if name == "FLAGS":
            return lambda info: _flag_list(info.flags, utf8)
        if name == "INTERNALDATE":
            return lambda info: serializer.write(internaldate(info.internaldate), utf8)
        return attrgetter(_FIELDS[name])

    getters = [one(name) for name in names]
    return lambda info: [get(info) for get in getters]


def _whole_message(attr: FetchAttribute) -> bool:
    """BODY[], BODY.PEEK[] or RFC822: the message's octets as they are."""
    if attr.name == "RFC822":
        return True
    return attr.name == "BODY" and attr.section == _WHOLE and attr.partial is None


def _within(ranges: tuple[tuple[int, int], ...], number: int) -> bool:
    """Whether `number` is in resolved (ordered, merged) `ranges`."""
    at = bisect.bisect_right(ranges, number, key=lambda r: r[0]) - 1
    return at >= 0 and number <= ranges[at][1]


def _gaps(
    ranges: tuple[tuple[int, int], ...], present: list[int], largest: int
) -> tuple[tuple[int, int], ...]:
    """The parts of `ranges` (at most up to `largest`) that hold none of the ascending
    `present` numbers, as ranges: no list as long as the mailbox's UID space is built."""
    gaps = []
    for first, last in ranges:
        low, high = first, min(last, largest)
        start = bisect.bisect_left(present, low)
        for uid in present[start : bisect.bisect_right(present, high)]:
            if low < uid:
                gaps.append((low, uid - 1))
            low = uid + 1
        if low <= high:
            gaps.append((low, high))
    return tuple(gaps)


def _fetch_value(attr: FetchAttribute, info: MessageInfo, data: bytes) -> Value:
    name = attr.name
    if name == "FLAGS":
        return flag_atoms(info.flags)
    if name == "UID":
        return info.uid
    if name == "INTERNALDATE":
        return internaldate(info.internaldate)
    if name == "RFC822.SIZE":
        return info.size
    if name == "MODSEQ":
        return (info.modseq,)
    if name == "ENVELOPE":
        return structure.envelope(data)
    if name == "BODYSTRUCTURE":
        return structure.bodystructure(data)
    if name == "BODY" and attr.section is None:
        return structure.bodystructure(data, extensible=False)
    if name == "RFC822":
        return data
    if name == "RFC822.HEADER":
        return sections.section(data, Section(text="HEADER"))
    if name == "RFC822.TEXT":
        return sections.section(data, Section(text="TEXT"))
    section = attr.section or Section()
    if name == "BINARY":
        found = sections.binary(data, section.part, attr.partial)
        return None if found is None else Literal8(found)
    if name == "BINARY.SIZE":
        found = sections.binary(data, section.part)
        return None if found is None else len(found)
    return sections.section(data, section, attr.partial)


def _header_values(data: bytes, field: str) -> list[str]:
    root = mime.parse(data)
    values = []
    for raw in mime.raw_fields(root.header):
        name, _, value = raw.partition(b":")
        if name.strip().lower() == field.lower().encode("ascii", "replace"):
            text = value.decode("utf-8", "replace").strip()
            with contextlib.suppress(ValueError, LookupError):
                text = str(email.header.make_header(email.header.decode_header(text)))
            values.append(" ".join(text.split()))
    return values


def _matches(
    key: search.SearchKey,
    number: int,
    *,
    info: MessageInfo,
    content: Callable[[], bytes],
    last_uid: int,
    count: int,
    saved: frozenset[int],
) -> bool:
    def again(inner: search.SearchKey) -> bool:
        return _matches(
            inner, number, info=info, content=content, last_uid=last_uid, count=count, saved=saved
        )

    match key:
        case search.All():
            return True
        case search.FlagKey(flag, present):
            has = flag.lower() in {f.lower() for f in info.flags}
            return has == present
        case search.HeaderKey(field, value):
            values = _header_values(content(), field)
            return any(value.lower() in v.lower() for v in values)
        case search.TextKey(value, body_only):
            data = content()
            if body_only:
                data = mime.parse(data).body
            return value.lower().encode("utf-8") in data.lower()
        case search.DateKey(relation, date, sent):
            if sent:
                when = _sent_date(content())
                if when is None:
                    return False
            else:
                when = datetime.datetime.fromtimestamp(info.internaldate, datetime.UTC).date()
            if relation is search.DateRelation.BEFORE:
                return when < date
            if relation is search.DateRelation.ON:
                return when == date
            return when >= date
        case search.SizeKey(size, larger):
            return info.size > size if larger else info.size < size
        case search.SequenceKey(sequence, uid):
            if sequence.saved:  # RFC 5182 §2.1
                return info.uid in saved
            if uid:
                return sequence.contains(info.uid, last_uid)
            return sequence.contains(number, count)
        case search.ModSeqKey(modseq):
            return info.modseq >= modseq
        case search.Not(inner):
            return not again(inner)
        case search.Or(left, right):
            return again(left) or again(right)
        case search.And(keys):
            return all(again(k) for k in keys)
    return False


def _sent_date(data: bytes) -> datetime.date | None:
    values = _header_values(data, "Date")
    if not values:
        return None
    try:
        return email.utils.parsedate_to_datetime(values[0]).date()
    except (TypeError, ValueError):
        return None
