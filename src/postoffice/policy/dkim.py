"""DKIM: per-domain keys on disk, signing of outgoing mail, verification of incoming mail.

Each domain has key sets named by a selector such as `po20250114`; a set holds
an RSA-2048 and an Ed25519 key, published under the DNS selectors
`<selector>-rsa` and `<selector>-ed25519` (one key record per name), and a
message is signed with both, as RFC 8463 recommends while verifiers without
Ed25519 remain. Keys live in `<data_dir>/dkim/<domain>/<selector>.{rsa,ed25519}.key`
(PKCS#8 PEM, mode 0600); `selectors.json` beside them names the active set,
the sets still published, and the retired selectors (never reused, since old
records may linger in caches). Rotation makes a new active set and keeps the
old ones published until `retire` removes them.

Signing and verifying use dkimpy with relaxed/relaxed canonicalization. dkimpy
looks keys up through a synchronous callback, so `verify` first fetches every
key record with our asynchronous resolver, maps DNS failures to temperror and
missing records to permerror itself, and then runs dkimpy in a worker thread
with a callback that only returns what was fetched: no lookup escapes to the
system resolver, and hashing large bodies does not block the event loop.

dkimpy and cryptography are imported in the functions that use them, not at the top: a
server that signs and verifies nothing (all its mail from its own networks or users of
other domains) never loads them, and the server imports this module in every process.

Standards: RFC 6376 §3.5 (signature tags), §3.6 (key records), §5.4 (header
fields to sign; signing From once more than it occurs stops added ones),
§6.1 (verification), §3.4.2/§3.4.4 (relaxed canonicalization), RFC 8463
(Ed25519-SHA256, dual signatures), RFC 8301 (RSA at least 1024 bits, SHA-256),
RFC 8601 §2.7.1 (dkim results), RFC 6008 (header.b).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from postoffice.dns import DnsTemporaryError, NoRecords, NoSuchDomain, Resolver
from postoffice.fileio import replace_file
from postoffice.policy.authres import Resinfo, Result
from postoffice.policy.dmarc import author_domain

if TYPE_CHECKING:
    import dkim as dkimpy

ALGORITHMS = ("rsa", "ed25519")
RSA_BITS = 2048
MIN_RSA_BITS = 1024  # RFC 8301 §3.2: shorter keys are not accepted
MAX_SIGNATURES = 10  # signatures verified per message; more are ignored (RFC 6376 §6.1)
DEFAULT_SELECTOR_PREFIX = "po"
STATE_FILE = "selectors.json"
# RFC 6376 §5.4: From is listed twice, so a second From added later breaks the signature;
# the others are signed as present (a missing one is signed as empty, so none can be added).
DEFAULT_HEADERS = (
    "from",
    "from",
    "sender",
    "reply-to",
    "to",
    "cc",
    "subject",
    "date",
    "message-id",
    "in-reply-to",
    "references",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
)
_SIGNATURE_ALGORITHMS = {"rsa": b"rsa-sha256", "ed25519": b"ed25519-sha256"}
_NAME = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")  # one DNS label (RFC 6376 §3.1)
# dkimpy reports every bad signature from the internet at error level; the reasons are in
# the results instead.
_QUIET = logging.Logger("postoffice.policy.dkim.dkimpy", logging.CRITICAL)


class DkimKeyError(Exception):
    """A key store problem worth one line to the user (unknown selector, bad domain…)."""


@dataclass(frozen=True, slots=True)
class DkimKey:
    """One private key and the DNS selector it is published under."""

    algorithm: str  # "rsa" or "ed25519"
    selector: str  # the DNS selector: "<set selector>-<algorithm>"
    private_pem: bytes = field(repr=False)  # PKCS#8 PEM

    def dns_record(self) -> str:
        """The TXT record text for `<selector>._domainkey.<domain>` (RFC 6376 §3.6.1)."""
        from cryptography.hazmat.primitives import serialization  # lazily: module docstring

        private = serialization.load_pem_private_key(self.private_pem, password=None)
        public = private.public_key()
        if self.algorithm == "rsa":
            der = public.public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        else:  # RFC 8463 §4.2: the raw 32-octet public key
            der = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return f"v=DKIM1; k={self.algorithm}; p={base64.b64encode(der).decode('ascii')}"

    def signing_key(self) -> bytes:
        """The private key as dkimpy takes it: PEM for RSA, the base64 seed for Ed25519."""
        if self.algorithm == "rsa":
            return self.private_pem
        from cryptography.hazmat.primitives import serialization  # lazily: module docstring

        private = serialization.load_pem_private_key(self.private_pem, password=None)
        seed = private.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        return base64.b64encode(seed)


@dataclass(frozen=True, slots=True)
class KeySet:
    """The keys of one selector of one domain; `keys` holds one per algorithm."""

    domain: str
    selector: str
    created: float
    keys: tuple[DkimKey, ...]


@dataclass(frozen=True, slots=True)
class DkimResult:
    """The verdict on one DKIM-Signature field."""

    result: Result  # pass, fail, neutral, temperror, permerror
    domain: str  # d=, "" when unreadable
    selector: str = ""
    algorithm: str = ""
    signature: str = ""  # the start of b=, to tell signatures apart (RFC 6008)
    reason: str = ""

    def resinfo(self) -> Resinfo:
        properties = [("header.d", self.domain), ("header.s", self.selector)]
        properties += [("header.a", self.algorithm), ("header.b", self.signature[:8])]
        return Resinfo("dkim", self.result, tuple((k, v) for k, v in properties if v), self.reason)


def generate(domain: str, selector: str, now: float) -> KeySet:
    """A new key set: RSA-2048 and Ed25519."""
    from cryptography.hazmat.primitives import serialization  # lazily: module docstring
    from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

    pkcs8 = serialization.PrivateFormat.PKCS8
    pems = {
        "rsa": rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS),
        "ed25519": ed25519.Ed25519PrivateKey.generate(),
    }
    keys = tuple(
        DkimKey(
            algorithm,
            f"{selector}-{algorithm}",
            pems[algorithm].private_bytes(
                serialization.Encoding.PEM, pkcs8, serialization.NoEncryption()
            ),
        )
        for algorithm in ALGORITHMS
    )
    return KeySet(domain, selector, now, keys)


class KeyStore:
    """The DKIM keys under `<data_dir>/dkim/`, one directory per domain."""

    def __init__(self, data_dir: Path) -> None:
        self.root = data_dir / "dkim"

    def domains(self) -> list[str]:
        """Domains with a key state, sorted."""
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if (p / STATE_FILE).is_file())

    def active(self, domain: str) -> KeySet | None:
        """The key set new signatures use, or None when the domain has no keys."""
        state = self._state(domain)
        return self._load(domain, state["active"], state) if state["active"] else None

    def published(self, domain: str) -> list[KeySet]:
        """Every key set whose records must stay in DNS, oldest first (the active one too)."""
        state = self._state(domain)
        sets = [self._load(domain, selector, state) for selector in state["selectors"]]
        return sorted(sets, key=lambda key_set: (key_set.created, key_set.selector))

    def signing_keys(self, domain: str) -> KeySet | None:
        """The active keys of `domain` or of its closest parent domain that has keys."""
        labels = domain.lower().rstrip(".").split(".")
        if not all(_NAME.fullmatch(label) for label in labels):
            return None  # not a name we could hold keys for
        for start in range(len(labels)):
            keys = self.active(".".join(labels[start:]))
            if keys is not None:
                return keys
        return None

    def ensure(self, domain: str, prefix: str = DEFAULT_SELECTOR_PREFIX) -> KeySet:
        """The active key set, created first when the domain has none (`domain add`)."""
        return self.active(domain) or self.rotate(domain, prefix)

    def rotate(
        self, domain: str, prefix: str = DEFAULT_SELECTOR_PREFIX, now: float | None = None
    ) -> KeySet:
        """Make a new active key set; the previous ones stay published until retired."""
        now = time.time() if now is None else now
        state = self._state(domain)
        selector = _new_selector(prefix, now, {*state["selectors"], *state["retired"]})
        keys = generate(_domain(domain), selector, now)
        directory = self._dir(domain)
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        for key in keys.keys:
            replace_file(directory / f"{selector}.{key.algorithm}.key", key.private_pem, mode=0o600)
        state["selectors"][selector] = {"created": now}
        state["active"] = selector
        self._save(domain, state)
        return keys

    def retire(self, domain: str, selector: str) -> KeySet:
        """Stop publishing `selector` and delete its keys (never the active one)."""
        state = self._state(domain)
        if selector not in state["selectors"]:
            raise DkimKeyError(f"{domain} has no published selector {selector!r}")
        if selector == state["active"]:
            raise DkimKeyError(f"{selector} is the active selector of {domain}; rotate first")
        retired = self._load(domain, selector, state)
        del state["selectors"][selector]
        state["retired"].append(selector)
        self._save(domain, state)
        for algorithm in ALGORITHMS:
            (self._dir(domain) / f"{selector}.{algorithm}.key").unlink(missing_ok=True)
        return retired

    def _dir(self, domain: str) -> Path:
        return self.root / _domain(domain)

    def _state(self, domain: str) -> dict[str, Any]:
        path = self._dir(domain) / STATE_FILE
        try:
            state = json.loads(path.read_text("utf-8"))
        except FileNotFoundError:
            return {"active": "", "selectors": {}, "retired": []}
        except (OSError, ValueError) as exc:
            raise DkimKeyError(f"{path}: unreadable DKIM key state: {exc}") from None
        return dict(state)

    def _save(self, domain: str, state: dict[str, Any]) -> None:
        text = json.dumps(state, indent=2, sort_keys=True) + "\n"
        replace_file(self._dir(domain) / STATE_FILE, text.encode("utf-8"), mode=0o600)

    def _load(self, domain: str, selector: str, state: dict[str, Any]) -> KeySet:
        keys = []
        for algorithm in ALGORITHMS:
            path = self._dir(domain) / f"{selector}.{algorithm}.key"
            try:
                pem = path.read_bytes()
            except OSError as exc:
                raise DkimKeyError(f"{path}: cannot read the DKIM key: {exc.strerror}") from None
            keys.append(DkimKey(algorithm, f"{selector}-{algorithm}", pem))
        created = float(state["selectors"].get(selector, {}).get("created", 0.0))
        return KeySet(_domain(domain), selector, created, tuple(keys))


def sign(message: bytes, keys: KeySet, headers: Sequence[str] = DEFAULT_HEADERS) -> bytes:
    """The DKIM-Signature fields (RSA, then Ed25519) to prepend to `message`."""
    import dkim as dkimpy  # lazily: module docstring

    include = [name.lower().encode("ascii") for name in headers]
    return b"".join(
        dkimpy.sign(
            message,
            key.selector.encode("ascii"),
            keys.domain.encode("ascii"),
            key.signing_key(),
            canonicalize=(b"relaxed", b"relaxed"),
            signature_algorithm=_SIGNATURE_ALGORITHMS[key.algorithm],
            include_headers=include,
            logger=_QUIET,
        )
        for key in keys.keys
    )


def sign_message(message: bytes, store: KeyStore) -> bytes:
    """Signatures for `message` with the keys of its From domain, b"" when we hold none."""
    domain = author_domain(message)
    keys = store.signing_keys(domain) if domain else None
    return sign(message, keys) if keys is not None else b""


async def verify(message: bytes, resolver: Resolver) -> list[DkimResult]:
    """One result per DKIM-Signature field (at most MAX_SIGNATURES), top first."""
    import dkim as dkimpy  # lazily: module docstring

    verifier = await asyncio.to_thread(dkimpy.DKIM, message, logger=_QUIET, minkey=MIN_RSA_BITS)
    count = sum(1 for name, _ in verifier.headers if name.lower() == b"dkim-signature")
    fields = [_fields(verifier, index) for index in range(min(count, MAX_SIGNATURES))]
    records = await asyncio.gather(*(_key_record(resolver, tags) for tags in fields))
    return await asyncio.to_thread(_verify_all, verifier, fields, records)


def _fields(verifier: dkimpy.DKIM, index: int) -> dict[bytes, bytes] | DkimResult:
    """The tags of signature `index`, or its neutral result when they are unusable."""
    import dkim as dkimpy  # lazily: module docstring

    try:
        prepared = verifier.verify_headerprep(index)
    except dkimpy.DKIMException as exc:
        # RFC 8601 §2.7.1: "neutral" for a signature with syntax errors.
        return DkimResult(Result.NEUTRAL, "", reason=f"unusable signature: {exc}")
    tags: dict[bytes, bytes] = prepared[0]
    return tags


async def _key_record(
    resolver: Resolver, tags: dict[bytes, bytes] | DkimResult
) -> str | DkimResult:
    """The key record the signature points at (RFC 6376 §3.6.2), or the result that ends it."""
    if isinstance(tags, DkimResult):
        return tags
    name = f"{_text(tags[b's'])}._domainkey.{_text(tags[b'd'])}"
    try:
        texts = await resolver.txt(name)
    except (NoSuchDomain, NoRecords):
        return _result(tags, Result.PERMERROR, f"no key record at {name}")  # §6.1.2
    except DnsTemporaryError as exc:
        return _result(tags, Result.TEMPERROR, str(exc))
    return texts[0]  # §3.6.2.2: with several records, a verifier may pick one


def _verify_all(
    verifier: dkimpy.DKIM,
    fields: list[dict[bytes, bytes] | DkimResult],
    records: list[str | DkimResult],
) -> list[DkimResult]:
    results = []
    for index, (tags, record) in enumerate(zip(fields, records, strict=True)):
        if isinstance(record, DkimResult):
            results.append(record)
        else:
            assert not isinstance(tags, DkimResult)  # a record is only fetched for good tags
            results.append(_verify_one(verifier, index, tags, record))
    return results


def _verify_one(
    verifier: dkimpy.DKIM, index: int, tags: dict[bytes, bytes], record: str
) -> DkimResult:
    import dkim as dkimpy  # lazily: module docstring

    try:
        dkimpy.evaluate_pk(b"", record.encode("utf-8"))
    except dkimpy.DKIMException as exc:
        return _result(tags, Result.PERMERROR, f"bad key record: {exc}")  # §6.1.2
    try:
        valid = verifier.verify(index, dnsfunc=lambda name, timeout=5: record.encode("utf-8"))
    except dkimpy.ValidationError as exc:  # the body hash did not match
        return _result(tags, Result.FAIL, str(exc).split(" (", 1)[0])
    except dkimpy.KeyFormatError as exc:  # e.g. an RSA key shorter than MIN_RSA_BITS
        return _result(tags, Result.PERMERROR, str(exc))
    except dkimpy.DKIMException as exc:
        return _result(tags, Result.NEUTRAL, str(exc))
    if valid:
        return _result(tags, Result.PASS)
    return _result(tags, Result.FAIL, "signature did not verify")


def _result(tags: dict[bytes, bytes], result: Result, reason: str = "") -> DkimResult:
    signature = re.sub(r"\s+", "", _text(tags.get(b"b", b"")))
    return DkimResult(
        result,
        _text(tags[b"d"]).lower(),
        _text(tags[b"s"]),
        _text(tags.get(b"a", b"")),
        signature,
        reason,
    )


def _text(value: bytes) -> str:
    return value.decode("ascii", "replace")


def _domain(domain: str) -> str:
    """`domain` lower-cased, refused unless every label is a plain DNS label (no paths)."""
    name = domain.lower().rstrip(".")
    if not all(_NAME.fullmatch(label) for label in name.split(".")):
        raise DkimKeyError(f"{domain!r} is not a domain name")
    return name


def _new_selector(prefix: str, now: float, taken: set[str]) -> str:
    """`<prefix><YYYYMMDD>`, with a letter added when that name was used before."""
    base = prefix + time.strftime("%Y%m%d", time.gmtime(now))
    for suffix in ["", *"bcdefghijklmnopqrstuvwxyz"]:
        selector = base + suffix
        if selector not in taken:
            if not _NAME.fullmatch(selector):
                raise DkimKeyError(f"selector prefix {prefix!r} does not make a DNS label")
            return selector
    raise DkimKeyError(f"too many selectors made on one day for prefix {prefix!r}")
