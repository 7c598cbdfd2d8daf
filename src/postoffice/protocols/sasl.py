"""SASL mechanisms (PLAIN, LOGIN, SCRAM-SHA-256) as sans-I/O challenge/response machines.

A server mechanism is a generator that yields challenges and returns the outcome; `_Machine`
wraps it as a `ServerMechanism` taking and giving raw bytes (`Challenge`, `Success`,
`Failure`). Client-first mechanisms open with an empty challenge that an initial response
answers (RFC 4422 §3.3), so one code path serves both. `ServerExchange` is the line-level
layer the SMTP, POP3 and IMAP adapters share: it decodes base64 strictly, reads `=` as an
empty initial response and `*` as a cancel, and turns SCRAM's server-final message
(additional data with success) into a last challenge that the client answers with an empty
line before the success reply (RFC 4422 §3.6). Credentials stay outside: an `Authenticator`
checks passwords and hands out SCRAM stored keys, plus stable decoy keys for unknown users so
that neither the server-first message nor the work done tells unknown from known users.
The SCRAM math (Hi, HMAC, proof, signatures) has one implementation shared by `ScramClient`.
Passwords are prepared with SASLprep for SCRAM, on both sides and when the keys are derived,
treated as query strings (unassigned code points allowed) so setting and logging in agree.

Standards: RFC 4422 §3.3 §3.6 (SASL), RFC 4616 (PLAIN), draft-murchison-sasl-login (LOGIN),
RFC 5802 §2-§7 (SCRAM), RFC 7677 (SCRAM-SHA-256), RFC 4013 + RFC 3454 (SASLprep),
RFC 4954 §4, RFC 5034 §4, RFC 9051 §6.2.2 (base64 lines, "=" and "*").
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
import re
import secrets
import stringprep
import unicodedata
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Protocol

__all__ = [
    "MIN_ITERATIONS",
    "SERVER_MECHANISMS",
    "Authenticator",
    "Challenge",
    "Failure",
    "FailureKind",
    "SaslError",
    "ScramClient",
    "ScramCredentials",
    "ServerExchange",
    "ServerMechanism",
    "Step",
    "Success",
    "client_plain",
    "decode_b64",
    "encode_b64",
    "login_server",
    "mechanism_names",
    "new_exchange",
    "plain_server",
    "saslprep",
    "scram_sha256_server",
]

MIN_ITERATIONS = 4096  # RFC 7677 §4: at least 4096
MAX_ITERATIONS = 10_000_000  # a client's bound on the work a server may demand of it
SALT_LENGTH = 16
_HASH = "sha256"  # RFC 7677 §3
_NONCE = re.compile(r"[\x21-\x2b\x2d-\x7e]+")  # RFC 5802 §7: printable except ","
_SASLNAME = re.compile(r"(?:[^=,]|=2C|=3D)+")  # RFC 5802 §7: "," and "=" escaped
_ATTRIBUTE = re.compile(r"[A-Za-z]=")


class SaslError(ValueError):
    """A client-side exchange or a SASLprep input was refused (never echoes secrets)."""


# -- outcomes ------------------------------------------------------------------


class FailureKind(enum.Enum):
    """Why an exchange failed, as adapters must tell it apart in their replies."""

    REJECTED = "rejected"  # bad credentials or a malformed SASL message: 535 / -ERR / NO
    MALFORMED = "malformed"  # undecodable base64 (RFC 4954 §4: 501) / -ERR / BAD
    CANCELLED = "cancelled"  # the client sent "*" (RFC 4954 §4: 501) / -ERR / BAD


@dataclass(frozen=True, slots=True)
class Challenge:
    data: bytes  # raw; adapters send encode_b64(data)


@dataclass(frozen=True, slots=True)
class Success:
    user: str  # the canonical user, which is also the authorization identity
    final: bytes | None = None  # additional data with success (SCRAM's server-final)


@dataclass(frozen=True, slots=True)
class Failure:
    reason: str  # for logs; never contains a password
    kind: FailureKind = FailureKind.REJECTED


Step = Challenge | Success | Failure


# -- credentials ---------------------------------------------------------------


def _hmac(key: bytes, message: bytes) -> bytes:
    return hmac.digest(key, message, _HASH)


def _h(data: bytes) -> bytes:
    return hashlib.new(_HASH, data).digest()


def _xor(left: bytes, right: bytes) -> bytes:
    return bytes(a ^ b for a, b in zip(left, right, strict=True))


def _server_signature(server_key: bytes, auth_message: bytes) -> bytes:
    return _hmac(server_key, auth_message)  # RFC 5802 §3: ServerSignature


def _client_proof(client_key: bytes, stored_key: bytes, auth_message: bytes) -> bytes:
    # RFC 5802 §3: ClientProof = ClientKey XOR HMAC(StoredKey, AuthMessage)
    return _xor(client_key, _hmac(stored_key, auth_message))


def _proof_matches(proof: bytes, stored_key: bytes, auth_message: bytes) -> bool:
    """RFC 5802 §3: recover ClientKey from the proof; its hash must be the StoredKey."""
    if len(proof) != len(stored_key):
        return False
    client_key = _client_proof(proof, stored_key, auth_message)  # XOR undoes XOR
    return hmac.compare_digest(_h(client_key), stored_key)


def _keys(password: str, salt: bytes, iterations: int) -> tuple[bytes, bytes]:
    """(ClientKey, ServerKey) from the password (RFC 5802 §3)."""
    # RFC 5802 §2.2: Hi() is PBKDF2 with HMAC as the pseudorandom function
    salted = hashlib.pbkdf2_hmac(_HASH, saslprep(password).encode(), salt, iterations)
    return _hmac(salted, b"Client Key"), _hmac(salted, b"Server Key")


@dataclass(frozen=True, slots=True)
class ScramCredentials:
    """What a server stores for SCRAM-SHA-256 instead of the password (RFC 5802 §3)."""

    salt: bytes
    iterations: int
    stored_key: bytes
    server_key: bytes

    @classmethod
    def from_password(
        cls, password: str, iterations: int = MIN_ITERATIONS, salt: bytes | None = None
    ) -> ScramCredentials:
        """Derive the keys; raises SaslError when SASLprep refuses the password."""
        salt = secrets.token_bytes(SALT_LENGTH) if salt is None else salt
        client_key, server_key = _keys(password, salt, iterations)
        return cls(salt, iterations, _h(client_key), server_key)

    @classmethod
    def decoy(cls, secret: bytes, username: str, iterations: int) -> ScramCredentials:
        """Stand-in keys for an unknown user: stable per (secret, username), shaped like real
        ones, and matching no password, so the exchange runs to the proof check and fails."""
        name = username.encode()
        return cls(
            _hmac(secret, b"salt\0" + name)[:SALT_LENGTH],
            iterations,
            _hmac(secret, b"stored-key\0" + name),
            _hmac(secret, b"server-key\0" + name),
        )


class Authenticator(Protocol):
    """The credentials a server's mechanisms verify against (a directory behind it)."""

    def check_password(self, username: str, password: str) -> str | None:
        """The canonical user when the password is right, else None (same cost if unknown)."""
        ...

    def scram_credentials(self, username: str) -> tuple[str, ScramCredentials] | None:
        """(canonical user, stored keys), or None for unknown users and users without keys."""
        ...

    def scram_decoy(self, username: str) -> ScramCredentials:
        """`ScramCredentials.decoy` for this username, with the server's secret and count."""
        ...


