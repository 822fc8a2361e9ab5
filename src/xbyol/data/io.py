"""Image files in, model inputs out, and files written atomically: the one home of xbyol's file I/O.

Every reader of an image (the datasets, ``xbyol explain``/``concepts``/``search``, the
explorer's uploads) goes through :func:`read_image`, so an image is preprocessed the same
way when it is trained on, explained or uploaded:

1. decode with guards: Pillow's decompression-bomb warning is an error, an optional
   ``max_pixels`` is checked *before* any pixel is decoded, and any decoding failure
   (not an image, truncated, corrupt) is an :class:`UnreadableImageError` naming the file;
   a JPEG is decoded at 1/2, 1/4 or 1/8 scale (``draft``) when that still covers twice
   the output size;
2. convert any mode to RGB (:func:`to_rgb`): 16-bit and float gray are rescaled to 0..255,
   transparency (RGBA, LA, palette or colour-key) is composited onto white;
3. resize so the shorter side is ``size`` (bilinear, with Pillow's ``reducing_gap`` box
   pre-reduction for large shrinks) and centre-crop a square (:func:`resize_center_crop`).

For RGB, RGBA, L and LA the resize runs before the conversion, on the decoded image, so a
large upload is never copied at full size (compositing onto white commutes with Pillow's
premultiplied-alpha resampling up to rounding); other modes are converted first.

:func:`atomic_write` is the one way xbyol replaces a file: temporary file in the same
directory, fsync, ``os.replace``.
"""

from __future__ import annotations

import hashlib
import io
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from xbyol.errors import XbyolError

__all__ = [
    "IMAGE_EXTENSIONS", "ImageTooLargeError", "NotAnImageError", "UnreadableImageError", "atomic_write",
    "check_image", "load_image", "read_image", "read_mask", "resize_center_crop", "to_rgb", "verify_files",
]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
#: a shrink by this factor or more first box-reduces by an integer factor (Pillow ``reducing_gap``)
REDUCING_GAP = 2.0
#: modes resized before their RGB conversion (resampling commutes with it)
_RESIZE_FIRST_MODES = ("RGB", "RGBA", "L", "LA")
_DEEP_MODES = ("I", "I;16", "I;16L", "I;16B", "I;16N", "F")


class UnreadableImageError(XbyolError, OSError):
    """An image or mask file could not be decoded; the message names the file.

    ``detail`` is the reason alone, without the file name (the explorer words its own reply).
    """

    def __init__(self, message: str, detail: str | None = None) -> None:
        super().__init__(message)
        self.detail = message if detail is None else detail


class NotAnImageError(UnreadableImageError):
    """Pillow does not recognise the bytes as an image of an accepted format."""


class ImageTooLargeError(UnreadableImageError):
    """More pixels than allowed: a possible decompression bomb or over ``max_pixels``."""


# ----------------------------------------------------------------------------- checks


def check_image(path: Path) -> str | None:
    """Quick structural check (``Image.verify``): ``None`` if readable, else the reason."""
    try:
        with Image.open(path) as im:
            im.verify()
    except Exception as e:  # noqa: BLE001 - Pillow raises many exception types for bad files
        return f"{type(e).__name__}: {e}"
    return None


def verify_files(paths: list[Path], strict: bool, dataset: str) -> tuple[list[int], list[str]]:
    """Indices of the paths that pass :func:`check_image`, and ``"path (reason)"`` of the others."""
    keep, bad = [], []
    for k, p in enumerate(paths):
        reason = check_image(p)
        if reason is None:
            keep.append(k)
            continue
        if strict:
            raise UnreadableImageError(f"{dataset}: cannot read image {p}: {reason}", reason)
        bad.append(f"{p} ({reason})")
    return keep, bad


# ----------------------------------------------------------------------------- conversion


