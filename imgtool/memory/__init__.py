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

from imgtool.memory.chain import DumpMemory, ImageSource
from imgtool.memory.extents import Extent, ExtentIndex, Run
from imgtool.memory.extract import extract
from imgtool.memory.pages import PagesFile
from imgtool.memory.search import Hit, Literal, Pattern, Regex, any_of, search_dump, search_space, spaces
from imgtool.memory.shmem import shmem_id
from imgtool.memory.sources import TaskSet, TaskSource
from imgtool.memory.space import AddressSpace, address_space, cmdline, cmdline_of, environ
from imgtool.memory.stream import CHUNK, Chunk, chunks
from imgtool.memory.vma import DEFAULT_PAGE_SIZE, Vma, page_size_of, vma_from_entry

__all__ = [
    "CHUNK", "DEFAULT_PAGE_SIZE", "AddressSpace", "Chunk", "DumpMemory", "Extent", "ExtentIndex", "Hit",
    "ImageSource", "Literal", "PagesFile", "Pattern", "Regex", "Run", "TaskSet", "TaskSource", "Vma",
    "address_space", "any_of", "chunks", "cmdline", "cmdline_of", "environ", "extract", "page_size_of",
    "search_dump", "search_space", "shmem_id", "spaces", "vma_from_entry",
]
