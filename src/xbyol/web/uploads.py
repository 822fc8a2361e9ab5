"""Decode an uploaded image safely, in memory: only real images, bounded pixels, no file paths.

Guards, in order: empty body; Pillow opens only the accepted formats (anything else is
"not an image", 415); the header's pixel count is checked against ``max_pixels`` *before*
any pixel is decoded, and Pillow's own decompression-bomb warning is raised as an error
(400); decoding errors are a 400. The result is resized (shorter side) and centre-cropped
to the run's image size like the datasets' file readers.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
import torch

__all__ = ["ACCEPTED_FORMATS", "UploadError", "decode_image"]

ACCEPTED_FORMATS = ("PNG", "JPEG", "GIF", "BMP", "WEBP")


class UploadError(ValueError):
    """A rejected upload, with the HTTP status it maps to."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def decode_image(data: bytes, size: int, max_pixels: int) -> torch.Tensor:
    """Bytes of an image file -> uint8 ``[3, size, size]`` RGB.

    Args:
        data: the uploaded file's bytes.
        size: the run's image size.
        max_pixels: largest ``width * height`` accepted (decompression-bomb guard).

    Raises:
        UploadError: 400 (empty, too many pixels, corrupt) or 415 (not an accepted image).
    """
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise UploadError(400, "the uploaded file is empty")
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            im = Image.open(io.BytesIO(data), formats=list(ACCEPTED_FORMATS))
        except UnidentifiedImageError:
            raise UploadError(415, f"not an image: accepted formats are {', '.join(ACCEPTED_FORMATS)}") from None
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise UploadError(400, f"image rejected as a possible decompression bomb: {e}") from None
        except (OSError, SyntaxError, ValueError) as e:
            raise UploadError(400, f"could not read the image: {e}") from None
        with im:
            w, h = im.size
            if w < 1 or h < 1:
                raise UploadError(400, f"image has an empty size {w}x{h}")
            if w * h > max_pixels:
                raise UploadError(
                    400, f"image is {w}x{h} = {w * h} pixels; at most {max_pixels} are accepted (decompression-bomb guard)"
                )
            try:
                if im.format == "JPEG":
                    im.draft("RGB", (size, size))  # decode at a reduced scale when the file allows it
                rgb = im.convert("RGB")
            except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
                raise UploadError(400, f"image rejected as a possible decompression bomb: {e}") from None
            except (OSError, SyntaxError, ValueError, EOFError) as e:
                raise UploadError(400, f"could not decode the image: {e}") from None
    w, h = rgb.size
    s = size / min(w, h)
    rgb = rgb.resize((max(size, round(w * s)), max(size, round(h * s))), Image.BILINEAR)
    w, h = rgb.size
    left, top = (w - size) // 2, (h - size) // 2
    rgb = rgb.crop((left, top, left + size, top + size))
    arr = np.asarray(rgb, dtype=np.uint8).copy()  # (size, size, 3)
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous()  # (3, size, size)
