"""PNG chunk-length check before a decoder sees the bytes.

OpenCV (5.0) allocates a chunk's declared length before reading it: a 157-byte PNG whose IDAT
claims 2.6 GB took 2.5 GB of memory and 5 s before failing. Walking the chunk table first costs
microseconds and refuses such a file before anything is allocated.
"""
from __future__ import annotations

import struct

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_problem(data: bytes | memoryview) -> str | None:
    """None when every chunk's declared length fits in the file (or it is not a PNG), else the problem."""
    if bytes(data[:8]) != PNG_SIGNATURE:
        return None
    pos, size = 8, len(data)
    while pos + 8 <= size:
        n, kind = struct.unpack(">I4s", bytes(data[pos:pos + 8]))
        if n > size - pos - 12:
            name = kind.decode("latin-1") if kind.isalpha() else kind.hex()
            return (f"PNG chunk '{name}' at byte {pos} declares {n} bytes but the file holds {size} "
                    "(truncated or damaged)")
        if kind == b"IEND":
            break
        pos += 12 + n
    return None
