"""Upload decoding: peak memory under concurrent uploads is bounded by the decode gate, not the thread count."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

# Runs in a fresh interpreter so ru_maxrss (the process's peak) measures only these decodes.
PEAK_SCRIPT = textwrap.dedent(
    """
    import io, json, resource, struct, sys, threading, zlib

    from xbyol.web.uploads import UploadDecoder

    side, uploads, concurrent = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    # a side x side RGB PNG written row by row: building it never holds the decoded image
    z = zlib.compressobj(1)
    row = b"\\0" + bytes([200, 30, 30]) * side
    idat = b"".join(z.compress(row) for _ in range(side)) + z.flush()
    png = (b"\\x89PNG\\r\\n\\x1a\\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0))
           + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    decoder = UploadDecoder(32, max_pixels=side * side, max_concurrent=concurrent)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    results = []
    threads = [threading.Thread(target=lambda: results.append(decoder(png))) for _ in range(uploads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    assert len(results) == uploads and all(tuple(r.shape) == (3, 32, 32) for r in results)
    assert results[0][:, 16, 16].tolist() == [200, 30, 30]
    print(json.dumps({"base": base, "peak": peak}))
    """
)


def peak_of_concurrent_decodes(side: int, uploads: int, concurrent: int) -> int:
    """Bytes the process's peak memory grew by while ``uploads`` threads decoded a ``side x side`` PNG."""
    out = subprocess.run([sys.executable, "-c", PEAK_SCRIPT, str(side), str(uploads), str(concurrent)],
                         capture_output=True, text=True, timeout=300, check=True)
    m = json.loads(out.stdout.strip().splitlines()[-1])
    return m["peak"] - m["base"]


@pytest.mark.slow
def test_concurrent_uploads_peak_memory_is_bounded_by_the_decode_gate():
    side = 4000  # 16 megapixels, the default cap: Pillow holds 4 bytes a pixel = 64 MB while decoding
    one_decode = 4 * side * side
    grown = peak_of_concurrent_decodes(side, uploads=8, concurrent=2)
    # two decodes at a time (plus the small reduced copies): well under 8 x 64 MB = 512 MB
    assert grown < 2.6 * one_decode, f"peak grew by {grown / 2**20:.0f} MiB for 8 uploads with 2 decodes at a time"
