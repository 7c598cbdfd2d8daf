"""IMAP extensions against a running server with real clients (imaplib, imapclient):
the per-user session limit, APPEND's date-time, SEARCHRES and MULTIAPPEND (QRESYNC has
tests/e2e/test_imap_qresync.py).

One server for the module, with a limit of three sessions per user; each test works in a
folder of its own, so tests do not see each other's messages.

Standards: RFC 9051 §6.3.12 (APPEND date-time), RFC 5530 (LIMIT), RFC 5182 (SEARCHRES),
RFC 3502 (MULTIAPPEND)
"""

from __future__ import annotations

import datetime
import imaplib
import ssl
import time
from collections.abc import Iterator

import imapclient
import pytest

from postoffice.testing.server import ServerProcess, with_user

USER, PASSWORD = "carol@localhost", "secret-carol"
LIMIT = 3
MESSAGE = b"From: carol@localhost\r\nSubject: %d\r\n\r\nbody %d\r\n"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = with_user(
        tmp_path_factory.mktemp("imapx") / "data",
        USER,
        PASSWORD,
        limits={"commands_per_minute": 100_000},
        imap={"max_connections_per_user": LIMIT},
    )
    proc.start()
    yield proc
    proc.stop()


def connect(proc: ServerProcess, folder: str | None = None) -> imaplib.IMAP4:
    """A logged-in imaplib client; with `folder`, that folder is created and selected."""
    client = imaplib.IMAP4(proc.host, proc.imap_port, timeout=10)
    client.login(USER, PASSWORD)
    if folder is not None:
        client.create(folder)
        assert client.select(folder)[0] == "OK"
    return client


def append(client: imaplib.IMAP4, folder: str, count: int) -> None:
    for n in range(1, count + 1):
        assert client.append(folder, None, None, MESSAGE % (n, n))[0] == "OK"


# -- per-user session limit (RFC 5530 LIMIT) ----------------------------------------------


def test_one_login_too_many_is_refused_with_limit_and_may_retry(server: ServerProcess) -> None:
    context = ssl.create_default_context(cafile=str(server.data_dir / "tls" / "cert.pem"))
    context.check_hostname = False
    plain = [connect(server) for _ in range(LIMIT - 1)]
    secure = imaplib.IMAP4_SSL(server.host, server.imaps_port, ssl_context=context, timeout=10)
    secure.login(USER, PASSWORD)  # the implicit-TLS listener counts too
    extra = imaplib.IMAP4(server.host, server.imap_port, timeout=10)
    with pytest.raises(imaplib.IMAP4.error, match=r"\[LIMIT\]"):
        extra.login(USER, PASSWORD)
    assert extra.state == "NONAUTH"
    secure.logout()
    deadline = time.monotonic() + 5
    while True:  # the server counts the logout once that session has ended
        try:
            assert extra.login(USER, PASSWORD)[0] == "OK"  # still not authenticated: LOGIN valid
            break
        except imaplib.IMAP4.error:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    assert extra.select("INBOX")[0] == "OK"
    for client in (*plain, extra):
        client.logout()


# -- APPEND date-time (RFC 9051 §6.3.12) ------------------------------------------------


def test_append_date_time_is_the_internaldate_and_survives_copy(server: ServerProcess) -> None:
    client = connect(server, "Dated")
    date = '"17-Jul-1996 02:44:25 -0700"'
    assert client.append("Dated", "(\\Seen)", date, MESSAGE % (1, 1))[0] == "OK"
    client.noop()
    status, data = client.fetch("1", "(INTERNALDATE FLAGS)")
    assert status == "OK"
    assert b'INTERNALDATE "17-Jul-1996 09:44:25 +0000"' in data[0]
    assert client.search(None, "BEFORE", "18-Jul-1996")[1] == [b"1"]
    assert client.copy("1", "INBOX")[0] == "OK"  # RFC 9051 §6.4.7: the date is kept
    client.select("INBOX")
    found = client.search(None, "ON", "17-Jul-1996")[1][0].split()
    assert len(found) == 1
    assert b"09:44:25 +0000" in client.fetch(found[0].decode(), "INTERNALDATE")[1][0]
    client.logout()


def test_append_with_an_invalid_date_time_is_bad_and_stores_nothing(
    server: ServerProcess,
) -> None:
    client = connect(server, "Undated")
    for date in ('"31-Feb-2024 10:00:00 +0000"', '"1-Jan-2024 25:00:00 +0000"'):
        with pytest.raises(imaplib.IMAP4.error, match="BAD"):
            client.append("Undated", None, date, MESSAGE % (1, 1))
    assert client.status("Undated", "(MESSAGES)")[1] == [b'"Undated" (MESSAGES 0)']
    client.logout()


