"""heap.py: the malloc arenas and thresholds of a server process (glibc only)."""

from __future__ import annotations

import ctypes
import gc
import subprocess
import sys
import weakref
from pathlib import Path

import pytest

from postoffice import heap

# Eight threads alive together, each mallocing (a bytearray above pymalloc's 512 octets),
# then glibc's own account of its arenas: malloc_info(3) writes one <heap> per arena.
_THREADS = """
import ctypes, sys, threading
from postoffice import heap
if sys.argv[1] == "limit":
    heap.limit_arenas()
barrier = threading.Barrier(8)
def work():
    data = bytearray(100_000)
    barrier.wait()
    data[0] = 1
threads = [threading.Thread(target=work) for _ in range(8)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
libc = ctypes.CDLL(None)
libc.fopen.restype = ctypes.c_void_p
stream = libc.fopen(sys.argv[2].encode(), b"w")
libc.malloc_info(0, ctypes.c_void_p(stream))
libc.fclose(ctypes.c_void_p(stream))
"""


def _arenas(tmp_path: Path, mode: str) -> int:
    report = tmp_path / f"{mode}.xml"
    subprocess.run([sys.executable, "-c", _THREADS, mode, str(report)], check=True, timeout=60)
    return report.read_text().count("<heap nr=")


@pytest.mark.skipif(not hasattr(ctypes.CDLL(None), "malloc_info"), reason="glibc only")
def test_threads_share_the_limited_arenas(tmp_path: Path) -> None:
    assert _arenas(tmp_path, "default") >= 4  # glibc's own way: an arena per busy thread
    assert _arenas(tmp_path, "limit") <= 2


# A buffer of asyncio's read size (a selector transport's 256 KiB max_size) and glibc's
# account: hblks counts chunks in mappings of their own; keepcost is the free top of the heap.
_READ_BUFFER = """
import ctypes, sys
from postoffice import heap
if sys.argv[1] == "fixed":
    heap.fix_thresholds()
class Info(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]
libc = ctypes.CDLL(None)
libc.mallinfo2.restype = Info
before = libc.mallinfo2().hblks
buffer = bytearray(256 * 1024)
mapped = libc.mallinfo2().hblks - before
del buffer
print(mapped, libc.mallinfo2().keepcost)
"""


def _read_buffer(mode: str) -> tuple[int, int]:
    result = subprocess.run(
        [sys.executable, "-c", _READ_BUFFER, mode],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    mapped, kept = result.stdout.split()
    return int(mapped), int(kept)


@pytest.mark.skipif(not hasattr(ctypes.CDLL(None), "mallinfo2"), reason="glibc 2.33+ only")
def test_a_read_buffer_comes_from_the_heap_and_its_pages_stay_for_the_next() -> None:
    assert _read_buffer("default")[0] == 1  # glibc's own way: a mapping per read buffer
    mapped, kept = _read_buffer("fixed")
    assert mapped == 0
    assert kept >= 256 * 1024  # freed, not trimmed: the next read reuses it


def test_trim_collects_cyclic_garbage_first() -> None:
    class Node:
        pass

    node = Node()
    node.self = node  # type: ignore[attr-defined]  # a cycle: only the collector frees it
    gone = weakref.ref(node)
    gc.disable()
    try:
        del node
        assert gone() is not None
        heap.trim()
        assert gone() is None
    finally:
        gc.enable()
