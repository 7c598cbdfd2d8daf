"""build_dsn: the notification parsed back with the stdlib, field by field."""

from __future__ import annotations

import email
import email.policy
import re
from email.message import EmailMessage, Message

from postoffice.mail.dsn import build_dsn, notify_address
from postoffice.queue.entry import QueueEntry, RecipientState, RecipientStatus

ARRIVAL = 1_700_000_000.0
HEADERS = b"Received: from a by b\r\nSubject: test\r\nMessage-ID: <m1@example.org>\r\n"
REPLY = "550 5.1.1 <bob@example.net>: Recipient address rejected: User unknown"


def entry(sender: str = "alice@example.org", message_id: str = "<m1@example.org>") -> QueueEntry:
    return QueueEntry(
        qid="0123456789ABCDEF",
        sender=sender,
        recipients=[],
        arrival=ARRIVAL,
        size=100,
        message_id=message_id,
        last_attempt=ARRIVAL + 60,
    )


def failed(
    address: str = "bob@example.net",
    original: str | None = None,
    status: str = "5.1.1",
    detail: str = "no such user",
    reply: str | None = REPLY,
) -> RecipientState:
    return RecipientState(
        address, original or address, RecipientStatus.FAILED, 1, status, detail, reply
    )


def build(
    recipients: list[RecipientState] | None = None,
    *,
    queued: QueueEntry | None = None,
    headers: bytes = HEADERS,
    delayed: bool = False,
) -> bytes:
    return build_dsn(
        entry=queued or entry(),
        recipients=recipients or [failed()],
        action="delayed" if delayed else "failed",
        reporting_mta="mx.example.org",
        original_headers=headers,
        now=ARRIVAL + 100,
        postmaster="postmaster@example.org",
        retry_until=ARRIVAL + 5 * 86400 if delayed else None,
    )


