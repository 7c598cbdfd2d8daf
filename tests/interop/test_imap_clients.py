"""Real IMAP clients against a running server: imapclient, curl and mbsync (Debian isync).

One server for the module; alice's INBOX is emptied before each test. Mail arrives by SMTP.
Certificates are checked for real: the server's self-signed certificate names mx.test, so
curl connects to 127.0.0.1 while verifying that name (`--resolve`), imapclient verifies it
with an SSL context, and mbsync trusts it as a directly matched peer certificate
(`CertificateFile`, isync's rule). mbsync runs with HOME in the test's directory and syncs
alice's INBOX with a local Maildir both ways: new mail, flag changes and deletions on each
side, each checked on the other.

Standards: RFC 9051, RFC 3501, RFC 2177 (IDLE), RFC 4315 (UIDPLUS), RFC 5092 (IMAP URLs),
RFC 8314 (implicit TLS), Maildir (flags in the info part)
"""

from __future__ import annotations

import os
import ssl
import subprocess
import time
from pathlib import Path

import imapclient
import pytest

from postoffice.testing.server import ServerProcess
from tests.conftest import require_tool
from tests.e2e.test_imap import PASSWORD, USER, imap, send_mail, shared  # noqa: F401

pytestmark = pytest.mark.interop


@pytest.fixture
def server(imap: ServerProcess) -> ServerProcess:  # noqa: F811 - the imported fixture
    """One server for the module, alice's INBOX empty for each test (as in test_imap)."""
    return imap


def cert(server: ServerProcess) -> str:
    return str(server.data_dir / "tls" / "cert.pem")


def run(*args: str, home: Path) -> subprocess.CompletedProcess[bytes]:
    """Run a client with HOME in the test's directory."""
    return subprocess.run(
        args,
        capture_output=True,
        timeout=60,
        check=False,
        env={**os.environ, "HOME": str(home), "LC_ALL": "C"},
    )


def deliver(server: ServerProcess, *subjects: str) -> None:
    for subject in subjects:
        send_mail(server, subject)
    server.wait_for_mail(USER, len(subjects))


# -- imapclient ---------------------------------------------------------------------------


def test_imapclient_over_implicit_tls(server: ServerProcess) -> None:
    deliver(server, "first", "second")
    context = ssl.create_default_context(cafile=cert(server))
    context.check_hostname = False  # 127.0.0.1; the chain is still verified
    with imapclient.IMAPClient(
        server.host, port=server.imaps_port, ssl=True, ssl_context=context, timeout=10
    ) as client:
        client.login(USER, PASSWORD)
        assert b"IDLE" in client.capabilities()
        folders = {name: flags for flags, _, name in client.list_folders()}
        assert b"\\Sent" in folders["Sent"] and b"\\Trash" in folders["Trash"]
        info = client.select_folder("INBOX")
        assert info[b"EXISTS"] == 2 and info[b"UIDVALIDITY"] > 0
        uids = client.search(["SUBJECT", "second"])
        assert len(uids) == 1
        fetched = client.fetch(uids, ["ENVELOPE", "RFC822.SIZE", "BODY.PEEK[]", "FLAGS"])
        (data,) = fetched.values()
        assert data[b"ENVELOPE"].subject == b"second"
        assert data[b"RFC822.SIZE"] == len(data[b"BODY[]"])
        client.add_flags(uids, [imapclient.SEEN, b"$Important"])
        assert set(client.get_flags(uids)[uids[0]]) == {imapclient.SEEN, b"$Important"}
        result = client.append("Drafts", b"Subject: draft\r\n\r\nbody\r\n", [imapclient.DRAFT])
        assert b"APPENDUID" in result
        client.move(uids, "Archive")
        assert client.select_folder("INBOX")[b"EXISTS"] == 1
        assert client.folder_status("Archive", [b"MESSAGES"])[b"MESSAGES"] >= 1


def test_imapclient_idle_hears_a_delivery(server: ServerProcess) -> None:
    with imapclient.IMAPClient(server.host, port=server.imap_port, ssl=False, timeout=10) as client:
        client.login(USER, PASSWORD)
        client.select_folder("INBOX")
        client.idle()
        send_mail(server, "while idling")
        started = time.monotonic()
        responses = client.idle_check(timeout=5)
        client.idle_done()
        assert (1, b"EXISTS") in responses
        assert time.monotonic() - started < 1.0


# -- curl ---------------------------------------------------------------------------------


def curl(server: ServerProcess, url: str, *args: str) -> subprocess.CompletedProcess[bytes]:
    tool = require_tool("curl")
    return run(
        tool,
        "-sS",
        "--max-time",
        "30",
        "-u",
        f"{USER}:{PASSWORD}",
        "--cacert",
        cert(server),
        "--resolve",
        f"mx.test:{server.imap_port}:127.0.0.1",
        "--resolve",
        f"mx.test:{server.imaps_port}:127.0.0.1",
        *args,
        url,
        home=server.data_dir,
    )