# -- SEARCHRES (RFC 5182) -----------------------------------------------------------------


def subjects(client: imaplib.IMAP4, sequence: str) -> list[bytes]:
    """The Subject values of the messages `sequence` names, in mailbox order."""
    status, data = client.fetch(sequence, "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert status == "OK"
    return [item[1].strip() for item in data if isinstance(item, tuple)]


def test_search_save_and_dollar_in_fetch_store_search_and_expunge(server: ServerProcess) -> None:
    client = connect(server, "Saved")
    assert "SEARCHRES" in client.capabilities and "ESEARCH" in client.capabilities
    append(client, "Saved", 5)
    client.noop()
    assert subjects(client, "$") == []  # nothing saved yet: "$" is empty
    status, data = client.search(None, "RETURN", "(SAVE)", "OR", "SUBJECT", "2", "SUBJECT", "4")
    assert (status, data) == ("OK", [None])  # SAVE alone: no SEARCH or ESEARCH response
    assert subjects(client, "$") == [b"Subject: 2", b"Subject: 4"]
    assert client.search(None, "$", "SUBJECT", "4") == ("OK", [b"4"])
    status, _ = client.uid("SEARCH", "RETURN", "(MAX SAVE)", "NOT", "SUBJECT", "5")
    assert status == "OK"
    assert client.response("ESEARCH")[1][0].endswith(b"UID MAX 4")  # MAX is what is saved
    assert subjects(client, "$") == [b"Subject: 4"]
    assert client.search(None, "RETURN", "(SAVE)", "SUBJECT", "1")[0] == "OK"
    assert client.store("$", "+FLAGS", "(\\Deleted)")[0] == "OK"
    assert client.expunge()[1] == [b"1"]
    assert subjects(client, "$") == []  # expunged messages leave the saved result
    client.search(None, "RETURN", "(SAVE)", "ALL")
    assert subjects(client, "$") == [b"Subject: %d" % n for n in range(2, 6)]
    assert client.select("Saved")[0] == "OK"
    assert subjects(client, "$") == []  # a new SELECT starts with an empty result
    client.logout()


# -- MULTIAPPEND (RFC 3502) ---------------------------------------------------------------


def test_multiappend_stores_all_with_appenduid_or_none(server: ServerProcess) -> None:
    client = imapclient.IMAPClient(server.host, server.imap_port, ssl=False, timeout=10)
    client.login(USER, PASSWORD)
    assert b"MULTIAPPEND" in client.capabilities()
    client.create_folder("Multi")
    date = datetime.datetime(2001, 2, 3, 4, 5, 6, tzinfo=datetime.UTC)
    answer = client.multiappend(
        "Multi",
        [
            MESSAGE % (1, 1),
            {"msg": MESSAGE % (2, 2), "flags": [imapclient.SEEN, "$Work"], "date": date},
            {"msg": MESSAGE % (3, 3), "flags": [imapclient.FLAGGED]},
        ],
    )
    validity = client.folder_status("Multi", ["UIDVALIDITY"])[b"UIDVALIDITY"]
    assert answer[1][0].startswith(f"[APPENDUID {validity} 1:3]".encode())
    client.select_folder("Multi", readonly=True)
    found = client.fetch("1:*", ["FLAGS", "INTERNALDATE", "BODY.PEEK[]"])
    assert [found[uid][b"BODY[]"] for uid in (1, 2, 3)] == [MESSAGE % (n, n) for n in (1, 2, 3)]
    assert set(found[2][b"FLAGS"]) == {imapclient.SEEN, b"$Work"}
    assert found[3][b"FLAGS"] == (imapclient.FLAGGED,)
    assert found[2][b"INTERNALDATE"].astimezone(datetime.UTC) == date
    # one message the store cannot take (a flag it cannot keep): none is stored
    with pytest.raises(imapclient.exceptions.IMAPClientError):
        client.multiappend(
            "Multi", [MESSAGE % (4, 4), {"msg": MESSAGE % (5, 5), "flags": ["\\Bogus"]}]
        )
    assert client.folder_status("Multi", ["MESSAGES"])[b"MESSAGES"] == 3
    assert client.search(["SUBJECT", "4"]) == []
    client.logout()