def parse(dsn: bytes) -> EmailMessage:
    message = email.message_from_bytes(dsn, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    assert message.defects == []
    return message


def parts(dsn: bytes) -> list[EmailMessage]:
    return list(parse(dsn).iter_parts())


def blocks(dsn: bytes) -> list[Message]:
    """The message/delivery-status part: per-message block, then one per recipient."""
    report = parts(dsn)[1]
    assert report.get_content_type() == "message/delivery-status"
    payload = report.get_payload()
    assert isinstance(payload, list)
    return payload


def test_is_a_multipart_report_with_three_parts_in_crlf_form() -> None:
    dsn = build()
    assert b"\n" not in dsn.replace(b"\r\n", b"")
    assert dsn.isascii()
    message = parse(dsn)
    assert message.get_content_type() == "multipart/report"
    assert message.get_param("report-type") == "delivery-status"
    assert [p.get_content_type() for p in message.iter_parts()] == [
        "text/plain",
        "message/delivery-status",
        "text/rfc822-headers",
    ]
    assert message["From"] == "Mail Delivery System <MAILER-DAEMON@mx.example.org>"
    assert message["To"] == "alice@example.org"
    assert message["Subject"] == "Undelivered Mail Returned to Sender"
    assert message["Auto-Submitted"] == "auto-replied"
    assert message["MIME-Version"] == "1.0"
    assert message["Message-ID"].endswith("@mx.example.org>")
    assert message["In-Reply-To"] == message["References"] == "<m1@example.org>"
    assert email.utils.parsedate_to_datetime(message["Date"]).timestamp() == ARRIVAL + 100


def test_per_message_and_per_recipient_fields() -> None:
    first, second = failed(), failed("carol@example.net", reply=None, detail="mailbox full")
    per_message, bob, carol = blocks(build([first, second]))
    assert per_message["Reporting-MTA"] == "dns; mx.example.org"
    assert per_message["X-Postoffice-Queue-ID"] == "0123456789ABCDEF"
    assert email.utils.parsedate_to_datetime(per_message["Arrival-Date"]).timestamp() == ARRIVAL
    assert bob["Final-Recipient"] == "rfc822; bob@example.net"
    assert bob["Action"] == "failed"
    assert bob["Status"] == "5.1.1"
    assert bob["Diagnostic-Code"] == f"smtp; {REPLY}"
    last = email.utils.parsedate_to_datetime(bob["Last-Attempt-Date"]).timestamp()
    assert last == ARRIVAL + 60
    assert bob["Original-Recipient"] is None  # the same as the final recipient
    assert bob["Will-Retry-Until"] is None
    assert carol["Diagnostic-Code"] == "X-Postoffice; mailbox full"  # a local reason


def test_original_recipient_when_an_alias_was_expanded() -> None:
    _, block = blocks(build([failed("bob@example.net", original="team@example.org")]))
    assert block["Original-Recipient"] == "rfc822; team@example.org"
    assert block["Final-Recipient"] == "rfc822; bob@example.net"


def test_the_human_part_names_each_recipient_and_the_reply() -> None:
    text = parts(build([failed(), failed("carol@example.net", reply=None)]))[0].get_content()
    assert "<bob@example.net>: no such user (5.1.1)" in text
    assert f"The mail server said: {REPLY}" in " ".join(text.split())
    assert "<carol@example.net>" in text
    assert all(len(line) <= 78 for line in text.splitlines())


def test_delayed_warning() -> None:
    dsn = build([failed(status="4.4.1", detail="connection refused", reply=None)], delayed=True)
    message = parse(dsn)
    assert message["Subject"] == "Delayed Mail (still being retried)"
    _, block = blocks(dsn)
    assert (block["Action"], block["Status"]) == ("delayed", "4.4.1")
    retry = email.utils.parsedate_to_datetime(block["Will-Retry-Until"]).timestamp()
    assert retry == ARRIVAL + 5 * 86400
    assert "WARNING ONLY" in parts(dsn)[0].get_content()


def test_a_notification_about_a_null_sender_message_goes_to_the_postmaster() -> None:
    assert notify_address("", "postmaster@example.org") == "postmaster@example.org"
    assert notify_address("alice@example.org", "postmaster@example.org") == "alice@example.org"
    message = parse(build(queued=entry(sender="")))
    assert message["To"] == "postmaster@example.org"
    assert message["Subject"] == "Postmaster Copy: Undelivered Mail Returned to Sender"


def test_a_malformed_status_falls_back_to_the_class_of_the_action() -> None:
    _, block = blocks(build([failed(status="")]))
    assert block["Status"] == "5.0.0"
    _, block = blocks(build([failed(status="5.1.1\r\nX: y")], delayed=True))
    assert block["Status"] == "4.0.0"


def test_eight_bit_and_odd_original_headers_come_back_unchanged() -> None:
    odd = (
        b"Subject: caf\xe9 \xc3\xa9t\xc3\xa9\r\n"  # Latin-1 and raw UTF-8
        b"X-Bare: a\rb\nc\r\n"  # bare CR and LF inside a line
        b"X-Trailing: space \t\r\n"
        b"X-Long: " + b"y" * 1200 + b"\r\n"  # longer than RFC 5322 allows
        b"X-Boundary: --=_0123\r\n"
    )
    dsn = build(headers=odd)
    assert dsn.isascii()
    assert all(len(line) <= 998 for line in dsn.split(b"\r\n"))
    returned = parts(dsn)[2]
    assert returned["Content-Transfer-Encoding"] == "quoted-printable"
    assert returned.get_payload(decode=True) == odd


def test_clean_original_headers_stay_readable() -> None:
    returned = parts(build())[2]
    assert returned["Content-Transfer-Encoding"] == "7bit"
    assert returned.get_payload(decode=True) == HEADERS


def test_a_reply_with_line_breaks_cannot_add_fields_or_parts() -> None:
    evil = (
        "550 no\r\nAction: delivered\r\nStatus: 2.0.0\r\n\r\nFinal-Recipient: rfc822; x@y\n"
        "\rX-Bare: cr\x85X-Nel: 1\u2028X-Ls: 2\x00\x7f\r\n--=_0123--\r\n"
    )
    dsn = build([failed(reply=evil, detail=evil)])
    assert len(parts(dsn)) == 3
    per_message, block = blocks(dsn)
    assert block["Action"] == "failed"
    assert block["Status"] == "5.1.1"
    assert block["Final-Recipient"] == "rfc822; bob@example.net"
    assert block.keys() == [
        "Final-Recipient",
        "Action",
        "Status",
        "Diagnostic-Code",
        "Last-Attempt-Date",
    ]
    assert block["Diagnostic-Code"].startswith("smtp; 550 no Action: delivered Status: 2.0.0")
    assert "X-Bare" not in per_message


def test_long_diagnostics_are_folded_and_unfold_to_the_reply() -> None:
    reply = "550 5.7.1 " + " ".join(f"word{n}" for n in range(100))
    dsn = build([failed(reply=reply)])
    report = dsn.split(b"message/delivery-status")[1].split(b"\r\n--")[0]
    assert all(len(line) <= 78 for line in report.split(b"\r\n"))
    _, block = blocks(dsn)
    assert block["Diagnostic-Code"] == f"smtp; {reply}"


def test_utf8_addresses_use_the_utf8_address_type() -> None:
    dsn = build([failed("jörg+x@例え.jp", original="jörg@例え.jp")])
    _, block = blocks(dsn)
    assert block["Final-Recipient"] == "utf-8; j\\x{F6}rg\\x{2B}x@\\x{4F8B}\\x{3048}.jp"
    assert block["Original-Recipient"] == "utf-8; j\\x{F6}rg@\\x{4F8B}\\x{3048}.jp"
    text = parts(dsn)[0]
    assert text["Content-Transfer-Encoding"] == "quoted-printable"
    assert "<jörg+x@例え.jp>" in text.get_content()


def test_a_malformed_message_id_is_not_echoed() -> None:
    message = parse(build(queued=entry(message_id="<a@b>\r\nBcc: x@y")))
    assert message["In-Reply-To"] is None
    assert message["Bcc"] is None
    assert re.fullmatch(r"<[^<>]+>", message["Message-ID"])
