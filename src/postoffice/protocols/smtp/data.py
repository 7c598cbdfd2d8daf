"""Message bodies: DATA read up to <CRLF>.<CRLF> with dot-unstuffing, BDAT chunks by count.

The end of DATA is only the five octets <CRLF>.<CRLF>, found with `bytes.find` over the
unread bytes; no other spelling (`\\n.\\n`, `\\r.\\r`, `\\r\\n.\\n`, ...) ends a message. That alone
is the SMTP-smuggling defense: a peer that ends data differently can never make us see two
messages where the client meant one. The reader keeps an unprocessed tail that always starts
with the CRLF closing the last complete line (at first, the CRLF of the DATA command: RFC 5321
§4.1.1.4), so a marker split across reads is still found and every committed segment is whole
lines, checked in bulk: any CR or LF outside a CRLF pair, a NUL, or a line over the text-line
limit is a defect; a leading dot is removed by one `replace`. A message is always read
through its real end marker and only then answered. After a defect only the end marker is
looked for (with just enough tail to find it); past the size limit nothing is kept but the
checks go on, so the verdict (defect first, then size) is the same however reads split the
bytes, and memory stays bounded either way. BDAT chunks are counted octets, binary and
never unstuffed (RFC 3030 §2); both kinds collect into a size-bounded `Body`.

Standards: RFC 5321 §2.3.8, §4.1.1.4, §4.5.2, §4.5.3.1.6; RFC 1870 §6; RFC 3030 §2; RFC 2045 §2.8
"""

from __future__ import annotations

from postoffice.protocols._buffer import LineBuffer
from postoffice.protocols.smtp.commands import Bdat
from postoffice.protocols.smtp.replies import BAD_DATA, MESSAGE_TOO_BIG, Reply

END_OF_DATA = b"\r\n.\r\n"  # RFC 5321 §4.1.1.4


class Body:
    """The octets of one message so far; past `limit` it only counts them."""

    __slots__ = ("_limit", "_parts", "size")

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._parts: list[bytes] = []
        self.size = 0

    @property
    def too_big(self) -> bool:
        return self.size > self._limit

    def add(self, data: bytes) -> None:
        self.size += len(data)
        if self.too_big:  # RFC 1870 §6: refuse at the end, hold nothing meanwhile
            self._parts.clear()
        else:
            self._parts.append(data)

    def getvalue(self) -> bytes:
        return b"".join(self._parts)


class DataReader:
    """One DATA body, fed raw bytes until its end marker."""

    __slots__ = ("_body", "_defect", "_tail", "_text_line")

    def __init__(self, text_line: int, message_size: int) -> None:
        self._text_line = text_line
        self._body = Body(message_size)
        self._defect = False
        self._tail = b"\r\n"  # RFC 5321 §4.1.1.4: the DATA line's CRLF may open the end marker

    def feed(self, buffer: LineBuffer) -> bool:
        """Consume buffered bytes; True once the end marker was read (the rest stays buffered)."""
        data = self._tail + buffer.take()
        end = data.find(END_OF_DATA)
        if end >= 0:
            self._commit(data[:end])
            buffer.unread(data[end + len(END_OF_DATA) :])
            return True
        if not self._defect:
            cut = data.rfind(b"\r\n")  # a kept tail starts with CRLF, so cut >= 0
            self._commit(data[:cut])
            data = data[cut:]
            if len(data) > self._text_line + 1:  # CRLF + an unfinished line already too long
                self._defect = True
        # after a defect, keep only what may be the start of the end marker
        self._tail = data[-(len(END_OF_DATA) - 1) :] if self._defect else data
        return False

    def result(self) -> bytes | Reply:
        """The message (without the final ".CRLF"), or the refusal to send for it."""
        if self._defect:
            return BAD_DATA
        return MESSAGE_TOO_BIG if self._body.too_big else self._body.getvalue()

    def _commit(self, segment: bytes) -> None:
        """Take whole lines, each preceded by its CRLF: b"\\r\\nline1\\r\\nline2"."""
        if self._defect or not segment:
            return
        pairs = segment.count(b"\r\n")
        self._defect = (
            segment.count(b"\r") != pairs  # RFC 5321 §2.3.8: CR and LF only as CRLF
            or segment.count(b"\n") != pairs
            or b"\x00" in segment  # RFC 2045 §2.8: no NUL, not even in 8bit data
            or (
                len(segment) > self._text_line  # RFC 5321 §4.5.3.1.6, as sent, CRLF included
                and max(map(len, segment.split(b"\r\n"))) + 2 > self._text_line
            )
        )
        if not self._defect:
            # RFC 5321 §4.5.2: drop the dot the client added to lines starting with one
            self._body.add(segment.replace(b"\r\n.", b"\r\n")[2:] + b"\r\n")


class ChunkReader:
    """The octets of one BDAT chunk (RFC 3030 §2): counted, binary, never unstuffed.

    `body` None means the chunk has no transaction to join: it is read only to stay in step.
    """

    __slots__ = ("body", "chunk", "remaining")

    def __init__(self, chunk: Bdat, body: Body | None) -> None:
        self.chunk = chunk
        self.body = body
        self.remaining = chunk.size

    def feed(self, buffer: LineBuffer) -> bool:
        """Consume buffered octets of the chunk; True once all of them were read."""
        data = buffer.read(self.remaining)
        self.remaining -= len(data)
        if self.body is not None:
            self.body.add(data)
        return self.remaining == 0
