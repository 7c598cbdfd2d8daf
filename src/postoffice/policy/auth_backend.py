"""The SASL `Authenticator` backed by the directory: login names are users' email addresses.

SMTP, POP3 and IMAP hand this to `protocols.sasl` mechanisms. A login name is the full
address, compared case-insensitively, and a success names the canonical (lower-case)
address. Unknown and malformed names cost what a wrong password costs: the directory checks
passwords against a dummy hash and hands out decoy SCRAM keys for them.

Standards: RFC 4422 §2 (authentication identity), RFC 5802 §3 (SCRAM stored keys).
"""

from __future__ import annotations

from postoffice.protocols.sasl import ScramCredentials
from postoffice.storage.base import Directory, DirectoryError, normalize_user


class DirectoryAuthenticator:
    """`protocols.sasl.Authenticator` over a `storage.base.Directory`."""

    def __init__(self, directory: Directory) -> None:
        self.directory = directory

    def check_password(self, username: str, password: str) -> str | None:
        if not self.directory.verify_password(username, password):
            return None
        return normalize_user(username)  # verified, so it is a valid user name

    def scram_credentials(self, username: str) -> tuple[str, ScramCredentials] | None:
        try:
            user = normalize_user(username)
        except DirectoryError:
            return None
        credentials = self.directory.scram_credentials(user)
        return None if credentials is None else (user, credentials)

    def scram_decoy(self, username: str) -> ScramCredentials:
        return self.directory.scram_decoy(username)
