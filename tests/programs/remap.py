"""A process whose mappings change between two dumps (tests/test_report.py, tests/test_diff.py).

Inside a 66-page PROT_NONE reservation (its first and last pages stay, as guards, so that nothing outside can
merge with what is mapped inside) it maps, at page offsets from the reservation:

    grow  1..9    rw-   grows by 4 pages on SIGUSR1 (the kernel merges the new pages into it: resized)
    gone  21..25  rw-   unmapped on SIGUSR1 (removed)
    prot  41..45  rw-   made read-only on SIGUSR1 (changed)
    new   51..53        mapped rw- on SIGUSR1 (added)

It prints ``NAME=0xADDR`` for each, then READY (tests/realcriu.py's protocol); on SIGUSR1 it changes the
mappings, prints CHANGED and waits to be dumped again.
"""

import ctypes
import mmap
import signal
import sys
import time

PAGE = mmap.PAGESIZE
PROT_NONE, PROT_READ, PROT_RW = 0, mmap.PROT_READ, mmap.PROT_READ | mmap.PROT_WRITE
PRIVATE_ANON = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS
MAP_FIXED_NOREPLACE = 0x100000
LAYOUT = {"grow": (1, 8), "gone": (21, 4), "prot": (41, 4), "new": (51, 2)}

libc = ctypes.CDLL(None, use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]


def check(ok: bool, what: str) -> None:
    if not ok:
        sys.exit(f"remap: {what} failed: errno {ctypes.get_errno()}")


def map_at(addr: int, pages: int) -> None:
    got = libc.mmap(addr, pages * PAGE, PROT_RW, PRIVATE_ANON | MAP_FIXED_NOREPLACE, -1, 0)
    check(got == addr, f"mmap at {addr:#x}")
    ctypes.memset(addr, 0x5A, pages * PAGE)   # touched: dumped


def main() -> None:
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
    base = libc.mmap(None, 66 * PAGE, PROT_NONE, PRIVATE_ANON, -1, 0)
    check(base not in (None, ctypes.c_void_p(-1).value), "reserve")
    check(libc.munmap(base + PAGE, 64 * PAGE) == 0, "munmap of the inside")
    addr = {name: base + first * PAGE for name, (first, _) in LAYOUT.items()}
    for name in ("grow", "gone", "prot"):
        map_at(addr[name], LAYOUT[name][1])
    for name, value in addr.items():
        print(f"{name}={value:#x}")
    print("READY", flush=True)
    signal.sigwait({signal.SIGUSR1})
    map_at(addr["grow"] + 8 * PAGE, 4)
    check(libc.munmap(addr["gone"], 4 * PAGE) == 0, "munmap")
    check(libc.mprotect(addr["prot"], 4 * PAGE, PROT_READ) == 0, "mprotect")
    map_at(addr["new"], 2)
    print("CHANGED", flush=True)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
