"""data/io.py: mode conversion against hand-worked pixels, decode guards, atomic writes, and one
decoder for every reader (training, ``explain``, the explorer's uploads give identical tensors)."""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from data_fixtures import truncated_bytes
from PIL import Image, JpegImagePlugin

from xbyol.data.folder import FolderDataset
from xbyol.data.io import (
    ImageTooLargeError,
    NotAnImageError,
    UnreadableImageError,
    atomic_write,
    load_image,
    read_image,
    to_rgb,
)


def pixels(img: Image.Image) -> list:
    return np.asarray(img).reshape(-1, 3).tolist()


# ----------------------------------------------------------------------------- mode conversion
# Compositing onto white: out = c * a + 255 * (1 - a) with a = alpha / 255, rounded to nearest.


def test_rgba_is_composited_onto_white():
    rgba = np.array([[[255, 0, 0, 128], [255, 0, 0, 0], [255, 0, 0, 255], [0, 0, 255, 64]]], dtype=np.uint8)
    # half-transparent red: G = B = 255 * 127/255 = 127; (0, 0, 255) at 64/255: R = G = 255 * 191/255 = 191
    assert pixels(to_rgb(Image.fromarray(rgba, "RGBA"))) == [[255, 127, 127], [255, 255, 255], [255, 0, 0],
                                                             [191, 191, 255]]


def test_gray_alpha_and_gray():
    la = np.array([[[100, 0], [100, 255], [100, 128]]], dtype=np.uint8)
    # 100 * 128/255 + 255 * 127/255 = 50.2 + 127 = 177.2 -> 177
    assert pixels(to_rgb(Image.fromarray(la, "LA"))) == [[255, 255, 255], [100, 100, 100], [177, 177, 177]]
    assert pixels(to_rgb(Image.new("L", (1, 1), 77))) == [[77, 77, 77]]


def test_palette_with_a_transparent_index_and_colour_key():
    pal = Image.new("P", (2, 1), 0)
    pal.putpalette([9, 9, 9, 0, 128, 255] + [0] * 762)
    pal.putpixel((1, 0), 1)
    pal.info["transparency"] = 0  # index 0 is transparent
    assert pixels(to_rgb(pal)) == [[255, 255, 255], [0, 128, 255]]
    keyed = Image.fromarray(np.array([[[1, 2, 3], [4, 5, 6]]], dtype=np.uint8), "RGB")
    keyed.info["transparency"] = (1, 2, 3)  # a PNG tRNS colour key
    assert pixels(to_rgb(keyed)) == [[255, 255, 255], [4, 5, 6]]


def test_16_bit_and_float_gray_are_rescaled():
    deep = Image.fromarray(np.array([[0, 1000, 257 * 50, 65535]], dtype=np.uint16))
    assert deep.mode == "I;16"
    # v / 257 rounded: 1000 / 257 = 3.89 -> 4
    assert [p[0] for p in pixels(to_rgb(deep))] == [0, 4, 50, 255]
    flt = Image.fromarray(np.array([[0.0, 0.25, 0.5, 1.0]], dtype=np.float32), "F")
    # 0..1 floats times 255: 63.75 -> 64, 127.5 -> 128 (half to even)
    assert [p[0] for p in pixels(to_rgb(flt))] == [0, 64, 128, 255]


def test_a_reduced_scale_jpeg_decode_lands_on_the_full_decode():
    # 512x256, R rises left to right, G top to bottom: smooth, so JPEG keeps it well
    x = np.linspace(0, 255, 512)[None, :].repeat(256, 0)
    y = np.linspace(0, 255, 256)[:, None].repeat(512, 1)
    arr = np.stack([x, y, np.full_like(x, 90)], -1).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "JPEG", quality=95)
    drafted, orig = read_image(buf.getvalue(), 16)  # 1/8 scale: 64x32 still covers twice 16
    assert orig == (512, 256)
    # expected from the full-size pixels: the centre 256x256 block (columns 128..383), shrunk to 16x16
    # by 16x16 box means
    want = arr[:, 128:384].reshape(16, 16, 16, 16, 3).mean((1, 3))  # (16, 16, 3)
    got = drafted.permute(1, 2, 0).numpy().astype(float)
    assert np.abs(got - want).max() < 6 and np.abs(got - want).mean() < 2


