"""Image bytes for logo tests, made with Pillow (plus hand-made padding chunks to reach exact sizes)."""

from __future__ import annotations

import io
import struct
import zlib

from PIL import Image


def image_bytes(size: tuple[int, int] = (200, 200), image_format: str = "PNG", color: str = "teal") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format=image_format)
    return buffer.getvalue()


def png_of_exact_length(total: int) -> bytes:
    """A valid 200x200 PNG of exactly ``total`` bytes: a private ancillary chunk before IEND pads it."""
    base = image_bytes()
    iend = base.rindex(b"IEND") - 4  # the IEND chunk starts with its 4-byte length
    padding = total - len(base) - 12  # a chunk is length + type + data + crc
    assert padding >= 0
    kind = b"paDd"  # ancillary (lowercase 1st), private (lowercase 2nd): decoders skip it
    data = b"\0" * padding
    chunk = struct.pack(">I", padding) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    result = base[:iend] + chunk + base[iend:]
    assert len(result) == total
    return result


def png_with_corrupt_pixels() -> bytes:
    """A 200x200 PNG whose chunk CRCs are right but whose compressed pixel data is garbage."""
    base = image_bytes()
    start = base.index(b"IDAT") - 4
    (length,) = struct.unpack(">I", base[start : start + 4])
    garbage = bytes((b ^ 0x5A) for b in base[start + 8 : start + 8 + length])
    crc = struct.pack(">I", zlib.crc32(b"IDAT" + garbage) & 0xFFFFFFFF)
    return base[: start + 8] + garbage + crc + base[start + 12 + length :]