def to_rgb(img: Image.Image) -> Image.Image:
    """Any Pillow image -> ``RGB``. 16-bit/float gray is rescaled; transparency goes on white.

    16-bit gray ``v`` becomes ``round(v / 257)`` (65535 -> 255); float gray in 0..1 is
    scaled by 255; a pixel of alpha ``a`` and colour ``c`` becomes ``c * a + 255 * (1 - a)``
    (Pillow's ``alpha_composite``: a half-transparent red is (255, 127, 127)).
    """
    if img.mode in _DEEP_MODES:
        # float32 is exact here: v / 257 is never within 1e-3 of a .5 for integer v
        arr = np.asarray(img, dtype=np.float32)
        if img.mode == "F":
            arr = arr * 255.0 if arr.size and arr.max() <= 1.0 else arr
        elif img.mode.startswith("I;16") or (arr.size and arr.max() > 255):
            arr = arr / 257.0
        img = Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), mode="L")
    has_alpha = img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info
    if has_alpha:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img.convert("RGB")


def resize_center_crop(
    img: Image.Image,
    size: int,
    resample: int = Image.Resampling.BILINEAR,
    box: tuple[float, float, float, float] | None = None,
) -> Image.Image:
    """Resize so the shorter side is ``size`` (keeping the aspect ratio), then centre-crop.

    Args:
        box: the region of ``img`` that stands for the whole original image (a JPEG decoded
            at reduced scale by ``draft``); the output geometry is computed from it, so a
            reduced decode lands on the same pixels as a full one.
    """
    full = (0.0, 0.0, float(img.width), float(img.height))
    box = full if box is None else (float(box[0]), float(box[1]), float(box[2]), float(box[3]))
    w, h = box[2] - box[0], box[3] - box[1]
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    if (nw, nh) != img.size or box != full:
        gap = None if resample == Image.Resampling.NEAREST else REDUCING_GAP
        img = img.resize((nw, nh), resample, box=box, reducing_gap=gap)
    left, top = (nw - size) // 2, (nh - size) // 2
    return img.crop((left, top, left + size, top + size))


def to_model_input(img: Image.Image, size: int, box: tuple[float, float, float, float] | None = None) -> torch.Tensor:
    """A decoded image -> uint8 ``[3, size, size]``: RGB conversion, shorter-side resize, centre crop."""
    if img.mode in _RESIZE_FIRST_MODES and "transparency" not in img.info:
        rgb = to_rgb(resize_center_crop(img, size, box=box))
    else:
        rgb = resize_center_crop(to_rgb(img), size, box=box)
    arr = np.array(rgb, dtype=np.uint8)  # (S, S, 3)
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous()  # (3, S, S)


# ----------------------------------------------------------------------------- readers


def read_image(
    source: str | Path | bytes,
    size: int,
    max_pixels: int | None = None,
    formats: tuple[str, ...] | None = None,
) -> tuple[torch.Tensor, tuple[int, int]]:
    """Decode a file (a path, or its bytes) -> (``[3, S, S]`` uint8, original ``(width, height)``).

    Args:
        source: an image file's path, or the bytes of one (an upload; named "upload" in errors).
        size: output side ``S``.
        max_pixels: largest ``width * height`` decoded (after a JPEG's reduced-scale draft);
            ``None``: only Pillow's decompression-bomb limit.
        formats: Pillow format names accepted (``None``: any).

    Raises:
        NotAnImageError: not an image of an accepted format.
        ImageTooLargeError: a possible decompression bomb, or more than ``max_pixels``.
        UnreadableImageError: truncated, corrupt or empty.
    """
    name = "upload" if isinstance(source, bytes) else str(source)
    fp = io.BytesIO(source) if isinstance(source, bytes) else source

    def fail(kind: type[UnreadableImageError], detail: str) -> UnreadableImageError:
        return kind(f"cannot read image {name}: {detail}", detail)

    try:
        with warnings.catch_warnings():
            # Pillow only warns between MAX_IMAGE_PIXELS and twice that; refuse those too
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(fp, formats=formats) as im:
                orig = im.size
                if min(orig) < 1:
                    raise fail(UnreadableImageError, f"the image has an empty size {orig[0]}x{orig[1]}")
                drafted = im.draft(None, (2 * size, 2 * size))  # JPEG only: decode at a reduced scale
                w, h = im.size
                if max_pixels is not None and w * h > max_pixels:
                    raise fail(ImageTooLargeError, f"{orig[0]}x{orig[1]} = {orig[0] * orig[1]} pixels; at most "
                               f"{max_pixels} are accepted (memory and decompression-bomb guard)")
                im.load()
                return to_model_input(im, size, drafted[1] if drafted else None), orig
    except UnreadableImageError:
        raise
    except UnidentifiedImageError as e:
        raise fail(NotAnImageError, f"{type(e).__name__}: {e}") from e
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise fail(ImageTooLargeError, f"{type(e).__name__}: possible decompression bomb: {e}") from e
    except Exception as e:  # Pillow raises many exception types for bad files
        raise fail(UnreadableImageError, f"{type(e).__name__}: {e}") from e


