"""The bytes of one image file: magic numbers, size-prefixed frames, the registry of image kinds, the extra
payloads CRIU writes after entries, columnar pagemap reading, ``Image``, the flag words and field options of
the schemas, and the generated protobuf classes (``pb/``).

Knows nothing about a whole dump. May import only ``imgtool.errors`` and the libraries.
"""
