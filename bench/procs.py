"""Which processes make up a server, and how much memory they hold, read from /proc.

A server's memory is summed over all its processes: postoffice is one process (its
descendants are counted too, should it ever fork), Postfix is its master's process group
(the master calls setsid, every daemon shares the group). RSS counts a shared page once per
process, so for Postfix's hundreds of smtpd processes the sum of PSS (each shared page
divided among the processes that map it) is the honest total; both are recorded.

Standards: none; proc(5) for /proc/<pid>/stat, status and smaps_rollup.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

_PROC = Path("/proc")


@dataclass(frozen=True, slots=True)
class Memory:
    """Memory of a set of processes, in KiB."""

    rss_kib: int
    pss_kib: int
    processes: int

    @property
    def rss_mib(self) -> float:
        return self.rss_kib / 1024

    @property
    def pss_mib(self) -> float:
        return self.pss_kib / 1024


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, parent pid, process group) of a live process; None once it is gone."""
    try:
        fields = (_PROC / str(pid) / "stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return fields[0], int(fields[1]), int(fields[2])


def _all_pids() -> list[int]:
    return [int(entry.name) for entry in _PROC.iterdir() if entry.name.isdigit()]


def alive(pid: int) -> bool:
    """Whether `pid` is a live process (a zombie is not)."""
    stat = _stat(pid)
    return stat is not None and stat[0] != "Z"


def with_descendants(pid: int) -> list[int]:
    """`pid` and every live process below it."""
    children: dict[int, list[int]] = {}
    for other in _all_pids():
        stat = _stat(other)
        if stat is not None and stat[0] != "Z":
            children.setdefault(stat[1], []).append(other)
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def process_group(pgid: int) -> list[int]:
    """Every live (not zombie) process in process group `pgid`."""
    members = []
    for pid in _all_pids():
        stat = _stat(pid)
        if stat is not None and stat[0] != "Z" and stat[2] == pgid:
            members.append(pid)
    return members


def _field_kib(path: Path, name: str) -> int:
    """A "Name:   123 kB" line of a /proc file; 0 if the process is gone."""
    try:
        text = path.read_text()
    except OSError:
        return 0
    for line in text.splitlines():
        if line.startswith(name):
            return int(line.split()[1])
    return 0


def memory(pids: list[int]) -> Memory:
    """Summed RSS and PSS of `pids` (processes gone meanwhile count 0)."""
    rss = sum(_field_kib(_PROC / str(pid) / "status", "VmRSS:") for pid in pids)
    pss = sum(_field_kib(_PROC / str(pid) / "smaps_rollup", "Pss:") for pid in pids)
    return Memory(rss_kib=rss, pss_kib=pss, processes=len(pids))


def footprint_kib(pids: list[int]) -> int:
    """A server's memory: the RSS of a lone process, the PSS sum of several.

    A lone process is charged all it maps (the strict figure); for a server of many
    processes the RSS sum would count each shared page once per process, so PSS it is.
    """
    used = memory(pids)
    return used.rss_kib if used.processes == 1 else used.pss_kib
