"""heap.py: the malloc arenas of a server process (glibc only)."""

from __future__ import annotations

import ctypes
import subprocess
import sys
from pathlib import Path

import pytest

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
