"""IDX reader: hand-written bytes, gzip, and one-line errors naming the file."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from xbyol.data.idx import parse_idx, read_idx, write_idx


def test_parses_hand_written_bytes():
    # magic 0x00000803: unsigned bytes, 3 dimensions 2 x 1 x 3, then the values row-major
    data = bytes([0, 0, 0x08, 3, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 3, 1, 2, 3, 250, 251, 252])
    arr = parse_idx(data)
    assert arr.dtype == np.uint8 and arr.shape == (2, 1, 3)
    assert arr.tolist() == [[[1, 2, 3]], [[250, 251, 252]]]
    # magic 0x00000B01: big-endian int16, 2 values: 0x0102 = 258, 0xFFFE = -2
    arr = parse_idx(bytes([0, 0, 0x0B, 1, 0, 0, 0, 2, 0x01, 0x02, 0xFF, 0xFE]))
    assert arr.tolist() == [258, -2] and arr.dtype == np.int16


@pytest.mark.parametrize("name", ["x-idx3-ubyte", "x-idx3-ubyte.gz"])
def test_round_trip_plain_and_gzip(tmp_path, name):
    arr = np.arange(2 * 4 * 5, dtype=np.uint8).reshape(2, 4, 5)
    path = write_idx(tmp_path / name, arr)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == name.endswith(".gz")
    np.testing.assert_array_equal(read_idx(path), arr)
    floats = np.array([[0.5, -1.25]], dtype=np.float32)
    np.testing.assert_array_equal(read_idx(write_idx(tmp_path / "f.idx", floats)), floats)


def test_gzip_is_detected_by_content_not_name(tmp_path):
    arr = np.array([7, 8, 9], dtype=np.uint8)
    path = write_idx(tmp_path / "labels-idx1-ubyte", arr, compress=True)
    np.testing.assert_array_equal(read_idx(path), arr)


def test_wrong_magic_names_the_file(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(16))
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte: not an IDX file: magic number 0x89504e47") as e:
        read_idx(path)
    assert "\n" not in str(e.value)
    path.write_bytes(bytes([0, 0, 0x07, 1, 0, 0, 0, 1, 0]))  # unknown type code 0x07
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(path)


def test_truncated_data_and_header(tmp_path):
    arr = np.zeros((3, 4, 4), dtype=np.uint8)
    path = write_idx(tmp_path / "t10k-images-idx3-ubyte", arr)
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(ValueError, match=r"t10k-images-idx3-ubyte: truncated: the header declares 3 x 4 x 4 values \(48 bytes\) but 43"):
        read_idx(path)
    path.write_bytes(bytes([0, 0, 8, 3, 0, 0]))
    with pytest.raises(ValueError, match="truncated: the header declares 3 dimensions but the file ends at byte 6"):
        read_idx(path)
    path.write_bytes(b"\x00\x00")
    with pytest.raises(ValueError, match="truncated: 2 bytes"):
        read_idx(path)


def test_trailing_bytes_are_an_error(tmp_path):
    path = write_idx(tmp_path / "a.idx", np.zeros(4, dtype=np.uint8))
    path.write_bytes(path.read_bytes() + b"\x00\x00")
    with pytest.raises(ValueError, match=r"a.idx: 2 bytes after the declared 4 values"):
        read_idx(path)


def test_truncated_gzip_names_the_file(tmp_path):
    blob = gzip.compress(bytes([0, 0, 8, 1, 0, 0, 0, 100]) + bytes(range(100)))
    path = tmp_path / "train-labels-idx1-ubyte.gz"
    path.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(ValueError, match=r"train-labels-idx1-ubyte.gz: corrupt or truncated gzip file"):
        read_idx(path)
