"""`make bench`: postoffice against Postfix, Dovecot and aiosmtpd, side by side, in one run.

Every system is started once, privately, on its own loopback address with its data in one
temporary directory (see `bench.systems`); then the figures are measured in rounds, each
round alternating which system goes first, and the medians are reported. Afterwards the
scaling figure runs 1, 10, 100 and 1,000 concurrent sessions against postoffice and Postfix.
The run prints one Markdown table, writes `bench/results/<date>.json` (every sample) and
`<date>-scaling.png`, and a full run rewrites the results block of docs/performance.md.

    BENCH_QUICK=1 python -m bench.run    # a smoke run with small counts, one round
    BENCH_KEEP=1 python -m bench.run     # keep the temporary directory (logs, Maildirs)

Every load is bounded in count and time (`Plan.timeout` per run) and only ever addresses
loopback. Needs root (Postfix and Dovecot start as root) and the Debian packages postfix,
dovecot-pop3d and dovecot-imapd; `make bench` installs what is missing.

Standards: none of its own.
"""

from __future__ import annotations

import datetime
import imaplib
import os
import platform
import poplib
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

from bench import figures as measure
from bench import report
from bench.dovecot import LDA, dovecot_binary, dovecot_version
from bench.figures import Figure, catalogue
from bench.load import LoadError
from bench.pop3 import install_maildrop, make_maildrop
from bench.systems import IMAP_USER, POP3_USERS, REPO, Systems, running
from postoffice.testing.postfix import postfix_tool

RESULTS = REPO / "bench" / "results"
DOCS = REPO / "docs" / "performance.md"
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class Plan:
    """How much of everything one run does."""

    rounds: int
    accept_messages: int  # (a) and (d), as the smtp-source -m 5000
    other_messages: int  # (b) and (c)
    relay_messages: int  # (e)
    latency_messages: int  # (h)
    maildrops: tuple[int, int]  # (f); the larger one is (i)'s IMAP mailbox too
    imap_deliveries: int  # (i) IDLE: deliveries per round and system
    imap_reads: int  # (i) whole-mailbox readings per round and system: each well under 1 s
    idle_sessions: int  # (g)
    scaling_levels: tuple[int, ...]
    scaling_messages: int
    timeout: float  # seconds any one run may take


FULL = Plan(
    rounds=3,
    accept_messages=5000,
    other_messages=2000,
    relay_messages=2000,
    latency_messages=3000,
    maildrops=(5000, 10000),
    imap_deliveries=10,
    imap_reads=5,
    idle_sessions=1000,
    scaling_levels=(1, 10, 100, 1000),
    scaling_messages=2000,
    timeout=300.0,
)
QUICK = Plan(
    rounds=1,
    accept_messages=300,
    other_messages=100,
    relay_messages=100,
    latency_messages=200,
    maildrops=(300, 600),
    imap_deliveries=5,
    imap_reads=2,
    idle_sessions=100,
    scaling_levels=(1, 10, 100),
    scaling_messages=200,
    timeout=120.0,
)

# What a failed measurement may raise; anything else is a bug and stops the run.
_FAILURES = (
    LoadError,
    OSError,
    RuntimeError,
    poplib.error_proto,
    imaplib.IMAP4.error,
    subprocess.SubprocessError,
)