# -- SASLprep --------------------------------------------------------------------

_PROHIBITED = (  # RFC 4013 §2.3
    stringprep.in_table_c12,
    stringprep.in_table_c21_c22,
    stringprep.in_table_c3,
    stringprep.in_table_c4,
    stringprep.in_table_c5,
    stringprep.in_table_c6,
    stringprep.in_table_c7,
    stringprep.in_table_c8,
    stringprep.in_table_c9,
)


def saslprep(text: str) -> str:
    """RFC 4013 SASLprep for a query string; raises SaslError for prohibited input."""
    # RFC 4013 §2.1: non-ASCII spaces become SPACE, "commonly mapped to nothing" goes
    mapped = "".join(
        " " if stringprep.in_table_c12(c) else c for c in text if not stringprep.in_table_b1(c)
    )
    prepared = unicodedata.ucd_3_2_0.normalize("NFKC", mapped)  # RFC 4013 §2.2
    if any(check(c) for c in prepared for check in _PROHIBITED):
        raise SaslError("contains a character SASLprep prohibits")
    # RFC 4013 §2.4, RFC 3454 §6: right-to-left text has no left-to-right characters and
    # starts and ends with a right-to-left character
    if any(stringprep.in_table_d1(c) for c in prepared) and (
        any(stringprep.in_table_d2(c) for c in prepared)
        or not (stringprep.in_table_d1(prepared[0]) and stringprep.in_table_d1(prepared[-1]))
    ):
        raise SaslError("mixes right-to-left and left-to-right text")
    return prepared