# ----------------------------------------------------------------------------- guards


def _bomb_png(side: int = 20000) -> bytes:
    """A valid 1-bit ``side x side`` PNG of zeros: ~50 KB that would decode to ``side**2`` pixels."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    z = zlib.compressobj(9)
    idat = b"".join(z.compress(b"\0" * (1 + side // 8) * 1000) for _ in range(side // 1000)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def test_decompression_bomb_is_refused_naming_the_file(tmp_path, monkeypatch):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_bomb_png())  # 400 M pixels: over twice Pillow's limit, an error in Pillow too
    with pytest.raises(ImageTooLargeError, match=r"cannot read image .*bomb\.png: DecompressionBombError"):
        read_image(bomb, 8)
    # between Pillow's limit and twice it Pillow only warns: refused as well
    Image.new("RGB", (100, 100)).save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 6000)
    with pytest.raises(ImageTooLargeError, match=r"big\.png: DecompressionBombWarning"):
        read_image(tmp_path / "big.png", 8)


def test_max_pixels_is_checked_before_decoding():
    buf = io.BytesIO()
    Image.new("RGB", (100, 100)).save(buf, "PNG")
    with pytest.raises(ImageTooLargeError, match="100x100 = 10000 pixels; at most 9999"):
        read_image(buf.getvalue(), 8, max_pixels=9999)
    assert read_image(buf.getvalue(), 8, max_pixels=10000)[0].shape == (3, 8, 8)


def test_truncated_and_non_image_files_are_one_line_errors(tmp_path):
    (tmp_path / "cut.png").write_bytes(truncated_bytes("PNG"))
    (tmp_path / "late.jpg").write_bytes(truncated_bytes("JPEG", cut_from_end=10))
    (tmp_path / "notes.png").write_text("not an image")
    for name, kind in (("cut.png", UnreadableImageError), ("late.jpg", UnreadableImageError),
                       ("notes.png", NotAnImageError)):
        with pytest.raises(kind) as info:
            read_image(tmp_path / name, 8)
        msg = str(info.value)
        assert msg.startswith(f"cannot read image {tmp_path / name}: ") and "\n" not in msg
        assert not isinstance(info.value, ImageTooLargeError)
    with pytest.raises(FileNotFoundError, match="nope.png does not exist"):
        load_image(tmp_path / "nope.png", 8)


# ----------------------------------------------------------------------------- atomic writes


def test_atomic_write_replaces_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "sub" / "out.json"
    assert atomic_write(path, "first ü") == path
    assert path.read_bytes() == "first ü".encode()
    atomic_write(path, b"second")
    assert path.read_bytes() == b"second"
    atomic_write(path, lambda f: torch.save({"x": torch.arange(3)}, f), keep_previous_as=tmp_path / "sub" / "prev")
    assert torch.load(path, weights_only=True)["x"].tolist() == [0, 1, 2]
    assert (tmp_path / "sub" / "prev").read_bytes() == b"second"
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["out.json", "prev"]


def test_a_failed_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "out.txt"
    path.write_text("old")

    def half_then_fail(f):
        f.write(b"half of the new")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(path, half_then_fail, keep_previous_as=tmp_path / "prev.txt")
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_the_temporary_is_fsynced_before_it_replaces_the_file(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (events.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(os, "replace", lambda a, b: (events.append(("replace", Path(a).name, Path(b).name)),
                                                     real_replace(a, b))[1])
    atomic_write(tmp_path / "last.pt", b"x")
    assert events == ["fsync", ("replace", f".last.pt.tmp{os.getpid()}", "last.pt")]


# ----------------------------------------------------------------------------- one decoder everywhere


def _rgba_png(path: Path) -> None:
    rng = np.random.default_rng(0)
    rgba = rng.integers(0, 256, (40, 48, 4), dtype=np.uint8)
    rgba[:, :12, 3] = 0  # a transparent band on the left
    Image.fromarray(rgba, "RGBA").save(path)


def _deep_png(path: Path) -> None:
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 65536, (37, 50), dtype=np.uint16)).save(path)


@pytest.fixture
def same_files(tmp_path):
    """``root/<class>/<file>``: one RGBA PNG and one 16-bit gray PNG, each alone in its class."""
    root = tmp_path / "root"
    (root / "a").mkdir(parents=True)
    (root / "b").mkdir()
    _rgba_png(root / "a" / "rgba.png")
    _deep_png(root / "b" / "deep.png")
    return root


def test_training_explain_and_upload_decode_a_file_to_the_same_tensor(same_files, tiny_run_dir, monkeypatch):
    from xbyol.explain.spec import parse_target
    from xbyol.run import load_run
    from xbyol.web.app import create_app

    run = load_run(tiny_run_dir)
    size = run.cfg.data.image_size
    ds = FolderDataset(same_files, "train", image_size=size)
    client = create_app(run).test_client()
    explorer = client.application.extensions["xbyol_explorer"]
    encoded = []  # what `--target image:PATH` (xbyol explain, parse_target) embeds
    monkeypatch.setattr(run, "encode_images", lambda x: encoded.append(x) or torch.ones(1, 4))
    for key in ("a/rgba.png", "b/deep.png"):
        path = same_files / key
        trained = ds[ds.keys.index(key)]["image"]
        assert trained.shape == (3, size, size) and trained.dtype == torch.uint8

        parse_target(f"image:{path}", run)
        assert torch.equal(encoded[-1][0], trained), key

        r = client.post("/api/upload", data={"image": (io.BytesIO(path.read_bytes()), "x.png", "image/png")},
                        content_type="multipart/form-data")
        assert r.status_code == 201, r.get_json()
        assert torch.equal(explorer.uploads[r.get_json()["upload"]], trained), key

        # the bug this pins: a bare convert("RGB") drops the alpha / clips 16-bit values
        with Image.open(path) as im:
            bare = np.asarray(im.convert("RGB").resize((size, size)))
        assert not np.array_equal(bare, trained.permute(1, 2, 0).numpy())
    rgba = ds[ds.keys.index("a/rgba.png")]["image"]
    assert (rgba[:, :, :4] == 255).all()  # the transparent band is white (48x40 -> 38x32 crop: columns 0..5)
    deep = ds[ds.keys.index("b/deep.png")]["image"]
    assert 100 < deep.float().mean() < 155 and torch.equal(deep[0], deep[1])  # rescaled, not clipped to 255


def test_explain_command_explains_the_decoded_file(same_files, tiny_run_dir, tmp_path, monkeypatch):
    import xbyol.augment
    import xbyol.commands.explain as command
    from xbyol.cli import main
    from xbyol.run import load_run

    size = load_run(tiny_run_dir).cfg.data.image_size
    seen = []
    real = xbyol.augment.preprocess

    def spy(x):
        seen.append(x.clone())
        return real(x)

    monkeypatch.setattr(xbyol.augment, "preprocess", spy)
    monkeypatch.setattr(command, "preprocess", spy, raising=False)  # if the command imports it at its top
    path = same_files / "a" / "rgba.png"
    assert main(["explain", str(tiny_run_dir), "--target", "norm", "--images", str(path), "--out",
                 str(tmp_path / "out"), "--png-size", "32"]) == 0
    ds = FolderDataset(same_files, "train", image_size=size)
    assert len(seen) == 1 and torch.equal(seen[0][0], ds[ds.keys.index("a/rgba.png")]["image"])


def test_the_draft_decode_of_a_large_jpeg_is_close_to_the_full_decode(monkeypatch):
    # a 1024x768 photo-like JPEG (smooth gradients and a few hard edges) read at 96 px: the draft decodes at 1/4 scale
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:768, 0:1024].astype(float)
    arr = np.stack([xx / 4, yy / 3, 128 + 100 * np.sin(xx / 40) * np.cos(yy / 30)], -1)
    arr[200:400, 300:700] = (240, 30, 30)  # a hard-edged block
    arr += rng.normal(0, 4, arr.shape)
    buf = io.BytesIO()
    Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(buf, "JPEG", quality=90)
    drafted, _ = read_image(buf.getvalue(), 96)
    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", lambda self, mode, size: None)  # full-size decode
    full, _ = read_image(buf.getvalue(), 96)
    assert not torch.equal(drafted, full)  # the two decodes did differ
    assert drafted.shape == full.shape == (3, 96, 96)
    diff = (drafted.double() - full.double()).abs()
    assert diff.mean() < 2.0 and diff.max() < 40  # edges move by at most a pixel's blend