class Bench:
    """One run: the plan, the systems, the figures collected so far, the errors met."""

    def __init__(self, plan: Plan, systems: Systems) -> None:
        self.plan = plan
        self.systems = systems
        self.figures = catalogue(plan.maildrops, plan.idle_sessions)
        self.scaling: list[dict[str, Any]] = []
        self.idle_samples: dict[str, list[float]] = {}  # (i): every IDLE latency, seconds
        self.errors: list[str] = []

    def attempt(self, label: str, run: Callable[[], _T]) -> _T | None:
        """Run one measurement; on failure note why and go on with the next."""
        try:
            return run()
        except _FAILURES as exc:
            self.errors.append(f"{label}: {exc}")
            print(f"  {label}: FAILED: {exc}", flush=True)
            return None

    def add(self, key: str, system: str, value: float) -> None:
        figure: Figure = self.figures[key]
        figure.add(system, value)
        print(f"  {figure.title} — {system}: {value:,.1f} {figure.unit}", flush=True)

    # --- one round -----------------------------------------------------------------------

    def round(self, number: int) -> None:
        """Every figure once; systems alternate which goes first from round to round."""

        def order(*names: str) -> tuple[str, ...]:
            return names if number % 2 == 0 else names[::-1]

        for name in order("postoffice", "postfix", "aiosmtpd"):
            self._accept(name)
        for key, sessions, reuse in (("b", 20, False), ("c", 1, True)):
            for name in order("postoffice", "postfix"):
                self._other(key, name, sessions, reuse)
        for name in order("postoffice", "postfix"):
            self._latency(name)
        for name in order("postoffice", "postfix"):
            self._relay(name)
        for user, key in zip(POP3_USERS, ("f-small", "f-large"), strict=True):
            for name in order("postoffice", "dovecot"):
                self._pop3(key, name, user)
        for name in order("postoffice", "dovecot"):
            self._imap(name)
        for name in order("postoffice", "postfix"):
            self._idle(name)

    def _accept(self, name: str) -> None:
        """(a) and (d) from one smtp-source run; the sink only counts for (a)."""
        rates = self.attempt(
            f"(a) {name}",
            lambda: measure.accept(
                self.systems.targets[name],
                sessions=20,
                messages=self.plan.accept_messages,
                reuse=True,
                timeout=self.plan.timeout,
            ),
        )
        if rates is None:
            return
        accepted, delivered = rates
        if name == "aiosmtpd":
            self.add("a-sink", name, accepted)
            return
        self.add("a", name, accepted)
        self.add("d", name, delivered)
        if name == "postoffice":
            self.figures["a-sink"].add(name, accepted)  # the same run, compared again

    def _other(self, key: str, name: str, sessions: int, reuse: bool) -> None:
        """(b) or (c)."""
        rates = self.attempt(
            f"({key}) {name}",
            lambda: measure.accept(
                self.systems.targets[name],
                sessions=sessions,
                messages=self.plan.other_messages,
                reuse=reuse,
                timeout=self.plan.timeout,
            ),
        )
        if rates is not None:
            self.add(key, name, rates[0])

    def _latency(self, name: str) -> None:
        run = self.attempt(
            f"(h) {name}",
            lambda: measure.latency(
                self.systems.targets[name],
                messages=self.plan.latency_messages,
                timeout=self.plan.timeout,
            ),
        )
        if run is not None:
            self.add("h50", name, measure.percentile(run.latencies, 0.50) * 1000)
            self.add("h99", name, measure.percentile(run.latencies, 0.99) * 1000)

    def _relay(self, name: str) -> None:
        """(e): end to end through A into B's Maildir."""
        rates = self.attempt(
            f"(e) {name}",
            lambda: measure.accept(
                self.systems.relays[name],
                sessions=20,
                messages=self.plan.relay_messages,
                reuse=True,
                timeout=self.plan.timeout,
            ),
        )
        if rates is not None:
            self.add("e", name, rates[1])

    def _pop3(self, key: str, name: str, user: str) -> None:
        fetch = self.attempt(
            f"(f) {name} {user}",
            lambda: measure.pop3(self.systems, name, user, timeout=60.0),
        )
        if fetch is not None:
            self.add(key, name, fetch.messages / fetch.total)
            if key == "f-large":
                self.add("f-login", name, fetch.login * 1000)

    def _imap(self, name: str) -> None:
        """(i): sessions reading the whole mailbox (a few: each is short and noisy), then
        the IDLE deliveries."""
        for _ in range(self.plan.imap_reads):
            reading = self.attempt(
                f"(i) {name}", lambda: measure.imap_read(self.systems, name, timeout=60.0)
            )
            if reading is not None:
                self.add("i-select", name, (reading.login + reading.select) * 1000)
                self.add("i-select-only", name, reading.select * 1000)
                self.add("i-flags", name, reading.flags * 1000)
                self.add("i-bodies", name, reading.messages / reading.bodies)
        latencies = self.attempt(
            f"(i) IDLE {name}",
            lambda: measure.imap_idle(
                self.systems, name, deliveries=self.plan.imap_deliveries, timeout=30.0
            ),
        )
        if latencies is not None:
            self.add("i-idle", name, statistics.median(latencies) * 1000)
            self.idle_samples.setdefault(name, []).extend(latencies)

    def _idle(self, name: str) -> None:
        mib = self.attempt(
            f"(g) {name}",
            lambda: measure.idle_memory(
                self.systems.targets[name],
                sessions=self.plan.idle_sessions,
                timeout=self.plan.timeout,
            ),
        )
        if mib is not None:
            self.add("g", name, mib)

    def scale(self) -> None:
        """The scaling figure: each session count once, postoffice and Postfix alternating."""
        for index, sessions in enumerate(self.plan.scaling_levels):
            names = ("postoffice", "postfix") if index % 2 == 0 else ("postfix", "postoffice")
            for name in names:
                row = self.attempt(
                    f"(scaling) {name} {sessions}",
                    lambda name=name, sessions=sessions: measure.scale(
                        self.systems.targets[name],
                        sessions=sessions,
                        messages=max(self.plan.scaling_messages, sessions),
                        timeout=self.plan.timeout,
                    ),
                )
                if row is None:
                    continue
                self.scaling.append({"sessions": sessions, "system": name, **row})
                print(
                    f"  scaling {sessions:>5} sessions — {name}: {row['rate']:,.0f} msg/s, "
                    f"p99 {row['p99_ms']:,.1f} ms, {row['memory_mib']:,.1f} MiB",
                    flush=True,
                )