# -- helpers shared by mechanisms and adapters -----------------------------------


def encode_b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def decode_b64(line: str) -> bytes | None:
    """Strict base64 (padding required, no stray characters), or None."""
    try:
        return binascii.a2b_base64(line.encode("ascii"), strict_mode=True)
    except (UnicodeEncodeError, binascii.Error):
        return None


def _utf8(data: bytes) -> str | None:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _same_user(authzid: str, authcid: str) -> bool:
    """RFC 4616 §2: an authzid other than the user is refused (we grant no proxying);
    user names are email addresses, so case does not matter."""
    return not authzid or authzid.lower() == authcid.lower()


# -- server mechanisms -----------------------------------------------------------

_Steps = Generator[bytes, bytes, Success | Failure]


class ServerMechanism(Protocol):
    name: str

    def start(self, initial_response: bytes | None) -> Step: ...
    def respond(self, data: bytes) -> Step: ...


class _Machine:
    """A `ServerMechanism` driving a generator of challenges; answers Failure once done."""

    def __init__(self, name: str, steps: _Steps) -> None:
        self.name = name
        self._steps = steps
        self._first = next(steps)  # RFC 4422 §3.3: the initial response answers this one
        self._done = False

    def start(self, initial_response: bytes | None) -> Step:
        if initial_response is None:
            return Challenge(self._first)
        return self.respond(initial_response)

    def respond(self, data: bytes) -> Step:
        if self._done:
            return Failure("the exchange is already over")
        try:
            return Challenge(self._steps.send(data))
        except StopIteration as end:
            self._done = True
            return end.value


def _plain(authenticator: Authenticator) -> _Steps:
    message = yield b""
    # RFC 4616 §2: message = [authzid] UTF8NUL authcid UTF8NUL passwd
    parts = [_utf8(part) for part in message.split(b"\0")]
    if len(parts) != 3 or None in parts or not parts[1] or not parts[2]:
        return Failure("malformed PLAIN message")
    authzid, authcid, password = (part or "" for part in parts)
    if not _same_user(authzid, authcid):
        return Failure("authorization identity differs from the user")
    return _checked(authenticator, authcid, password)


def _login(authenticator: Authenticator) -> _Steps:
    # draft-murchison-sasl-login §2: an initial response is the user name
    username = _utf8((yield b"Username:"))
    password = _utf8((yield b"Password:"))
    if not username or not password:
        return Failure("malformed LOGIN response")
    return _checked(authenticator, username, password)


def _checked(authenticator: Authenticator, username: str, password: str) -> Success | Failure:
    user = authenticator.check_password(username, password)
    return Failure("invalid credentials") if user is None else Success(user)


def _attributes(text: str) -> list[tuple[str, str]] | None:
    """RFC 5802 §5: comma-separated ``a=value`` pairs, or None."""
    items = text.split(",")
    if not all(_ATTRIBUTE.match(item) for item in items):
        return None
    return [(item[0], item[2:]) for item in items]


def _saslname(value: str) -> str | None:
    if not _SASLNAME.fullmatch(value):
        return None
    return value.replace("=2C", ",").replace("=3D", "=")  # RFC 5802 §5.1


@dataclass(frozen=True, slots=True)
class _ClientFirst:
    gs2_header: str
    bare: str  # client-first-message-bare, part of the AuthMessage
    username: str
    nonce: str


