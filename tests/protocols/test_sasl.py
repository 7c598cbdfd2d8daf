"""SASL mechanisms: RFC test vectors, malformed input, decoys for unknown users, fuzzing."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postoffice.protocols.sasl import (
    SERVER_MECHANISMS,
    Challenge,
    Failure,
    FailureKind,
    SaslError,
    ScramClient,
    ScramCredentials,
    ServerExchange,
    Step,
    Success,
    client_plain,
    decode_b64,
    encode_b64,
    login_server,
    mechanism_names,
    new_exchange,
    plain_server,
    saslprep,
    scram_sha256_server,
)

# RFC 7677 §3
RFC_SALT = base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")
RFC_CLIENT_NONCE = "rOprNGfwEbeRWgbNEkqO"
RFC_SERVER_NONCE = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
RFC_CLIENT_FIRST = b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
RFC_SERVER_FIRST = (
    b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
)
RFC_CLIENT_FINAL = (
    b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
    b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
)
RFC_SERVER_FINAL = b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
RFC_NONCE = (RFC_CLIENT_NONCE + RFC_SERVER_NONCE).encode()


class Users:
    """An in-memory `Authenticator`: user names are case-insensitive, canonical lower-case."""

    def __init__(self, **passwords: str) -> None:
        self.passwords = passwords
        self.scram = {
            user: ScramCredentials.from_password(password, 4096, RFC_SALT)
            for user, password in passwords.items()
        }

    def check_password(self, username: str, password: str) -> str | None:
        user = username.lower()
        return user if self.passwords.get(user) == password else None

    def scram_credentials(self, username: str) -> tuple[str, ScramCredentials] | None:
        user = username.lower()
        return (user, self.scram[user]) if user in self.scram else None

    def scram_decoy(self, username: str) -> ScramCredentials:
        return ScramCredentials.decoy(b"test secret", username.lower(), 4096)


USERS = Users(user="pencil", alice="wonderland")


def rejected(step: Step) -> bool:
    return isinstance(step, Failure) and step.kind is FailureKind.REJECTED


# -- SCRAM-SHA-256: the RFC 7677 §3 exchange -----------------------------------


def test_server_reproduces_the_rfc_7677_exchange() -> None:
    mechanism = scram_sha256_server(USERS, nonce=RFC_SERVER_NONCE)
    assert mechanism.start(RFC_CLIENT_FIRST) == Challenge(RFC_SERVER_FIRST)
    assert mechanism.respond(RFC_CLIENT_FINAL) == Success("user", final=RFC_SERVER_FINAL)
    assert rejected(mechanism.respond(b""))  # over: nothing more is accepted


def test_client_reproduces_the_rfc_7677_exchange() -> None:
    client = ScramClient("user", "pencil", nonce=RFC_CLIENT_NONCE)
    assert client.first() == RFC_CLIENT_FIRST
    assert client.final(RFC_SERVER_FIRST) == RFC_CLIENT_FINAL
    client.verify(RFC_SERVER_FINAL)


def test_stored_keys_match_rfc_5802_definitions() -> None:
    credentials = USERS.scram["user"]
    assert (credentials.salt, credentials.iterations) == (RFC_SALT, 4096)
    assert len(credentials.stored_key) == len(credentials.server_key) == 32
    assert ScramCredentials.from_password("pencil", 4096, RFC_SALT) == credentials
    assert ScramCredentials.from_password("pencil").salt != RFC_SALT  # random salt


def test_scram_over_base64_lines_sends_the_final_message_as_a_challenge() -> None:
    exchange = ServerExchange(scram_sha256_server(USERS, nonce=RFC_SERVER_NONCE))
    client = ScramClient("User", "pencil", nonce=RFC_CLIENT_NONCE)
    first = exchange.start(None)
    assert first == Challenge(b"")
    server_first = exchange.respond(encode_b64(client.first()))
    assert isinstance(server_first, Challenge)
    final = exchange.respond(encode_b64(client.final(server_first.data)))
    assert isinstance(final, Challenge)
    client.verify(final.data)
    assert exchange.respond("") == Success("user")


def test_a_non_empty_answer_to_the_final_message_fails() -> None:
    exchange = ServerExchange(scram_sha256_server(USERS, nonce=RFC_SERVER_NONCE))
    exchange.start(encode_b64(RFC_CLIENT_FIRST))
    assert exchange.respond(encode_b64(RFC_CLIENT_FINAL)) == Challenge(RFC_SERVER_FINAL)
    assert malformed(exchange.respond(encode_b64(b"x")))


def test_cancel_after_the_final_message() -> None:
    exchange = ServerExchange(scram_sha256_server(USERS, nonce=RFC_SERVER_NONCE))
    exchange.start(encode_b64(RFC_CLIENT_FIRST))
    exchange.respond(encode_b64(RFC_CLIENT_FINAL))
    assert exchange.respond("*") == Failure("cancelled by the client", FailureKind.CANCELLED)


@pytest.mark.parametrize(
    "client_first",
    [
        b"p=tls-unique,,n=user,r=abc",  # channel binding requested
        b"x,,n=user,r=abc",  # unknown gs2 flag
        b"n,n=user,r=abc",  # gs2 header without its second comma
        b"n=user,r=abc",  # no gs2 header
        b"n,,m=ext,n=user,r=abc",  # a mandatory extension
        b"n,,r=abc,n=user",  # attributes out of order
        b"n,,n=user",  # no nonce
        b"n,,n=,r=abc",  # empty user name
        b"n,,n=us=er,r=abc",  # "=" not escaped
        b"n,,n=user,r=a,b",  # not an attribute after the nonce
        b"n,,n=user,r=",  # empty nonce
        b"n,,n=user,r=ab\x7fc",  # nonce not printable
        b"n,a=alice,n=user,r=abc",  # authzid of another user
        b"n,b=user,n=user,r=abc",  # authzid without "a="
        b"n,,n=\xff,r=abc",  # not UTF-8
        b"",
    ],
)
def test_bad_client_first_messages_fail(client_first: bytes) -> None:
    assert rejected(scram_sha256_server(USERS).start(client_first))


@pytest.mark.parametrize("gs2", [b"y,,", b"n,a=USER,", b"n,a=user,"])
def test_gs2_headers_we_accept(gs2: bytes) -> None:
    """ "y" (client could bind, thinks we cannot) and an authzid naming the user itself."""
    mechanism = scram_sha256_server(USERS, nonce=RFC_SERVER_NONCE)
    server_first = mechanism.start(gs2 + RFC_CLIENT_FIRST[3:])
    assert server_first == Challenge(RFC_SERVER_FIRST)
    client = ScramClient("user", "pencil", nonce=RFC_CLIENT_NONCE)
    client._GS2_HEADER = gs2.decode()  # the client speaks "n,," only
    step = mechanism.respond(client.final(RFC_SERVER_FIRST))
    assert isinstance(step, Success) and step.user == "user"


def final_with(replace: bytes, by: bytes) -> bytes:
    return RFC_CLIENT_FINAL.replace(replace, by)


@pytest.mark.parametrize(
    "client_final",
    [
        final_with(b"p=dHzb", b"p=dHzc"),  # bad proof
        final_with(b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=", b"p=dHzb"),  # short proof
        final_with(b",p=", b",q="),  # no proof
        final_with(b"p=dHzb", b"p=!Hzb"),  # proof not base64
        final_with(b"rOprNGfw", b"rOprNGfx"),  # nonce mismatch
        final_with(b"$k0,", b"$k0x,"),  # server nonce altered
        final_with(b"c=biws", b"c=eSws"),  # "y,," where the client said "n,,"
        final_with(b"c=biws", b"c=!!!!"),  # channel binding not base64
        final_with(b"c=biws,", b""),  # no channel binding
        b"r=" + RFC_NONCE + b",c=biws,p=" + RFC_CLIENT_FINAL.partition(b",p=")[2],  # order
        b"",
        b"\xff",
    ],
)
def test_bad_client_final_messages_fail(client_final: bytes) -> None:
    mechanism = scram_sha256_server(USERS, nonce=RFC_SERVER_NONCE)
    mechanism.start(RFC_CLIENT_FIRST)
    assert rejected(mechanism.respond(client_final))


def test_wrong_password_fails_at_the_proof() -> None:
    mechanism = scram_sha256_server(USERS, nonce=RFC_SERVER_NONCE)
    client = ScramClient("user", "pen", nonce=RFC_CLIENT_NONCE)
    step = mechanism.start(client.first())
    assert isinstance(step, Challenge)
    assert mechanism.respond(client.final(step.data)) == Failure("invalid credentials")


def test_unknown_users_get_a_server_first_message_of_the_same_form() -> None:
    def server_first(user: str) -> dict[str, str]:
        step = scram_sha256_server(USERS).start(f"n,,n={user},r=abc".encode())
        assert isinstance(step, Challenge)
        return dict(item.split("=", 1) for item in step.data.decode().split(","))

    known, unknown = server_first("user"), server_first("nobody")
    assert len(known["r"]) == len(unknown["r"])
    assert len(decode_b64(known["s"]) or b"") == len(decode_b64(unknown["s"]) or b"") == 16
    assert known["i"] == unknown["i"] == "4096"
    assert server_first("nobody")["s"] == unknown["s"]  # stable, like a stored salt
    assert server_first("NOBODY")["s"] == unknown["s"]  # user names ignore case
    assert server_first("somebody")["s"] != unknown["s"]
    assert server_first("user")["r"] != known["r"]  # a fresh server nonce each time


def test_unknown_users_fail_at_the_proof() -> None:
    mechanism = scram_sha256_server(USERS)
    client = ScramClient("nobody", "pencil")
    step = mechanism.start(client.first())
    assert isinstance(step, Challenge)
    assert mechanism.respond(client.final(step.data)) == Failure("invalid credentials")


# -- SCRAM client -----------------------------------------------------------------


@pytest.mark.parametrize(
    "server_first",
    [
        RFC_SERVER_FIRST.replace(b"i=4096", b"i=4095"),  # weaker than RFC 7677 §4 allows
        RFC_SERVER_FIRST.replace(b"i=4096", b"i=99999999999"),  # more work than we do
        RFC_SERVER_FIRST.replace(b"i=4096", b"i=\xc2\xb2"),  # a digit, but not ASCII
        RFC_SERVER_FIRST.replace(b"r=rOpr", b"r=xOpr"),  # not our nonce
        RFC_SERVER_FIRST.replace(b"s=W22", b"s=!22"),  # salt not base64
        b"m=x," + RFC_SERVER_FIRST,  # a mandatory extension
        b"e=other-error",
        b"",
    ],
)
def test_client_refuses_bad_server_first_messages(server_first: bytes) -> None:
    with pytest.raises(SaslError):
        ScramClient("user", "pencil", nonce=RFC_CLIENT_NONCE).final(server_first)


@pytest.mark.parametrize(
    "server_final",
    [RFC_SERVER_FINAL.replace(b"v=6", b"v=7"), b"e=invalid-proof", b"v=", b"", b"\xff"],
)
def test_client_refuses_a_server_that_does_not_prove_itself(server_final: bytes) -> None:
    client = ScramClient("user", "pencil", nonce=RFC_CLIENT_NONCE)
    client.final(RFC_SERVER_FIRST)
    with pytest.raises(SaslError):
        client.verify(server_final)


def test_client_escapes_its_user_name() -> None:
    assert ScramClient("a=b,c", "pw", nonce="n").first() == b"n,,n=a=3Db=2Cc,r=n"


# -- PLAIN ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "outcome"),
    [
        (b"\0user\0pencil", Success("user")),
        (b"user\0user\0pencil", Success("user")),
        (b"USER\0User\0pencil", Success("user")),
        (client_plain("Alice", "wonderland"), Success("alice")),
        (b"alice\0user\0pencil", Failure("authorization identity differs from the user")),
        (b"\0user\0wrong", Failure("invalid credentials")),
        (b"\0nobody\0pencil", Failure("invalid credentials")),
        (b"user\0pencil", Failure("malformed PLAIN message")),
        (b"userpencil", Failure("malformed PLAIN message")),
        (b"\0user\0pencil\0", Failure("malformed PLAIN message")),
        (b"\0\0pencil", Failure("malformed PLAIN message")),
        (b"\0user\0", Failure("malformed PLAIN message")),
        (b"\0user\0pen\xffcil", Failure("malformed PLAIN message")),
        (b"", Failure("malformed PLAIN message")),
    ],
)
def test_plain(message: bytes, outcome: Step) -> None:
    assert plain_server(USERS).start(message) == outcome


def test_plain_without_initial_response_sends_an_empty_challenge() -> None:
    mechanism = plain_server(USERS)
    assert mechanism.start(None) == Challenge(b"")
    assert mechanism.respond(b"\0user\0pencil") == Success("user")


# -- LOGIN ----------------------------------------------------------------------


def test_login_without_initial_response() -> None:
    mechanism = login_server(USERS)
    assert mechanism.start(None) == Challenge(b"Username:")
    assert mechanism.respond(b"User") == Challenge(b"Password:")
    assert mechanism.respond(b"pencil") == Success("user")


def test_login_with_the_user_name_as_initial_response() -> None:
    mechanism = login_server(USERS)
    assert mechanism.start(b"user") == Challenge(b"Password:")
    assert mechanism.respond(b"wrong") == Failure("invalid credentials")


@pytest.mark.parametrize(("user", "password"), [(b"", b"pencil"), (b"user", b""), (b"\xff", b"x")])
def test_login_malformed(user: bytes, password: bytes) -> None:
    mechanism = login_server(USERS)
    mechanism.start(user)
    assert rejected(mechanism.respond(password))


# -- the line-level exchange ------------------------------------------------------


def test_exchange_plain_with_initial_response() -> None:
    exchange = new_exchange("plain", USERS)
    assert exchange is not None
    assert exchange.start(encode_b64(b"\0user\0pencil")) == Success("user")


def test_exchange_equals_sign_is_an_empty_initial_response() -> None:
    exchange = new_exchange("LOGIN", USERS)
    assert exchange is not None
    assert exchange.start("=") == Challenge(b"Password:")  # the user name is empty
    assert rejected(exchange.respond(encode_b64(b"pencil")))


BAD_BASE64 = ["not base64!", "dXNlcg", "dXNlcg==x", "dXN lcg==", "é"]


def malformed(step: Step) -> bool:
    return isinstance(step, Failure) and step.kind is FailureKind.MALFORMED


@pytest.mark.parametrize("line", BAD_BASE64)
def test_exchange_refuses_a_bad_base64_initial_response(line: str) -> None:
    exchange = new_exchange("LOGIN", USERS)
    assert exchange is not None
    assert malformed(exchange.start(line))


@pytest.mark.parametrize("line", [*BAD_BASE64, "="])
def test_exchange_refuses_a_bad_base64_response(line: str) -> None:
    exchange = new_exchange("LOGIN", USERS)
    assert exchange is not None
    exchange.start(None)
    assert malformed(exchange.respond(line))


def test_exchange_cancel() -> None:
    exchange = new_exchange("LOGIN", USERS)
    assert exchange is not None
    exchange.start(None)
    assert exchange.respond("*") == Failure("cancelled by the client", FailureKind.CANCELLED)


def test_mechanism_names_and_registry() -> None:
    assert mechanism_names() == ("SCRAM-SHA-256", "PLAIN", "LOGIN")
    assert mechanism_names(tls=False) == ("SCRAM-SHA-256",)
    assert set(SERVER_MECHANISMS) == set(mechanism_names())
    assert new_exchange("CRAM-MD5", USERS) is None
    assert all(SERVER_MECHANISMS[name](USERS).name == name for name in SERVER_MECHANISMS)


def test_base64_helpers() -> None:
    assert decode_b64("") == b""
    assert decode_b64(encode_b64(b"\0\xff")) == b"\0\xff"
    assert decode_b64("AA") is None  # padding required
    assert decode_b64("AA==AA==") is None  # nothing after padding
    assert decode_b64("A A=") is None


# -- SASLprep ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "prepared"),
    [  # RFC 4013 §3
        ("I\u00adX", "IX"),
        ("user", "user"),
        ("USER", "USER"),
        ("\u00aa", "a"),
        ("\u2168", "IX"),
        ("a\u00a0b", "a b"),  # non-ASCII space
        ("\u0627\u0628", "\u0627\u0628"),  # right-to-left only
    ],
)
def test_saslprep(text: str, prepared: str) -> None:
    assert saslprep(text) == prepared


@pytest.mark.parametrize("text", ["\u0007", "a\ud800", "\u0627\u0031", "a\u0627", "\ufffe"])
def test_saslprep_refuses(text: str) -> None:
    with pytest.raises(SaslError):
        saslprep(text)


def test_scram_prepares_the_password() -> None:
    assert ScramCredentials.from_password("I\u00adX", 4096, RFC_SALT) == (
        ScramCredentials.from_password("IX", 4096, RFC_SALT)
    )
    with pytest.raises(SaslError):
        ScramCredentials.from_password("bell\u0007", 4096, RFC_SALT)


# -- nothing a client sends raises ----------------------------------------------------

SCRAM_PIECES = st.sampled_from(
    ["n", "y", "p", ",", "=", "a=", "n=", "r=", "c=", "p=", "s=", "i=", "m=", "=2C", "=3D", "=2"]
)
SCRAM_WORDS = st.sampled_from(["user", "biws", "dHzb", RFC_CLIENT_NONCE, RFC_SERVER_NONCE])
SCRAM_TEXT = st.lists(SCRAM_PIECES | SCRAM_WORDS | st.text(max_size=4), max_size=12).map(
    lambda pieces: "".join(pieces).encode()
)
MESSAGES = st.binary(max_size=200) | SCRAM_TEXT


@settings(max_examples=300, deadline=None)
@given(
    name=st.sampled_from(sorted(SERVER_MECHANISMS)),
    initial=st.none() | MESSAGES,
    responses=st.lists(MESSAGES, max_size=4),
)
def test_random_bytes_never_raise(name: str, initial: bytes | None, responses: list[bytes]) -> None:
    mechanism = SERVER_MECHANISMS[name](USERS)
    steps = [mechanism.start(initial)] + [mechanism.respond(data) for data in responses]
    assert all(isinstance(step, Challenge | Success | Failure) for step in steps)


@settings(max_examples=200, deadline=None)
@given(
    name=st.sampled_from(sorted(SERVER_MECHANISMS)),
    initial=st.none() | st.text(max_size=40),
    lines=st.lists(st.text(max_size=40) | MESSAGES.map(encode_b64), max_size=4),
)
def test_random_lines_never_raise(name: str, initial: str | None, lines: list[str]) -> None:
    exchange = new_exchange(name, USERS)
    assert exchange is not None
    steps = [exchange.start(initial)] + [exchange.respond(line) for line in lines]
    assert all(isinstance(step, Challenge | Success | Failure) for step in steps)


@settings(max_examples=100, deadline=None)
@given(client_final=SCRAM_TEXT)
def test_random_client_final_after_a_valid_first_never_raises(client_final: bytes) -> None:
    mechanism = scram_sha256_server(USERS, nonce=RFC_SERVER_NONCE)
    assert mechanism.start(RFC_CLIENT_FIRST) == Challenge(RFC_SERVER_FIRST)
    assert isinstance(mechanism.respond(b"c=biws,r=" + RFC_NONCE + client_final), Failure)
