"""Configuration: TOML → frozen dataclasses, validated with errors that name file and key.

The schema *is* the dataclasses below: `_build` walks their fields, checks each
value's type and range, and refuses unknown keys by name, so adding a key is
one line here plus its line in the default file (`default_config.toml`) and in
docs/configuration.md. Relative paths are taken relative to the config file.
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
import types
from dataclasses import dataclass, field, fields, is_dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Union, get_args, get_origin, get_type_hints

CONFIG_NAME = "postoffice.toml"
DEFAULT_DATA_DIR = "postoffice-data"


class ConfigError(Exception):
    """A configuration problem, with a message that names the file and the key."""


@dataclass(frozen=True, slots=True)
class SmtpSection:
    listen: tuple[str, ...] = ("127.0.0.1:2525",)
    relay_networks: tuple[str, ...] = ("127.0.0.0/8", "::1/128")


@dataclass(frozen=True, slots=True)
class SubmissionSection:
    listen: tuple[str, ...] = ("127.0.0.1:2587",)  # STARTTLS (RFC 6409, port 587)
    listen_tls: tuple[str, ...] = ("127.0.0.1:2465",)  # implicit TLS (RFC 8314, port 465)
    allow_plaintext_loopback: bool = True  # AUTH without TLS, but only from loopback clients
    received_identity: bool = False  # name the authenticated user in the Received: header


@dataclass(frozen=True, slots=True)
class Pop3Section:
    listen: tuple[str, ...] = ("127.0.0.1:2110",)  # STLS (RFC 2595), port 110
    listen_tls: tuple[str, ...] = ("127.0.0.1:2995",)  # implicit TLS (RFC 8314), port 995
    allow_plaintext_loopback: bool = True  # USER/PASS and AUTH without TLS from loopback only
    idle_timeout: float = 600.0  # RFC 1939 §3: at least 10 minutes


@dataclass(frozen=True, slots=True)
class ImapSection:
    listen: tuple[str, ...] = ("127.0.0.1:2143",)  # STARTTLS (RFC 9051 §6.2.1), port 143
    listen_tls: tuple[str, ...] = ("127.0.0.1:2993",)  # implicit TLS (RFC 8314), port 993
    allow_plaintext_loopback: bool = True  # LOGIN and AUTHENTICATE without TLS from loopback
    idle_timeout: float = 1800.0  # RFC 9051 §5.4: at least 30 minutes
    max_connections_per_user: int = 20  # logged-in sessions of one user, both listeners


@dataclass(frozen=True, slots=True)
class ChecksSection:
    mode: str = "enforce"  # SPF/DKIM/DMARC on port 25: enforce | monitor | off
    dmarc_reject: bool = True  # false: a p=reject failure goes to Junk instead of 550
    quarantine_folder: str = "Junk"  # Maildir++ folder for p=quarantine (".Junk")
    temperror: str = "tempfail"  # DNS trouble: tempfail (451 4.4.3) | accept


@dataclass(frozen=True, slots=True)
class DkimSection:
    sign: bool = True  # sign mail from authenticated users and our own DSNs
    selector_prefix: str = "po"


@dataclass(frozen=True, slots=True)
class TlsSection:
    cert: str = ""  # PEM certificate chain; empty: a self-signed one in <data_dir>/tls/
    key: str = ""  # PEM private key, set together with cert


@dataclass(frozen=True, slots=True)
class AuthSection:
    max_failures_per_ip: int = 10  # failed AUTH within `window` before the IP is locked out
    max_failures_per_account: int = 20
    window: float = 900.0
    lockout: float = 900.0
    base_delay: float = 1.0  # delay before "535", doubling with each recent failure
    max_delay: float = 15.0


@dataclass(frozen=True, slots=True)
class DnsSection:
    nameservers: tuple[str, ...] = ()  # empty: the system resolver


@dataclass(frozen=True, slots=True)
class RelaySection:
    port: int = 25  # TCP port of remote mail servers
    tls: str = "may"  # like Postfix smtp_tls_security_level: may | encrypt | verify
    ca_file: str = ""  # extra trust anchors for "verify" (PEM); empty: the system store
    smarthost: str = ""  # "host:port": send everything through this server instead of MX
    smarthost_user: str = ""  # AUTH credentials for the smarthost (config file, never argv)
    smarthost_password: str = ""
    destination_concurrency: int = 20  # connections at once to one destination
    concurrency: int = 100  # remote connections at once in all
    connect_timeout: float = 30.0
    command_timeout: float = 300.0  # RFC 5321 §4.5.3.2: per reply while talking to a server
    connection_reuse: float = 5.0  # seconds an idle connection waits for the next message
    bind_address: str = ""  # source address of outgoing connections; empty: the system's choice


@dataclass(frozen=True, slots=True)
class LimitsSection:
    message_size: int = 26_214_400  # octets; RFC 1870 SIZE
    recipients: int = 100  # RFC 5321 §4.5.3.1.8 asks for at least 100
    line_length: int = 1000  # text line incl. CRLF, RFC 5321 §4.5.3.1.6
    command_timeout: float = 300.0  # RFC 5321 §4.5.3.2.7: at least 5 minutes
    data_timeout: float = 300.0  # per read while receiving DATA/BDAT
    min_data_rate: int = 500  # octets/s a message body must average (slowloris in DATA)
    max_connections: int = 500
    shutdown_grace: float = 30.0  # how long transactions in flight may finish at shutdown
    errors_per_session: int = 20  # protocol errors before 421
    max_connections_per_ip: int = 50  # per IPv4 address or IPv6 /64
    commands_per_minute: int = 3000  # per client address
    messages_per_minute: int = 600  # per client address
    exempt_networks: tuple[str, ...] = ()  # clients never rate limited


@dataclass(frozen=True, slots=True)
class QueueSection:
    min_backoff: float = 300.0
    max_backoff: float = 4000.0
    max_lifetime: float = 5 * 86400.0
    delay_warning: float = 0.0  # 0: no delay warnings
    concurrency: int = 20
    local_at_reception: bool = True  # local users' mail into the Maildir before the 250


@dataclass(frozen=True, slots=True)
class LogSection:
    format: str = "text"  # "text" or "json"
    level: str = "info"


@dataclass(frozen=True, slots=True)
class Config:
    hostname: str = "localhost"
    data_dir: Path = Path(DEFAULT_DATA_DIR)
    workers: int = 1  # processes accepting SMTP (see workers.py); one delivers
    smtp: SmtpSection = field(default_factory=SmtpSection)
    submission: SubmissionSection = field(default_factory=SubmissionSection)
    pop3: Pop3Section = field(default_factory=Pop3Section)
    imap: ImapSection = field(default_factory=ImapSection)
    tls: TlsSection = field(default_factory=TlsSection)
    checks: ChecksSection = field(default_factory=ChecksSection)
    dkim: DkimSection = field(default_factory=DkimSection)
    auth: AuthSection = field(default_factory=AuthSection)
    dns: DnsSection = field(default_factory=DnsSection)
    relay: RelaySection = field(default_factory=RelaySection)
    limits: LimitsSection = field(default_factory=LimitsSection)
    queue: QueueSection = field(default_factory=QueueSection)
    log: LogSection = field(default_factory=LogSection)
    source: Path | None = None  # the file this came from (not a TOML key)


_CHOICES = {
    ("log", "format"): ("text", "json"),
    ("log", "level"): ("debug", "info", "warning"),
    ("relay", "tls"): ("may", "encrypt", "verify"),
    ("checks", "mode"): ("enforce", "monitor", "off"),
    ("checks", "temperror"): ("tempfail", "accept"),
}
_NOT_KEYS = {"source"}


def parse_hostport(text: str) -> tuple[str, int]:
    """Split "addr:port" or "[v6]:port" into (host, port); raise ValueError when malformed."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected 'address:port', got {text!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


