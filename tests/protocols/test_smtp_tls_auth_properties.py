"""Properties of the SMTP core through its TLS and AUTH states, under arbitrary input.

A model session answers the core's events the way servers/smtp does in the submission role
with `allow_plaintext_loopback = false`: STARTTLS gets 220 once, then `start_tls()`; AUTH
gets 538 before TLS and runs the real SASL mechanisms after it (334, 235, 535, 501); MAIL
needs a login (530). Over random sessions built from those commands, their SASL lines and
random bytes, the properties are:

- plaintext sent behind an accepted STARTTLS in the same packet is dropped whole, and the
  session goes on exactly as if it had never been sent (STARTTLS injection);
- how the plaintext and the TLS streams are cut into packets changes nothing;
- a SASL response line is only ever read right after a 334, and while an exchange is open
  no line is read as a command; TLS starts the session over (no EHLO, no login).

Standards: RFC 3207 §4.2, RFC 4954 §4, RFC 2920.
"""

from __future__ import annotations

import itertools

from hypothesis import event, given, settings
from hypothesis import strategies as st

from postoffice.protocols import sasl
from postoffice.protocols.smtp import NEED_DATA, PAUSED, Reply, ServerConnection, State, events
from tests.abuse.helpers import parse_replies
from tests.protocols.test_sasl import Users

USER, PASSWORD = "bob@x.test", "pw-bob"
USERS = Users(**{USER: PASSWORD})


def line(text: str | bytes) -> bytes:
    return (text.encode() if isinstance(text, str) else text) + b"\r\n"


def b64(data: bytes) -> bytes:
    return sasl.encode_b64(data).encode()


STARTTLS = line("STARTTLS")
WORDS = [
    line("EHLO c.test"),
    line("HELO c.test"),
    line(b"AUTH PLAIN " + b64(sasl.client_plain(USER, PASSWORD))),
    line(b"AUTH PLAIN " + b64(sasl.client_plain(USER, "wrong"))),
    line("AUTH PLAIN"),
    line(b64(sasl.client_plain(USER, PASSWORD))),
    line("AUTH LOGIN"),
    line(b"AUTH LOGIN " + b64(USER.encode())),
    line(b64(USER.encode())),
    line(b64(PASSWORD.encode())),
    line(b"AUTH SCRAM-SHA-256 " + b64(sasl.ScramClient(USER, PASSWORD, nonce="n0nce").first())),
    line("AUTH CRAM-MD5"),
    line("*"),
    line("="),
    line("MAIL FROM:<bob@x.test>"),
    line("RCPT TO:<carol@y.test>"),
    line("DATA"),
    line("a line of text"),
    line("."),
    line("RSET"),
    line("NOOP"),
    line("QUIT"),
    line("NOOP " + "x" * 600),  # too long for a command, fine for a SASL line
]
STEPS = [  # whole steps, drawn as often as single words, so that sessions get far
    line("EHLO c.test") + WORDS[2],  # a login with PLAIN
    line("EHLO c.test") + WORDS[4] + WORDS[5],  # PLAIN, the credentials after the 334
    line("EHLO c.test") + WORDS[6] + WORDS[8] + WORDS[9],  # LOGIN, user, password
    WORDS[14] + WORDS[15] + WORDS[16] + line("Subject: x") + line("") + WORDS[18],
]
words = st.one_of(st.sampled_from(WORDS), st.sampled_from(STEPS), st.binary(max_size=6))
commands = st.lists(words, max_size=12)  # no STARTTLS among them
commands_or_starttls = st.lists(
    st.one_of(words, st.sampled_from([STARTTLS, line("EHLO c.test") + STARTTLS])), max_size=12
)
cuts = st.lists(st.integers(0, 4000), max_size=6)

READY = Reply(220, "2.0.0", "Ready to start TLS")
Trace = list[tuple[int, object, int]]  # (packet, event or "tls", reply code or bytes dropped)