def _prepare_pop3(systems: Systems, plan: Plan, root: Path) -> None:
    """Generate both maildrops once and give the same files to postoffice and Dovecot."""
    for user, count in zip(POP3_USERS, plan.maildrops, strict=True):
        source = root / "maildrops" / user
        make_maildrop(source, count)
        install_maildrop(source, systems.postoffice.maildir(f"{user}@po.test"))
        install_maildrop(source, systems.dovecot.maildir(user))
    systems.dovecot.own_mail()


def _prepare_imap(systems: Systems, root: Path) -> None:
    """The IMAP user gets the large maildrop too; each server indexes it once (warm figures)."""
    source = root / "maildrops" / POP3_USERS[1]
    install_maildrop(source, systems.postoffice.maildir(f"{IMAP_USER}@po.test"))
    install_maildrop(source, systems.dovecot.maildir(IMAP_USER))
    systems.dovecot.own_mail()
    for name in ("postoffice", "dovecot"):
        measure.imap_read(systems, name, timeout=120.0)


def _version(command: list[str]) -> str:
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    except OSError:
        return "not installed"
    return (result.stdout or result.stderr).strip()


def _machine() -> dict[str, Any]:
    model = ""
    with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    postconf = postfix_tool("postconf") or "postconf"
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "postfix": _version([postconf, "-dh", "mail_version"]),
        "dovecot": dovecot_version(),
        "aiosmtpd": metadata.version("aiosmtpd"),
    }


def _missing_tools() -> list[str]:
    missing = []
    if postfix_tool("postfix") is None or postfix_tool("smtp-source") is None:
        missing.append("postfix")
    if dovecot_binary() is None:
        missing.append("dovecot-pop3d")
    if not Path(LDA).exists() or not Path("/usr/lib/dovecot/imap").exists():
        missing.append("dovecot-imapd")
    return missing