def _client_first(message: bytes) -> _ClientFirst | Failure:
    first = _utf8(message)
    if first is None:
        return Failure("client-first message is not UTF-8")
    # RFC 5802 §7: gs2-header = gs2-cbind-flag "," [authzid] ","
    flag, _, rest = first.partition(",")
    authzid, comma, bare = rest.partition(",")
    if flag not in ("n", "y"):  # "p=" asks for channel binding, which we do not offer (§6)
        return Failure("channel binding is not supported")
    fields = _attributes(bare) if comma else None
    # RFC 5802 §5.1: "m" (a mandatory extension we do not know) would stand before "n"
    if not fields or len(fields) < 2 or [k for k, _ in fields[:2]] != ["n", "r"]:
        return Failure("malformed client-first message")
    username, nonce = _saslname(fields[0][1]), fields[1][1]
    identity = _saslname(authzid[2:]) if authzid.startswith("a=") else None
    if username is None or (authzid and identity is None) or not _NONCE.fullmatch(nonce):
        return Failure("malformed client-first message")
    if not _same_user(identity or "", username):
        return Failure("authorization identity differs from the user")
    return _ClientFirst(first[: len(first) - len(bare)], bare, username, nonce)


def _scram(authenticator: Authenticator, server_nonce: str) -> _Steps:
    first = _client_first((yield b""))
    if isinstance(first, Failure):
        return first
    found = authenticator.scram_credentials(first.username)
    decoy = authenticator.scram_decoy(first.username)  # computed for every user alike
    credentials = decoy if found is None else found[1]
    nonce = first.nonce + server_nonce
    server_first = f"r={nonce},s={encode_b64(credentials.salt)},i={credentials.iterations}"

    final = _utf8((yield server_first.encode()))
    without_proof, _, proof_b64 = (final or "").rpartition(",p=")
    fields = _attributes(without_proof) or []
    if len(fields) < 2 or [k for k, _ in fields[:2]] != ["c", "r"]:
        return Failure("malformed client-final message")
    if decode_b64(fields[0][1]) != first.gs2_header.encode():
        return Failure("channel binding data differs from the gs2 header")  # RFC 5802 §5.1
    if fields[1][1] != nonce:
        return Failure("nonce mismatch")
    proof = decode_b64(proof_b64) or b""
    auth_message = f"{first.bare},{server_first},{without_proof}".encode()  # RFC 5802 §3
    if not _proof_matches(proof, credentials.stored_key, auth_message) or found is None:
        return Failure("invalid credentials")
    verifier = _server_signature(credentials.server_key, auth_message)
    return Success(found[0], final=b"v=" + encode_b64(verifier).encode())


def plain_server(authenticator: Authenticator) -> ServerMechanism:
    return _Machine("PLAIN", _plain(authenticator))


def login_server(authenticator: Authenticator) -> ServerMechanism:
    return _Machine("LOGIN", _login(authenticator))


def scram_sha256_server(
    authenticator: Authenticator, *, nonce: str | None = None
) -> ServerMechanism:
    """`nonce` (the server's part; printable, no ",") is for tests: random by default."""
    return _Machine("SCRAM-SHA-256", _scram(authenticator, nonce or secrets.token_urlsafe(18)))


SERVER_MECHANISMS: dict[str, Callable[[Authenticator], ServerMechanism]] = {
    "SCRAM-SHA-256": scram_sha256_server,
    "PLAIN": plain_server,
    "LOGIN": login_server,
}
_PASSWORD_IN_CLEAR = frozenset({"PLAIN", "LOGIN"})


def mechanism_names(*, tls: bool = True) -> tuple[str, ...]:
    """Mechanisms to advertise, strongest first; without TLS none that sends the password
    itself (RFC 4616 §6, RFC 4954 §4)."""
    return tuple(name for name in SERVER_MECHANISMS if tls or name not in _PASSWORD_IN_CLEAR)


# -- the line-level exchange the adapters drive ----------------------------------