class Session:
    """The model server over one `ServerConnection`, recording what happened."""

    def __init__(self) -> None:
        self.conn = ServerConnection()
        self.tls = False
        self.user = ""
        self.exchange: sasl.ServerExchange | None = None
        self.trace: Trace = []
        self.conn.send(Reply(220, None, "mx.test ESMTP"))

    def run(self, packets: list[bytes]) -> Trace:
        for number, packet in enumerate(packets):
            if self.conn.closed:
                break
            self.feed(number, packet)
        return self.trace

    def feed(self, number: int, packet: bytes) -> None:
        self.conn.receive_data(packet)
        while (event := self.conn.next_event()) not in (NEED_DATA, PAUSED):
            assert isinstance(event, events.Event)
            if isinstance(event, events.ConnectionClosed):
                return
            self.check(event)
            reply = self.answer(event)
            assert [r.code for r in parse_replies(self.conn.send(reply))] == [reply.code]
            self.trace.append((number, event, reply.code))
            if self.conn.state is State.STARTTLS:
                self.trace.append((number, "tls", self.conn.start_tls()))
                self.tls, self.user, self.exchange = True, "", None
                assert (self.conn.state, self.conn.extended) == (State.CONNECTED, False)
                assert self.conn.next_event() is NEED_DATA  # nothing left from plaintext

    def check(self, event: events.Event) -> None:
        """An exchange is open exactly when the core reads SASL lines, and then only those."""
        assert (self.conn.state is State.AUTH) == (self.exchange is not None)
        if self.exchange is not None:
            assert isinstance(event, events.AuthData | events.CommandError), event
        else:
            assert not isinstance(event, events.AuthData)

    def answer(self, event: events.Event) -> Reply:
        if isinstance(event, events.CommandError):
            self.exchange = None  # a bad SASL line ends the exchange too
            return event.reply
        if isinstance(event, events.StartTls):
            return Reply(503, "5.5.1", "TLS already active") if self.tls else READY
        if isinstance(event, events.Auth):
            return self.auth(event)
        if isinstance(event, events.AuthData):
            assert self.exchange is not None
            return self.step(self.exchange.respond(event.line))
        if isinstance(event, events.Helo):
            offer = ("AUTH SCRAM-SHA-256 PLAIN LOGIN",) if self.tls and not self.user else ()
            return Reply(250, None, ("mx.test", "PIPELINING", *offer))
        if isinstance(event, events.MailFrom) and not self.user:
            return Reply(530, "5.7.0", "Authentication required")
        if isinstance(event, events.Data):
            return Reply(354, None, "Go ahead")
        if isinstance(event, events.Quit):
            return Reply(221, "2.0.0", "Bye")
        return Reply(250, "2.0.0", "Ok")

    def auth(self, event: events.Auth) -> Reply:
        if self.user:
            return Reply(503, "5.5.1", "Already authenticated")
        if not self.tls:
            return Reply(538, "5.7.11", "Encryption required")
        self.exchange = sasl.new_exchange(event.mechanism, USERS)
        if self.exchange is None:
            return Reply(504, "5.5.4", "Unrecognized authentication type")
        return self.step(self.exchange.start(event.initial_response))

    def step(self, step: sasl.Step) -> Reply:
        if isinstance(step, sasl.Challenge):
            return Reply(334, None, sasl.encode_b64(step.data))
        self.exchange = None
        if isinstance(step, sasl.Success):
            assert self.tls  # never a login without TLS
            self.user = step.user
            return Reply(235, "2.7.0", "Authentication successful")
        if step.kind is sasl.FailureKind.REJECTED:
            return Reply(535, "5.7.8", "Authentication credentials invalid")
        return Reply(501, "5.0.0", "Authentication cancelled or malformed")


def cut(data: bytes, offsets: list[int]) -> list[bytes]:
    bounds = [0, *sorted(o % (len(data) + 1) for o in offsets), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds) if b > a]


def without_packets(trace: Trace) -> list[tuple[object, int]]:
    return [(event, result) for _, event, result in trace]


def test_a_login_through_tls_reaches_mail() -> None:
    login = line(b"AUTH PLAIN " + b64(sasl.client_plain(USER, PASSWORD)))
    trace = Session().run(
        [line("EHLO c.test") + login + STARTTLS, line("EHLO c.test") + login + WORDS[14]]
    )
    codes = [result for _, _, result in trace]
    assert codes == [250, 538, 220, 0, 250, 235, 250]


@settings(max_examples=300, deadline=None)
@given(commands, st.lists(words, min_size=1, max_size=8), commands_or_starttls)
def test_plaintext_injected_behind_starttls_changes_nothing(
    before: list[bytes], injected: list[bytes], after: list[bytes]
) -> None:
    tail = b"".join(injected)
    before = [*before, line("") + line("EHLO c.test")]  # end any partial line, then EHLO
    attacked = Session().run([*before, STARTTLS + tail, *after])
    clean = Session().run([*before, STARTTLS, *after])
    starttls_packet = len(before)
    accepted = [n for n, step, _ in attacked if step == "tls"][:1] == [starttls_packet]
    event(f"STARTTLS accepted: {accepted}")
    if accepted:
        assert (starttls_packet, "tls", len(tail)) in attacked
        assert [(e, r if e != "tls" else 0) for e, r in without_packets(attacked)] == [
            (e, r) for e, r in without_packets(clean)
        ]


@settings(max_examples=300, deadline=None)
@given(commands, commands_or_starttls, cuts, cuts)
def test_segmentation_through_tls_does_not_matter(
    plaintext: list[bytes], encrypted: list[bytes], plain_cuts: list[int], tls_cuts: list[int]
) -> None:
    plain = line("EHLO c.test") + b"".join(plaintext) + STARTTLS
    tls = b"".join(encrypted)
    whole = Session().run([plain, tls])
    handshakes = [n for n, step, _ in whole if step == "tls"]
    event(f"handshakes in packets {handshakes}")
    if handshakes not in ([], [0]):
        return  # STARTTLS refused in plaintext, then one accepted later: packets matter there
    pieces = Session().run([*cut(plain, plain_cuts), *cut(tls, tls_cuts)])
    assert without_packets(pieces) == without_packets(whole)


@settings(max_examples=300, deadline=None)
@given(st.lists(commands_or_starttls, max_size=4))
def test_random_sessions_keep_the_tls_and_auth_rules(packets: list[list[bytes]]) -> None:
    session = Session()
    trace = session.run([b"".join(words) for words in packets])
    logged_in = False
    for _, step, result in trace:
        if step == "tls":
            logged_in = False
        elif isinstance(step, events.Auth | events.AuthData) and result == 235:
            logged_in = True
        elif isinstance(step, events.MailFrom):
            assert (result == 250) == logged_in
