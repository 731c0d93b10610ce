"""What a task's memory held: VMAs, pages files, pagemap extents resolved through parent dumps and shared
memory, the address space read at any address, and the streamed, address-ordered reads that search,
extraction and memory diff build on.

Reads images through ``format``; sees a dump only as the ``ImageSource`` protocol it defines (``model.Dump``
fulfils it), so it may import ``format`` and ``errors`` only.
"""
