"""What a task's memory held: VMAs, pages files, pagemap extents resolved through parent dumps and shared
memory, the address space read at any address, and the streamed, address-ordered reads that search,
extraction and memory diff build on.

Reads images through ``format``; sees a dump only as the ``ImageSource`` protocol it defines (``model.Dump``
fulfils it), so it may import ``format`` and ``errors`` only.

Modules, bottom up: ``vma`` (mappings, page size), ``pages`` (pages files), ``extents`` (address ranges ->
pages file slices, and the cursor walking them), ``coalesce`` (pagemap entries -> runs), ``sources`` (the
protocols a dump and a task fulfil), ``chain`` (one dump's store: pagemaps resolved through parent dumps),
``shmem`` (shared memory objects), ``space`` (``AddressSpace``), ``stream`` (the chunked streaming read),
``search`` and ``extract`` (built on ``stream``; ``filescan``: literals in file order, for ``search``).
"""

# Names resolve on first use (PEP 562): importing one memory module (a read imports space.py) does not import
# search, extraction and the rest ('full read of 1 task' and 'x rss' rows of bench/run.py count import time).
_WHERE = {
    "DumpMemory": "imgtool.memory.chain",
    "ImageSource": "imgtool.memory.chain",
    "Extent": "imgtool.memory.extents",
    "ExtentIndex": "imgtool.memory.extents",
    "Run": "imgtool.memory.extents",
    "extract": "imgtool.memory.extract",
    "PagesFile": "imgtool.memory.pages",
    "Hit": "imgtool.memory.search",
    "Literal": "imgtool.memory.search",
    "Pattern": "imgtool.memory.search",
    "Regex": "imgtool.memory.search",
    "any_of": "imgtool.memory.search",
    "search_dump": "imgtool.memory.search",
    "search_space": "imgtool.memory.search",
    "spaces": "imgtool.memory.search",
    "shmem_id": "imgtool.memory.shmem",
    "TaskSet": "imgtool.memory.sources",
    "TaskSource": "imgtool.memory.sources",
    "AddressSpace": "imgtool.memory.space",
    "address_space": "imgtool.memory.space",
    "cmdline": "imgtool.memory.space",
    "cmdline_of": "imgtool.memory.space",
    "environ": "imgtool.memory.space",
    "CHUNK": "imgtool.memory.stream",
    "Chunk": "imgtool.memory.stream",
    "chunks": "imgtool.memory.stream",
    "DEFAULT_PAGE_SIZE": "imgtool.memory.vma",
    "Vma": "imgtool.memory.vma",
    "page_size_of": "imgtool.memory.vma",
    "vma_from_entry": "imgtool.memory.vma",
}


def __getattr__(name: str) -> object:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(_WHERE[name]), name)
    globals()[name] = value
    return value


__all__ = [
    "CHUNK", "DEFAULT_PAGE_SIZE", "AddressSpace", "Chunk", "DumpMemory", "Extent", "ExtentIndex", "Hit",
    "ImageSource", "Literal", "PagesFile", "Pattern", "Regex", "Run", "TaskSet", "TaskSource", "Vma",
    "address_space", "any_of", "chunks", "cmdline", "cmdline_of", "environ", "extract", "page_size_of",
    "search_dump", "search_space", "shmem_id", "spaces", "vma_from_entry",
]