def load_image(path: str | Path, size: int) -> torch.Tensor:
    """An image file as uint8 ``[3, size, size]``, decoded exactly as training decodes it.

    Raises:
        FileNotFoundError: no such file.
        UnreadableImageError: not an image, truncated, or a decompression bomb.
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise FileNotFoundError(f"image {p} does not exist")
    return read_image(p, size)[0]


def read_mask(path: Path, size: int, image_size_wh: tuple[int, int]) -> torch.Tensor:
    """Read a mask file (nonzero in any colour channel = inside) -> ``[S, S]`` bool.

    The mask is brought to the image's original size first if it differs, then gets the
    image's resize-and-crop with nearest-neighbour sampling.
    """
    try:
        with Image.open(path) as im:
            im.load()
            arr = np.asarray(im)
            if arr.ndim == 3:
                bands = im.getbands()
                keep = [k for k, b in enumerate(bands) if b != "A"] or [0]
                arr = np.asarray(arr[..., keep].any(-1))
    except Exception as e:  # Pillow raises many exception types for bad files
        detail = f"{type(e).__name__}: {e}"
        raise UnreadableImageError(f"cannot read mask {path}: {detail}", detail) from e
    m = Image.fromarray((arr != 0).astype(np.uint8) * 255, mode="L")
    if m.size != image_size_wh:
        m = m.resize(image_size_wh, Image.Resampling.NEAREST)
    m = resize_center_crop(m, size, Image.Resampling.NEAREST)
    return torch.from_numpy(np.array(m) > 127)


# ----------------------------------------------------------------------------- fingerprints


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB blocks (a checkpoint or model weights need not fit twice)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ----------------------------------------------------------------------------- writing


def atomic_write(
    path: str | Path,
    content: str | bytes | Callable[[BinaryIO], object],
    keep_previous_as: str | Path | None = None,
) -> Path:
    """Replace ``path`` so that a reader, or a crash, finds the old file or the new one, never a part.

    The content goes to ``.<name>.tmp<pid>`` in the same directory (same file system, so
    the rename is atomic), is flushed and fsynced, and only then ``os.replace``s ``path``.
    If writing raises, the temporary file is removed and ``path`` is left as it was.

    Args:
        path: the file to write; its directory is created.
        content: text (written as UTF-8), bytes, or a function that writes to the open
            binary file (e.g. ``lambda f: torch.save(obj, f)``).
        keep_previous_as: move the file being replaced here first (a checkpoint's ``prev.pt``).

    Returns:
        ``path`` as a ``Path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            if isinstance(content, str):
                f.write(content.encode("utf-8"))
            elif isinstance(content, bytes):
                f.write(content)
            else:
                content(f)
            f.flush()
            os.fsync(f.fileno())
        if keep_previous_as is not None and path.exists():
            os.replace(path, keep_previous_as)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