def default_config_text() -> str:
    """The commented default file written into a new data dir."""
    return resources.files("postoffice").joinpath("default_config.toml").read_text("utf-8")


def load(path: Path, *, data_dir: Path | None = None) -> Config:
    """Read and validate `path`; `data_dir` (from --data-dir) overrides the file's key."""
    try:
        raw = tomllib.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    config = _build(Config, raw, str(path), ())
    base = path.resolve().parent
    resolved = data_dir if data_dir is not None else base / config.data_dir
    config = _replace(config, data_dir=resolved.resolve(), source=path.resolve())
    _check(config, str(path))
    return config


def locate(config: Path | None, data_dir: Path | None) -> tuple[Path, Path]:
    """Where the config file and the data dir are: flags, then POSTOFFICE_HOME, then defaults."""
    if config is not None:
        return config, data_dir if data_dir is not None else Path()
    if data_dir is None:
        data_dir = Path(os.environ.get("POSTOFFICE_HOME") or DEFAULT_DATA_DIR)
    return data_dir / CONFIG_NAME, data_dir


def load_for_cli(config: Path | None, data_dir: Path | None, *, create: bool) -> Config:
    """Load the config the way every command does; `create` writes the default when missing."""
    path, home = locate(config, data_dir)
    if config is None:
        if not path.exists():
            if not create:
                raise ConfigError(f"{path}: no configuration here; run 'postoffice serve' once")
            try:
                home.mkdir(parents=True, exist_ok=True)
                path.write_text(default_config_text(), "utf-8")
            except OSError as exc:
                raise ConfigError(f"{home}: cannot create the data dir: {exc.strerror}") from None
        return load(path, data_dir=home)
    return load(path, data_dir=data_dir)


def _replace(config: Config, **changes: Any) -> Config:
    values = {f.name: getattr(config, f.name) for f in fields(config)}
    values.update(changes)
    return Config(**values)