def _raise_file_limit() -> None:
    """1,000 sessions need some 2,000 descriptors here and in the servers we start."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 8192 if hard == resource.RLIM_INFINITY else min(hard, 8192)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def main() -> int:
    quick = os.environ.get("BENCH_QUICK", "") not in ("", "0")
    keep = os.environ.get("BENCH_KEEP", "") not in ("", "0")
    plan = QUICK if quick else FULL
    if os.geteuid() != 0:
        print("bench: Postfix and Dovecot start as root; run as root", file=sys.stderr)
        return 2
    missing = _missing_tools()
    if missing:
        print(f"bench: missing Debian packages: {' '.join(missing)} (make bench installs them)")
        return 2
    _raise_file_limit()
    started = time.time()
    load_before = os.getloadavg()
    if load_before[0] > 1.0:
        print(f"bench: load average {load_before[0]:.1f} at start: the numbers will be noisy")
    root = Path(tempfile.mkdtemp(prefix="postoffice-bench-"))
    root.chmod(0o755)  # Postfix and Dovecot users must reach their directories
    print(f"bench: {'quick' if quick else 'full'} run, data in {root}", flush=True)
    try:
        with running(root) as systems:
            bench = Bench(plan, systems)
            _prepare_pop3(systems, plan, root)
            _prepare_imap(systems, root)
            for number in range(plan.rounds):
                print(f"round {number + 1} of {plan.rounds}", flush=True)
                bench.round(number)
            print("scaling", flush=True)
            bench.scale()
    finally:
        if keep:
            print(f"bench: kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    duration = time.time() - started
    _publish(bench, quick=quick, started=started, duration=duration, load_before=load_before)
    return 1 if bench.errors else 0


def _publish(
    bench: Bench,
    *,
    quick: bool,
    started: float,
    duration: float,
    load_before: tuple[float, float, float],
) -> None:
    """Print the tables; write the JSON and the plot; a full run updates the docs."""
    plan = bench.plan
    when = datetime.datetime.fromtimestamp(started, datetime.UTC)
    stem = when.strftime("%Y-%m-%d") + ("-quick" if quick else "")
    RESULTS.mkdir(parents=True, exist_ok=True)
    json_path, png_path = RESULTS / f"{stem}.json", RESULTS / f"{stem}-scaling.png"
    figures = list(bench.figures.values())
    machine = _machine()
    load_after = os.getloadavg()
    report.write_json(
        json_path,
        {
            "started": when.isoformat(timespec="seconds"),
            "duration_s": round(duration, 1),
            "quick": quick,
            "plan": asdict(plan),
            "machine": machine,
            "load_average": {"before": load_before, "after": load_after},
            "figures": [report.figure_record(figure) for figure in figures],
            "scaling": bench.scaling,
            "imap_idle_latencies_s": bench.idle_samples,
            "errors": bench.errors,
        },
    )
    if bench.scaling:
        report.plot(bench.scaling, png_path)
    table = report.figure_table(figures)
    scaling = report.scaling_table(bench.scaling)
    summary = (
        f"Run of {when:%Y-%m-%d %H:%M} UTC, {plan.rounds} round(s), medians; "
        f"{machine['cores']} cores ({machine['cpu']}), Postfix {machine['postfix']}, "
        f"Dovecot {machine['dovecot'].split(' ')[0]}; "
        f"load average {load_before[0]:.1f} before, {load_after[0]:.1f} after; "
        f"{duration / 60:.1f} minutes."
    )
    print(f"\n{summary}\n\n{table}\n\n{scaling}\n")
    if bench.errors:
        print("errors:\n" + "\n".join(f"- {error}" for error in bench.errors))
    print(f"bench: wrote {json_path.relative_to(REPO)}", end="")
    print(f" and {png_path.relative_to(REPO)}" if bench.scaling else "")
    if not quick:
        image = os.path.relpath(png_path, DOCS.parent)
        if report.update_docs(DOCS, report.docs_block(summary, table, scaling, image)):
            print(f"bench: updated {DOCS.relative_to(REPO)}")


if __name__ == "__main__":
    sys.exit(main())
