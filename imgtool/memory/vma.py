"""VMAs: a task's mappings as ``/proc/PID/maps`` shows them, and its page size."""

from __future__ import annotations

from typing import NamedTuple

from google.protobuf.message import Message

from imgtool.format.flags import MAP_SHARED, VMA_ANON_SHARED, VMA_AREA_MEMFD, VMA_AREA_SYSVIPC, status_names

DEFAULT_PAGE_SIZE = 4096
AT_PAGESZ = 6          # auxv key of the page size (include/uapi/linux/auxvec.h)


class Vma(NamedTuple):
    """One mapping of the task, as ``/proc/PID/maps`` would show it."""

    start: int
    end: int
    prot: str                  # "rwxp", "rw-s"
    flags: int                 # MAP_* flags
    status: tuple[str, ...]    # VMA_AREA_* / VMA_* names
    status_bits: int
    shmid: int                 # file id (file maps, memfd) or shmem id (anon shared, SysV)
    pgoff: int                 # byte offset of ``start`` in the file or shared object

    @property
    def size(self) -> int:
        return self.end - self.start

    @property
    def shared_object(self) -> str | None:
        """Where the contents live if not in the private pagemap: "memfd", "sysv", "anon-shared"."""
        if self.status_bits & VMA_AREA_MEMFD:
            return "memfd"
        if self.status_bits & VMA_AREA_SYSVIPC:
            return "sysv"
        if self.status_bits & VMA_ANON_SHARED:
            return "anon-shared"
        return None

    def __contains__(self, address: int) -> bool:
        return self.start <= address < self.end

    def __str__(self) -> str:
        return f"{self.start:#x}-{self.end:#x} {self.prot}"

    def to_json(self) -> dict[str, object]:
        return {"start": self.start, "end": self.end, "prot": self.prot, "flags": self.flags,
                "status": list(self.status), "shmid": self.shmid, "pgoff": self.pgoff}


def vma_from_entry(entry: Message) -> Vma:
    prot = "".join(c if entry.prot & bit else "-" for c, bit in (("r", 1), ("w", 2), ("x", 4)))
    prot += "s" if entry.flags & MAP_SHARED else "p"
    return Vma(entry.start, entry.end, prot, entry.flags, status_names(entry.status), entry.status,
               entry.shmid, entry.pgoff)


def page_size_of(mm: Message | None) -> int:
    """AT_PAGESZ from the saved auxiliary vector (key, value pairs); 4096 without one."""
    auxv = list(mm.mm_saved_auxv) if mm is not None else []
    for key, value in zip(auxv[0::2], auxv[1::2], strict=False):
        if key == AT_PAGESZ and value:
            return value
    return DEFAULT_PAGE_SIZE


__all__ = ["AT_PAGESZ", "DEFAULT_PAGE_SIZE", "Vma", "page_size_of", "vma_from_entry"]