@pytest.mark.parametrize("scheme", ["imap", "imaps"])
def test_curl_lists_fetches_and_stores(server: ServerProcess, scheme: str) -> None:
    deliver(server, "for curl")
    (stored,) = server.wait_for_mail(USER, 1)
    content = stored.read_bytes()
    port = server.imaps_port if scheme == "imaps" else server.imap_port
    base = f"{scheme}://mx.test:{port}"
    tls = ["--ssl-reqd"] if scheme == "imap" else []  # STARTTLS, or fail

    listing = curl(server, f"{base}/", *tls)
    assert listing.returncode == 0, listing.stderr
    assert b'"." "INBOX"\r\n' in listing.stdout
    assert b'(\\HasNoChildren \\Trash) "." "Trash"\r\n' in listing.stdout

    fetched = curl(server, f"{base}/INBOX/;MAILINDEX=1", *tls)
    assert fetched.returncode == 0, fetched.stderr
    assert fetched.stdout == content  # a FETCH of BODY[]: \Seen is set too

    store = curl(server, f"{base}/INBOX", *tls, "-X", "STORE 1 +FLAGS (\\Flagged)")
    assert store.returncode == 0, store.stderr
    assert b"\\Flagged" in store.stdout
    (flagged,) = server.wait_for_mail(USER, 1)
    assert flagged.name.endswith(":2,FS")

    search = curl(server, f"{base}/INBOX?FLAGGED", *tls)
    assert search.returncode == 0, search.stderr
    assert search.stdout.strip() == b"* SEARCH 1"


def test_curl_refuses_the_wrong_certificate_name(server: ServerProcess) -> None:
    port = server.imaps_port
    result = curl(
        server, f"imaps://other.test:{port}/", "--resolve", f"other.test:{port}:127.0.0.1"
    )
    assert result.returncode == 60, result.stderr  # peer certificate not accepted


# -- mbsync -------------------------------------------------------------------------------


def mbsync(server: ServerProcess, home: Path) -> str:
    """Sync alice's INBOX with `home/mail/INBOX` both ways, deletions included; the log."""
    tool = require_tool("mbsync")
    (home / "mail").mkdir(exist_ok=True)
    rc = home / "mbsyncrc"
    rc.write_text(
        f"IMAPAccount postoffice\nHost 127.0.0.1\nPort {server.imaps_port}\n"
        f"User {USER}\nPass {PASSWORD}\nSSLType IMAPS\nCertificateFile {cert(server)}\n\n"
        "IMAPStore remote\nAccount postoffice\n\n"
        f"MaildirStore local\nPath {home}/mail/\nInbox {home}/mail/INBOX\n\n"
        "Channel inbox\nFar :remote:\nNear :local:\nPatterns INBOX\n"
        "Create Both\nExpunge Both\nSyncState *\nSync All\n",
        "utf-8",
    )
    rc.chmod(0o600)
    result = run(tool, "-V", "-c", str(rc), "-a", home=home)
    log = (result.stdout + result.stderr).decode(errors="replace")
    assert result.returncode == 0, log
    return log


def local_files(home: Path) -> dict[bytes, Path]:
    """The local copies by Subject line."""
    box = home / "mail" / "INBOX"
    found = {}
    for path in (p for sub in ("new", "cur") for p in (box / sub).iterdir()):
        subject = next(line for line in path.read_bytes().splitlines() if line.startswith(b"Sub"))
        found[subject.partition(b": ")[2]] = path
    return found


def remote_flags(client: imapclient.IMAPClient) -> dict[bytes, set[bytes]]:
    client.select_folder("INBOX")
    fetched = client.fetch("1:*", ["FLAGS", "BODY.PEEK[HEADER.FIELDS (SUBJECT)]"])
    return {
        data[b"BODY[HEADER.FIELDS (SUBJECT)]"].strip().partition(b": ")[2]: set(data[b"FLAGS"])
        for data in fetched.values()
    }


def test_mbsync_syncs_both_ways_with_flags_and_deletions(
    server: ServerProcess, tmp_path: Path
) -> None:
    deliver(server, "keep", "drop-locally", "flag-remotely")
    mbsync(server, tmp_path)
    local = local_files(tmp_path)
    assert set(local) == {b"keep", b"drop-locally", b"flag-remotely"}

    # near side: mark one seen, delete another, write a new one
    keep = local[b"keep"]
    keep.rename(keep.parent.parent / "cur" / (keep.name.partition(":2,")[0] + ":2,S"))
    local[b"drop-locally"].unlink()
    draft = tmp_path / "mail" / "INBOX" / "new" / "1700000000.local1.host"
    draft.write_bytes(b"From: alice@localhost\r\nSubject: written-locally\r\n\r\nhi\r\n")
    mbsync(server, tmp_path)
    with imapclient.IMAPClient(server.host, port=server.imap_port, ssl=False) as client:
        client.login(USER, PASSWORD)
        flags = remote_flags(client)
        assert set(flags) == {b"keep", b"flag-remotely", b"written-locally"}
        assert imapclient.SEEN in flags[b"keep"]

        # far side: flag one, delete another
        client.select_folder("INBOX")
        by_subject = {
            data[b"BODY[HEADER.FIELDS (SUBJECT)]"].strip().partition(b": ")[2]: uid
            for uid, data in client.fetch("1:*", ["BODY.PEEK[HEADER.FIELDS (SUBJECT)]"]).items()
        }
        client.add_flags([by_subject[b"flag-remotely"]], [imapclient.FLAGGED])
        client.delete_messages([by_subject[b"keep"]])
        client.expunge()
    mbsync(server, tmp_path)
    local = local_files(tmp_path)
    assert set(local) == {b"flag-remotely", b"written-locally"}
    assert "F" in local[b"flag-remotely"].name.partition(":2,")[2]