def _build(cls: type, raw: Any, file: str, where: tuple[str, ...]) -> Any:
    """Turn a TOML table into dataclass `cls`, naming `file` and the key on any error."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{file}: [{'.'.join(where)}] must be a table")
    hints = get_type_hints(cls)
    known = {f.name for f in fields(cls)} - _NOT_KEYS
    unknown = sorted(set(raw) - known)
    if unknown:
        section = f"[{'.'.join(where)}] " if where else ""
        raise ConfigError(f"{file}: unknown key {section}{', '.join(unknown)}")
    values: dict[str, Any] = {}
    for name in known & set(raw):
        key = (*where, name)
        values[name] = _convert(hints[name], raw[name], file, key)
    return cls(**values)


def _convert(hint: Any, value: Any, file: str, key: tuple[str, ...]) -> Any:
    label = _label(key)
    if is_dataclass(hint):
        return _build(hint, value, file, key)  # type: ignore[arg-type]
    origin = get_origin(hint)
    if origin is tuple:
        (item,) = get_args(hint)[:1]
        if not isinstance(value, list):
            raise ConfigError(f"{file}: {label}: expected a list, got {value!r}")
        return tuple(_convert(item, v, file, key) for v in value)
    if origin in (Union, types.UnionType):
        hint = next(a for a in get_args(hint) if a is not type(None))
    if hint is Path:
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{file}: {label}: expected a path, got {value!r}")
        return Path(value)
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise ConfigError(f"{file}: {label}: expected a number of seconds >= 0, got {value!r}")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ConfigError(f"{file}: {label}: expected a positive integer, got {value!r}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{file}: {label}: expected true or false, got {value!r}")
        return value
    if not isinstance(value, str):
        raise ConfigError(f"{file}: {label}: expected a string, got {value!r}")
    choices = _CHOICES.get(key)
    if choices and value not in choices:
        raise ConfigError(f"{file}: {label}: expected one of {', '.join(choices)}, got {value!r}")
    return value


def _label(key: tuple[str, ...]) -> str:
    return f"[{'.'.join(key[:-1])}] {key[-1]}" if len(key) > 1 else key[0]


def _check(config: Config, file: str) -> None:
    """Cross-field and format checks that a type alone cannot express."""
    for section, listens in (
        ("smtp", config.smtp.listen),
        ("submission", config.submission.listen),
    ):
        for text in listens:
            _hostport(text, file, (section, "listen"))
    for key, listens in (
        (("imap", "listen"), config.imap.listen),
        (("imap", "listen_tls"), config.imap.listen_tls),
    ):
        for text in listens:
            _hostport(text, file, key)
    for text in config.dns.nameservers:
        _hostport(text, file, ("dns", "nameservers"))
    networks = (
        (("smtp", "relay_networks"), config.smtp.relay_networks),
        (("limits", "exempt_networks"), config.limits.exempt_networks),
    )
    for key, nets in networks:
        for net in nets:
            try:
                ipaddress.ip_network(net, strict=False)
            except ValueError:
                raise ConfigError(
                    f"{file}: {_label(key)}: {net!r} is not a network like 10.0.0.0/8"
                ) from None
    if config.pop3.idle_timeout < 600:
        raise ConfigError(f"{file}: [pop3] idle_timeout: RFC 1939 §3 needs at least 600 seconds")
    if config.imap.idle_timeout < 1800:
        raise ConfigError(f"{file}: [imap] idle_timeout: RFC 9051 §5.4 needs at least 1800 seconds")
    if bool(config.tls.cert) != bool(config.tls.key):
        raise ConfigError(f"{file}: [tls] cert and key must be set together")
    if config.relay.smarthost:
        try:
            parse_hostport(config.relay.smarthost)
        except ValueError as exc:
            raise ConfigError(f"{file}: [relay] smarthost: {exc}") from None
    if config.relay.bind_address:
        try:
            ipaddress.ip_address(config.relay.bind_address)
        except ValueError:
            raise ConfigError(
                f"{file}: [relay] bind_address: {config.relay.bind_address!r} is not an IP address"
            ) from None
    if not 0 < config.relay.port < 65536:
        raise ConfigError(f"{file}: [relay] port: {config.relay.port} is not a TCP port")
    if config.limits.line_length < 1000:
        raise ConfigError(f"{file}: [limits] line_length: RFC 5321 §4.5.3.1.6 needs at least 1000")
    if not config.hostname or any(c.isspace() for c in config.hostname):
        raise ConfigError(f"{file}: hostname: {config.hostname!r} is not a host name")


def _hostport(text: str, file: str, key: tuple[str, ...]) -> tuple[str, int]:
    try:
        host, port = parse_hostport(text)
        ipaddress.ip_address(host)
    except ValueError as exc:
        raise ConfigError(f"{file}: {_label(key)}: {exc}; use an IP address and a port") from None
    return host, port
