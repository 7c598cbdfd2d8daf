"""The user agent's local mail: one Maildir per account, with Sent and Drafts folders.

`~/.local/share/postoffice/<address>/` is the account's INBOX, laid out as the server lays
out a user (Maildir with Maildir++ folders `.Sent` and `.Drafts`), so the same
`MaildirMailbox` writes it durably (temp file, fsync, rename, fsync of the directory) and
keeps its flags in the file names where mutt and Dovecot look for them too.

Standards: Maildir (D. J. Bernstein), Maildir++
"""

from __future__ import annotations

import re
import socket

from postoffice.client.accounts import Account
from postoffice.storage.maildir import MaildirMailbox

SENT = "Sent"
DRAFTS = "Drafts"
_UNSAFE_HOST = re.compile(r"[^A-Za-z0-9.-]")  # "/", ":" and "," have meanings in Maildir names


def folder(account: Account, name: str | None = None) -> MaildirMailbox:
    """The account's INBOX (`name` None) or one of its folders, created on first write."""
    hostname = _UNSAFE_HOST.sub("_", socket.gethostname()) or "localhost"
    if name is None:
        return MaildirMailbox(account.maildir, hostname)
    return MaildirMailbox(account.maildir / f".{name}", hostname, subfolder=True)
