"""Decode an uploaded image safely, in memory: only real images, bounded pixels, bounded memory.

The bytes go through :func:`xbyol.data.io.read_image`, the decoder that training and
``xbyol explain`` use on files, so an upload becomes the same tensor as the same file in a
dataset. Guards, in order: empty body; Pillow opens only the accepted formats (anything
else is "not an image", 415, but a file that starts like an accepted format and cannot be
read is "truncated or corrupt", 400); JPEGs are decoded at a reduced scale (``draft``);
the pixel count that will be decoded is checked against ``max_pixels`` *before* any pixel
is decoded, and Pillow's own decompression-bomb warning is raised as an error (400);
decoding errors are a 400.

Memory: a decode holds about ``4 * width * height`` bytes (Pillow keeps RGB as 4 bytes
a pixel); RGB, RGBA and gray images are resized from the decode without a full-size copy
(palette, 16-bit and colour-key images get a full-size RGB conversion first, a few more
such copies). :class:`UploadDecoder` runs the decodes on a pool of ``max_concurrent`` threads
of its own, so at most that many run at once *and* their memory comes from that many
malloc arenas: serialising the decodes with a lock is not enough, since glibc gives each
server thread its own arena and keeps what one thread freed away from the others
(8 server threads decoding 16-megapixel PNGs one at a time still peaked at 435 MiB; on
the pool of 2, about two decodes' worth). The explorer's peak is then bounded by about
``max_concurrent * 4 * max_pixels`` bytes whatever the number of server threads.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import torch

from xbyol.data.io import (
    ImageTooLargeError,
    NotAnImageError,
    UnreadableImageError,
    read_image,
)

__all__ = ["ACCEPTED_FORMATS", "DEFAULT_MAX_PIXELS", "UploadDecoder", "UploadError", "decode_image"]

ACCEPTED_FORMATS = ("PNG", "JPEG", "GIF", "BMP", "WEBP")
#: largest decoded ``width * height`` by default: a 16-megapixel photo, 64 MB while decoding
DEFAULT_MAX_PIXELS = 16_000_000
#: leading bytes of each accepted format (WebP: "RIFF" then 4 size bytes then "WEBP")
_SIGNATURES = {
    "PNG": (b"\x89PNG\r\n\x1a\n",),
    "JPEG": (b"\xff\xd8\xff",),
    "GIF": (b"GIF87a", b"GIF89a"),
    "BMP": (b"BM",),
    "WEBP": (b"RIFF",),
}


class UploadError(ValueError):
    """A rejected upload, with the HTTP status it maps to."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def claimed_format(data: bytes) -> str | None:
    """The accepted format whose signature ``data`` starts with (or is a prefix of), else ``None``."""
    for fmt, signatures in _SIGNATURES.items():
        for sig in signatures:
            n = min(len(sig), len(data))
            if n and data[:n] == sig[:n] and (fmt != "BMP" or len(data) >= 2):
                return fmt
    return None


def decode_image(data: bytes, size: int, max_pixels: int = DEFAULT_MAX_PIXELS) -> torch.Tensor:
    """Bytes of an image file -> uint8 ``[3, size, size]`` RGB, decoded as training decodes a file.

    Args:
        data: the uploaded file's bytes.
        size: the run's image size.
        max_pixels: largest ``width * height`` decoded (after a JPEG's reduced-scale draft).

    Raises:
        UploadError: 400 (empty, too many pixels, truncated or corrupt) or 415 (not an accepted image).
    """
    if not data:
        raise UploadError(400, "the uploaded file is empty")
    try:
        return read_image(data, size, max_pixels=max_pixels, formats=ACCEPTED_FORMATS)[0]
    except NotAnImageError:
        if claimed_format(data) is not None:
            raise _corrupt(data, "not identified") from None
        raise UploadError(415, f"not an image: accepted formats are {', '.join(ACCEPTED_FORMATS)}") from None
    except ImageTooLargeError as e:
        raise UploadError(400, f"image rejected: {e.detail}") from None
    except UnreadableImageError as e:
        raise _corrupt(data, e.detail) from None


def _corrupt(data: bytes, detail: str) -> UploadError:
    """The 400 for a file of an accepted format that cannot be read to its end."""
    fmt = claimed_format(data)
    what = f"starts like a {fmt} image but" if fmt else "is an image but"
    return UploadError(400, f"the file {what} is truncated or corrupt ({len(data)} bytes; {detail})")


class UploadDecoder:
    """:func:`decode_image` on a pool of ``max_concurrent`` threads (bounds peak memory; see the module docstring).

    Args:
        size: the run's image size.
        max_pixels: largest decoded ``width * height``.
        max_concurrent: decodes run at once; other callers wait their turn.
    """

    def __init__(self, size: int, max_pixels: int = DEFAULT_MAX_PIXELS, max_concurrent: int = 2) -> None:
        if max_concurrent < 1:
            raise ValueError(f"max_concurrent must be >= 1, got {max_concurrent}")
        self.size = size
        self.max_pixels = max_pixels
        self.max_concurrent = max_concurrent
        self._pool = ThreadPoolExecutor(max_workers=max_concurrent, thread_name_prefix="xbyol-upload-decode")

    def __call__(self, data: bytes) -> torch.Tensor:
        """uint8 ``[3, size, size]`` of an uploaded file (see :func:`decode_image`); raises its :class:`UploadError`."""
        return self._pool.submit(decode_image, data, self.size, self.max_pixels).result()