class ServerExchange:
    """One AUTH / AUTHENTICATE exchange over base64 lines.

    `start` takes the command's initial response (None when absent, "=" for an empty one),
    `respond` each later line. A `Challenge` goes out as ``334 <b64>`` / ``+ <b64>``, a
    `Success` (never carrying `final` here) as the success reply, a `Failure` by its kind.
    """

    def __init__(self, mechanism: ServerMechanism) -> None:
        self.mechanism = mechanism
        self._success: Success | None = None  # held while its final data is out as a challenge

    def start(self, initial_response: str | None) -> Step:
        if initial_response is None:
            return self._deliver(self.mechanism.start(None))
        # RFC 4954 §4, RFC 5034 §4, RFC 4959 §3: "=" is an empty initial response
        data = b"" if initial_response == "=" else decode_b64(initial_response)
        if data is None:
            return Failure("initial response is not base64", FailureKind.MALFORMED)
        return self._deliver(self.mechanism.start(data))

    def respond(self, line: str) -> Step:
        if line == "*":  # RFC 4954 §4, RFC 5034 §4, RFC 9051 §6.2.2
            return Failure("cancelled by the client", FailureKind.CANCELLED)
        data = decode_b64(line)
        if data is None:
            return Failure("response is not base64", FailureKind.MALFORMED)
        if self._success is not None:
            success, self._success = self._success, None
            if data:  # RFC 4422 §3.6: the answer to additional data must be empty
                return Failure("non-empty answer to the final message", FailureKind.MALFORMED)
            return success
        return self._deliver(self.mechanism.respond(data))

    def _deliver(self, step: Step) -> Step:
        # RFC 4422 §3.6: additional data with success goes out as one more challenge, the
        # only form SMTP (RFC 4954 §4) and IMAP4rev1 have and a valid one for POP3 and IMAP.
        if isinstance(step, Success) and step.final is not None:
            self._success = Success(step.user)
            return Challenge(step.final)
        return step


def new_exchange(mechanism: str, authenticator: Authenticator) -> ServerExchange | None:
    """An exchange for `mechanism` (any case), or None when it is not one we offer."""
    factory = SERVER_MECHANISMS.get(mechanism.upper())
    return None if factory is None else ServerExchange(factory(authenticator))


# -- client side -----------------------------------------------------------------


def client_plain(user: str, password: str) -> bytes:
    """The PLAIN message without an authorization identity (RFC 4616 §2)."""
    return f"\0{user}\0{password}".encode()


class ScramClient:
    """SCRAM-SHA-256 from the client's side: `first()`, `final(server_first)`, `verify()`.

    Raises SaslError for a server message that is malformed, weakens the exchange (fewer
    than 4096 iterations, RFC 7677 §4) or fails to prove the server knows the keys.
    """

    _GS2_HEADER = "n,,"  # no channel binding, no authorization identity (RFC 5802 §7)

    def __init__(self, username: str, password: str, *, nonce: str | None = None) -> None:
        name = saslprep(username).replace("=", "=3D").replace(",", "=2C")  # RFC 5802 §5.1
        self._password = password
        self._nonce = nonce or secrets.token_urlsafe(18)
        self._bare = f"n={name},r={self._nonce}"
        self._server_signature = b""

    def first(self) -> bytes:
        return (self._GS2_HEADER + self._bare).encode()

    def final(self, server_first: bytes) -> bytes:
        text = _utf8(server_first) or ""
        fields = _attributes(text) or []
        if [k for k, _ in fields[:3]] != ["r", "s", "i"]:  # RFC 5802 §7 (no "m" we know)
            raise SaslError("malformed server-first message")
        (_, nonce), (_, salt_b64), (_, iterations) = fields[:3]
        salt = decode_b64(salt_b64)
        if not nonce.startswith(self._nonce) or not _NONCE.fullmatch(nonce) or not salt:
            raise SaslError("malformed server-first message")
        if not (iterations.isascii() and iterations.isdigit()) or not (
            MIN_ITERATIONS <= int(iterations) <= MAX_ITERATIONS
        ):
            raise SaslError(f"server asks for {iterations!r} iterations")
        client_key, server_key = _keys(self._password, salt, int(iterations))
        stored_key = _h(client_key)
        without_proof = f"c={encode_b64(self._GS2_HEADER.encode())},r={nonce}"
        auth_message = f"{self._bare},{text},{without_proof}".encode()  # RFC 5802 §3
        proof = _client_proof(client_key, stored_key, auth_message)
        self._server_signature = _server_signature(server_key, auth_message)
        return f"{without_proof},p={encode_b64(proof)}".encode()

    def verify(self, server_final: bytes) -> None:
        text = _utf8(server_final) or ""
        if text.startswith("e="):  # RFC 5802 §7: server-error
            raise SaslError(f"server refused: {text[2:]!r}")
        verifier = decode_b64(text[2:]) if text.startswith("v=") else None
        if not self._server_signature or not hmac.compare_digest(
            verifier or b"", self._server_signature
        ):
            raise SaslError("server signature does not match")
