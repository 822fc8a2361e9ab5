"""Decode an uploaded image safely, in memory: only real images, bounded pixels, bounded memory.

Guards, in order: empty body; Pillow opens only the accepted formats (anything else is
"not an image", 415, but a file that starts like an accepted format and cannot be read is
"truncated or corrupt", 400); JPEGs are decoded at a reduced scale (``draft``) close to
the run's image size; the pixel count that will be decoded is checked against
``max_pixels`` *before* any pixel is decoded, and Pillow's own decompression-bomb warning
is raised as an error (400); decoding errors are a 400. The decoded image is shrunk by an
integer factor (``reduce``) before its RGB copy is made, then resized (shorter side) and
centre-cropped to the run's image size like the datasets' file readers.

Memory: a decode holds about ``4 * width * height`` bytes (Pillow keeps RGB as 4 bytes
a pixel). :class:`UploadDecoder` runs the decodes on a pool of ``max_concurrent`` threads
of its own, so at most that many run at once *and* their memory comes from that many
malloc arenas: serialising the decodes with a lock is not enough, since glibc gives each
server thread its own arena and keeps what one thread freed away from the others
(8 server threads decoding 16-megapixel PNGs one at a time still peaked at 435 MiB; on
the pool of 2, about two decodes' worth). The explorer's peak is then bounded by about
``max_concurrent * 4 * max_pixels`` bytes whatever the number of server threads.
"""

from __future__ import annotations

import io
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

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
#: Pillow modes that ``Image.reduce`` accepts (others are converted to RGB first)
_REDUCIBLE_MODES = ("L", "LA", "RGB", "RGBA", "RGBX", "I", "F")


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
    """Bytes of an image file -> uint8 ``[3, size, size]`` RGB.

    Args:
        data: the uploaded file's bytes.
        size: the run's image size.
        max_pixels: largest ``width * height`` decoded (after a JPEG's reduced-scale draft).

    Raises:
        UploadError: 400 (empty, too many pixels, truncated or corrupt) or 415 (not an accepted image).
    """
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise UploadError(400, "the uploaded file is empty")
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            im = Image.open(io.BytesIO(data), formats=list(ACCEPTED_FORMATS))
        except UnidentifiedImageError:
            if claimed_format(data) is not None:
                raise _corrupt(data, "not identified") from None
            raise UploadError(415, f"not an image: accepted formats are {', '.join(ACCEPTED_FORMATS)}") from None
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise UploadError(400, f"image rejected as a possible decompression bomb: {e}") from None
        except (OSError, SyntaxError, ValueError, EOFError) as e:
            raise _corrupt(data, str(e)) from None
        with im:
            w, h = im.size
            if w < 1 or h < 1:
                raise UploadError(400, f"image has an empty size {w}x{h}")
            if im.format == "JPEG":
                im.draft("RGB", (size, size))  # decode at 1/2, 1/4 or 1/8 scale when that still covers `size`
            dw, dh = im.size
            if dw * dh > max_pixels:
                raise UploadError(
                    400, f"image is {w}x{h} = {w * h} pixels; at most {max_pixels} are accepted (memory and "
                         "decompression-bomb guard)"
                )
            try:
                im.load()
                small = _shrink(im, size)
                rgb = small.convert("RGB")
            except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
                raise UploadError(400, f"image rejected as a possible decompression bomb: {e}") from None
            except (OSError, SyntaxError, ValueError, EOFError) as e:
                raise _corrupt(data, str(e)) from None
    w, h = rgb.size
    s = size / min(w, h)
    rgb = rgb.resize((max(size, round(w * s)), max(size, round(h * s))), Image.Resampling.BILINEAR)
    w, h = rgb.size
    left, top = (w - size) // 2, (h - size) // 2
    rgb = rgb.crop((left, top, left + size, top + size))
    arr = np.asarray(rgb, dtype=np.uint8).copy()  # (size, size, 3)
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous()  # (3, size, size)


def _corrupt(data: bytes, detail: str) -> UploadError:
    """The 400 for a file of an accepted format that cannot be read to its end."""
    fmt = claimed_format(data)
    what = f"starts like a {fmt} image but" if fmt else "is an image but"
    return UploadError(400, f"the file {what} is truncated or corrupt ({len(data)} bytes; {detail})")


def _shrink(im, size: int):
    """``im`` reduced by the largest integer factor that keeps its shorter side >= ``2 * size``.

    The box-filter reduction keeps the later bilinear resize from aliasing and means the
    RGB conversion copies a small image, not the full decode.
    """
    factor = min(im.size) // (2 * size)
    if factor < 2:
        return im
    if im.mode not in _REDUCIBLE_MODES:
        im = im.convert("RGBA" if "A" in im.mode or "transparency" in im.info else "RGB")
    return im.reduce(factor)


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
