"""The IDX file format of MNIST and Fashion-MNIST: one array per file, gzipped or not.

Layout (http://yann.lecun.com/exdb/mnist/, "file formats"): two zero bytes, a type code
(``0x08`` unsigned byte, ``0x09`` signed byte, ``0x0B`` int16, ``0x0C`` int32, ``0x0D``
float32, ``0x0E`` float64), the number of dimensions ``d``, then ``d`` big-endian uint32
sizes and the data, big-endian, row-major. A file that starts with the gzip magic
``1f 8b`` is decompressed first, whatever its name.

Every problem (not IDX, unknown type, truncated or over-long data, corrupt gzip) is a
one-line ``ValueError`` that starts with the file's path.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
GZIP_MAGIC = b"\x1f\x8b"


def read_bytes(path: Path) -> bytes:
    """The file's contents, gunzipped when it starts with the gzip magic."""
    raw = path.read_bytes()
    if raw[:2] != GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except (EOFError, OSError, zlib.error) as e:  # truncated stream, bad header or CRC
        raise ValueError(f"{path}: corrupt or truncated gzip file ({e})") from e


def parse_idx(data: bytes, path: Path | str = "<bytes>") -> np.ndarray:
    """Decode IDX ``data`` into an array of the declared type and shape (native byte order)."""
    if len(data) < 4:
        raise ValueError(f"{path}: truncated: {len(data)} bytes, shorter than the 4-byte IDX magic number")
    if data[0] != 0 or data[1] != 0 or data[2] not in IDX_DTYPES:
        raise ValueError(
            f"{path}: not an IDX file: magic number 0x{data[:4].hex()}, expected 0x0000 then a type code "
            f"({', '.join(f'{c:02x}' for c in IDX_DTYPES)}) and the number of dimensions"
        )
    dtype, ndim = IDX_DTYPES[data[2]], data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{path}: truncated: the header declares {ndim} dimensions but the file ends at byte {len(data)}")
    shape = tuple(int(s) for s in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    got = len(data) - header
    dims = " x ".join(map(str, shape))
    if got < expected:
        raise ValueError(f"{path}: truncated: the header declares {dims} values ({expected} bytes) but {got} bytes follow it")
    if got > expected:
        raise ValueError(f"{path}: {got - expected} bytes after the declared {dims} values; not a single IDX array")
    arr = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    return arr.astype(dtype.newbyteorder("="))  # a writable copy in native byte order


def read_idx(path: str | Path) -> np.ndarray:
    """Read the IDX file at ``path`` (gzipped or plain) into a numpy array."""
    path = Path(path)
    return parse_idx(read_bytes(path), path)


def write_idx(path: str | Path, arr: np.ndarray, compress: bool | None = None) -> Path:
    """Write ``arr`` as an IDX file (gzipped when ``compress``, default: when the name ends in ``.gz``).

    The inverse of :func:`read_idx`, used to make small files (tests, subsets).
    """
    path = Path(path)
    codes = {dt: code for code, dt in IDX_DTYPES.items()}
    dtype = np.dtype(arr.dtype).newbyteorder(">") if arr.dtype.itemsize > 1 else arr.dtype
    if dtype not in codes:
        raise ValueError(f"{path}: IDX cannot hold dtype {arr.dtype}")
    header = bytes([0, 0, codes[dtype], arr.ndim]) + np.asarray(arr.shape, dtype=">u4").tobytes()
    data = header + np.ascontiguousarray(arr, dtype=dtype).tobytes()
    if compress if compress is not None else path.suffix == ".gz":
        data = gzip.compress(data, mtime=0)
    path.write_bytes(data)
    return path
