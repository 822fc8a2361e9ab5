"""The explorer (``xbyol serve``): API answers, upload guards, no path from a request, a real browser."""

from __future__ import annotations

import base64
import contextlib
import io
import struct
import tempfile
import threading
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from xbyol.cli import main
from xbyol.explain.spec import parse_target
from xbyol.web import create_app

METHODS = ["gradcam", "gradcampp"]


@pytest.fixture(scope="module")
def run(trained_run):
    from xbyol.run import load_run

    return load_run(trained_run)


@pytest.fixture(scope="module")
def app(run):
    return create_app(run, methods=METHODS)


@pytest.fixture
def client(app):
    return app.test_client()


def png_bytes(w: int = 64, h: int = 48, colour=(200, 30, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (w, h), colour).save(buf, format="PNG")
    return buf.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_header(w: int, h: int, idat: bytes = b"", bit_depth: int = 8, colour_type: int = 2) -> bytes:
    """A PNG declaring ``w x h`` pixels with the given (possibly far too short) compressed data."""
    ihdr = struct.pack(">IIBBBBB", w, h, bit_depth, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat or zlib.compress(b"\0" * 16)) + _chunk(b"IEND", b"")


def jpeg_bytes(w: int = 64, h: int = 48) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (w, h), (10, 200, 30)).save(buf, format="JPEG")
    return buf.getvalue()


def png_bomb(side: int = 20000) -> bytes:
    """A valid 1-bit ``side x side`` PNG of zeros: ~50 KB that decodes to 400 M pixels (1.2 GB as RGB)."""
    z = zlib.compressobj(9)
    row = b"\0" * (1 + side // 8)  # filter byte + packed bits
    parts = [z.compress(row * 1000) for _ in range(side // 1000)]
    return png_header(side, side, b"".join(parts) + z.flush(), bit_depth=1, colour_type=0)


def decode_data_uri(uri: str) -> np.ndarray:
    assert uri.startswith("data:image/png;base64,")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))).convert("RGB"))


def upload(client, data: bytes, filename: str = "x.png", mimetype: str = "image/png"):
    return client.post("/api/upload", data={"image": (io.BytesIO(data), filename, mimetype)},
                       content_type="multipart/form-data")


# ----------------------------------------------------------------------------- pages and images


def test_page_static_files_and_headers(client):
    r = client.get("/")
    assert r.status_code == 200 and r.mimetype == "text/html"
    page = r.get_data(as_text=True)
    for m in ("gradcam", "scorecam", "integrated_gradients"):
        assert f'value="{m}"' in page
    assert 'value="gradcam" checked' in page and 'value="scorecam">' in page  # default ticks
    assert "<script>" not in page and "http://" not in page and "https://" not in page  # no inline JS, no CDN
    csp = r.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp and "unsafe" not in csp
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    js = client.get("/static/app.js")
    assert js.status_code == 200 and js.mimetype == "text/javascript" and b"/api/explain" in js.data
    assert client.get("/static/app.css").mimetype == "text/css"
    assert client.get("/static/other.js").status_code == 404


def test_images_are_listed_and_served_from_the_dataset(client, run):
    test = run.dataset("test")
    r = client.get("/api/images?page=1")
    body = r.get_json()
    assert r.status_code == 200 and body["page"] == 1 and body["total"] == len(test) == 128
    assert body["pages"] == 6 and [i["index"] for i in body["images"]] == list(range(24, 48))
    first = body["images"][0]
    assert first["url"] == "/img/24.png" and first["caption"] == test[24]["caption"]
    img = client.get("/img/24.png")
    assert img.status_code == 200 and img.mimetype == "image/png"
    pixels = np.asarray(Image.open(io.BytesIO(img.data)))
    assert np.array_equal(pixels, test[24]["image"].permute(1, 2, 0).numpy())
    for bad in ("page=6", "page=-1", "page=abc", "page=1e3"):
        r = client.get(f"/api/images?{bad}")
        assert r.status_code == 400 and "page" in r.get_json()["error"]
    r = client.get("/img/128.png")
    assert r.status_code == 404 and "128 images" in r.get_json()["error"]


TRAVERSALS = [
    "/config.yaml", "/checkpoints/last.pt", "/eval.json", "/metrics.csv",
    "/img/../config.yaml", "/img/..%2fconfig.yaml", "/img/%2e%2e/%2e%2e/etc/passwd", "/img/-1.png",
    "/img/0.png/../../config.yaml", "/img/upload/..%2f..%2fconfig.yaml.png", "/img/upload/../../etc/passwd.png",
    "/static/../app.py", "/static/..%2f..%2fweb%2fapp.py", "/static/%2e%2e/templates/index.html",
    "/api/concepts/..%2fconfig.yaml", "/api/uploads/..%2f..%2fconfig.yaml/concepts", "//etc/passwd",
    "/api/images/../../config.yaml",
]


@pytest.mark.parametrize("path", TRAVERSALS)
def test_no_request_path_reaches_the_file_system(client, path):
    r = client.get(path)
    assert r.status_code in (400, 404), (path, r.status_code)
    body = r.get_data(as_text=True)
    assert "out_dir:" not in body and "root:" not in body and "import " not in body
    assert r.is_json and "error" in r.get_json()


@pytest.mark.parametrize("ref,status", [
    ({"index": "../config.yaml"}, 400), ({"index": 1.5}, 400), ({"index": True}, 400), ({"index": -1}, 404),
    ({"index": 10**6}, 404), ({"upload": "../../config.yaml"}, 404), ({"upload": "0" * 32}, 404),
    ({"upload": ["x"]}, 404), ({"index": 0, "upload": "0" * 32}, 400), ({}, 400),
])
def test_image_references_are_validated(client, ref, status):
    r = client.post("/api/explain", json={**ref, "concept": "red", "methods": ["gradcam"]})
    assert r.status_code == status and "error" in r.get_json()


# ----------------------------------------------------------------------------- explanations


def test_explain_returns_the_library_heatmap_and_score(client, run):
    from xbyol.augment import preprocess
    from xbyol.explain import explain
    from xbyol.explain.render import overlay

    r = client.post("/api/explain", json={"index": 3, "concept": "  red   circle ", "methods": ["gradcam"]})
    assert r.status_code == 200
    body = r.get_json()
    assert body["concept"] == "red circle" and body["index"] == 3 and [h["method"] for h in body["heatmaps"]] == ["gradcam"]
    image = run.dataset("test")[3]["image"]
    target = parse_target("concept:red circle", run)
    x = preprocess(image[None])
    with torch.no_grad():
        score = float(target(run.backbone(x))[0])
    assert body["score"] == pytest.approx(score, abs=1e-6)
    heat = explain(run.backbone, x, target, method="gradcam")[0]
    expected = overlay(image, heat, alpha=0.8, cmap="inferno", by_value=True).numpy()
    expected = expected.repeat(6, axis=0).repeat(6, axis=1)  # 32 px shown at 192 px
    got = decode_data_uri(body["heatmaps"][0]["src"])
    assert got.shape == (192, 192, 3) and np.abs(got.astype(int) - expected.astype(int)).max() <= 1
    assert np.array_equal(decode_data_uri(body["image"]), image.permute(1, 2, 0).numpy().repeat(6, 0).repeat(6, 1))
    # the RGBA layer the page lays over the image: its opacity is 0.8 x the heatmap value
    layer = np.asarray(Image.open(io.BytesIO(base64.b64decode(body["heatmaps"][0]["heat"].split(",", 1)[1]))))
    assert layer.shape == (192, 192, 4)
    alpha = (0.8 * heat.numpy() * 255).round().repeat(6, 0).repeat(6, 1)
    assert np.abs(layer[..., 3].astype(int) - alpha).max() <= 1



def test_the_ground_truth_mask_is_outlined(client, run):
    from xbyol.explain.concept_heatmaps import concept_mask
    from xbyol.explain.render import mask_outline

    test = run.dataset("test")
    index = next(i for i in range(len(test)) if concept_mask(test[i], test, "red circle") is not None)
    mask = test[index]["masks"][test.concept_names.index("red")] & test[index]["masks"][test.concept_names.index("circle")]
    body = client.post("/api/explain", json={"index": index, "concept": "Red  circle", "methods": ["gradcam"]}).get_json()
    assert body["mask"] == "Red circle"
    edge = mask_outline(mask.numpy().repeat(6, 0).repeat(6, 1))
    got = decode_data_uri(body["heatmaps"][0]["src"])
    assert edge.sum() > 0 and (got[edge] == [0, 255, 255]).all()
    outline = np.asarray(Image.open(io.BytesIO(base64.b64decode(body["heatmaps"][0]["outline"].split(",", 1)[1]))))
    assert np.array_equal(outline[..., 3] > 0, edge)
    # an upload, or a text that is not a concept of the dataset, has no mask
    body = client.post("/api/explain", json={"index": index, "concept": "zebra", "methods": ["gradcam"]}).get_json()
    assert body["mask"] is None and "outline" not in body["heatmaps"][0]


def test_any_concept_text_is_explained_and_bad_text_is_refused(client):
    # "unknown" to the concept bank is fine: any text is embedded by the sentence encoder
    r = client.post("/api/explain", json={"index": 0, "concept": "a zebra crossing in fog", "methods": ["gradcam"]})
    assert r.status_code == 200 and -1.0 <= r.get_json()["score"] <= 1.0
    for concept, needle in [("", "empty"), ("   ", "empty"), ("x" * 201, "at most 200"), (123, "must be a text"),
                            (None, "must be a text")]:
        r = client.post("/api/explain", json={"index": 0, "concept": concept, "methods": ["gradcam"]})
        assert r.status_code == 400 and needle in r.get_json()["error"], concept
    r = client.post("/api/explain", json={"index": 0, "concept": "red", "methods": ["gradcam", "nope"]})
    assert r.status_code == 400 and "'nope'" in r.get_json()["error"] and "scorecam" in r.get_json()["error"]
    r = client.post("/api/explain", json={"index": 0, "concept": "red", "methods": "gradcam"})
    assert r.status_code == 400 and "list" in r.get_json()["error"]
    r = client.post("/api/explain", data="index=0", content_type="application/x-www-form-urlencoded")
    assert r.status_code == 400 and "JSON" in r.get_json()["error"]


def test_an_unavailable_text_model_is_a_clear_503(client, monkeypatch):
    import xbyol.text.sentence_model

    def broken(model, texts, batch_size=64):
        raise OSError("no such model directory")

    monkeypatch.setattr(xbyol.text.sentence_model, "encode_texts", broken)
    r = client.post("/api/explain", json={"index": 0, "concept": "never asked before", "methods": ["gradcam"]})
    assert r.status_code == 503 and "text model is unavailable" in r.get_json()["error"]


def test_top_concepts_are_the_embedding_explanation(client, run):
    from xbyol.concepts import explain_embedding
    from xbyol.concepts.projection import concept_projection

    r = client.post("/api/concepts", json={"index": 5, "k": 3})
    expected = explain_embedding(run, run.dataset("test")[5]["image"][None], top_k=3)[0]
    body = r.get_json()
    got = body["concepts"]
    assert body["index"] == 5
    assert [c["concept"] for c in got] == [c for c, _ in expected]
    assert [c["weight"] for c in got] == pytest.approx([w for _, w in expected])
    assert body["uniform"] == pytest.approx(1 / len(concept_projection(run)[1]))  # the weight of "no preference"
    for k in (0, 51, "3", True, 2.5):
        r = client.post("/api/concepts", json={"index": 5, "k": k})
        assert r.status_code == 400 and "'k'" in r.get_json()["error"], k
    assert client.post("/api/concepts", json={"index": 999}).status_code == 404


def test_model_work_needs_a_same_origin_post(client, run, monkeypatch):
    """A GET (an <img> or link on any page) never runs the model; a cross-origin POST is refused."""
    import xbyol.web.explorer

    def forbidden(*a, **k):
        raise AssertionError("the model ran for a GET or a cross-origin request")

    monkeypatch.setattr(xbyol.web.explorer, "explain_embedding", forbidden)
    for path in ("/api/concepts/5", "/api/concepts/5?k=3", "/api/concepts", "/api/explain"):
        r = client.get(path)
        assert r.status_code in (404, 405) and r.is_json, path
    r = client.post("/api/concepts", json={"index": 5}, headers={"Origin": "http://evil.example"})
    assert r.status_code == 403


def test_typed_concepts_do_not_grow_the_disk_cache(client):
    import os

    cache = Path(os.environ["XBYOL_CACHE_DIR"])

    def files():
        return sorted(p for p in cache.rglob("*") if p.is_file()) if cache.exists() else []

    client.post("/api/explain", json={"index": 0, "concept": "warm up", "methods": ["gradcam"]})
    before = files()
    for i in range(5):
        r = client.post("/api/explain", json={"index": 0, "concept": f"a new concept number {i}", "methods": ["gradcam"]})
        assert r.status_code == 200
    assert files() == before
    explorer = client.application.extensions["xbyol_explorer"]
    assert explorer.text_model_loaded and "a new concept number 4" in explorer._targets


# ----------------------------------------------------------------------------- bad requests are 4xx


DEEP = "[" * 100_000 + "]" * 100_000


@pytest.mark.parametrize("method,path,kwargs,status,needle", [
    ("post", "/api/explain", {"data": DEEP, "content_type": "application/json"}, 400, "nested too deeply"),
    ("post", "/api/explain", {"data": '{"index": 0, "concept": ' + DEEP + "}", "content_type": "application/json"},
     400, "nested too deeply"),
    ("post", "/api/concepts", {"data": DEEP, "content_type": "application/json"}, 400, "nested too deeply"),
    ("post", "/api/explain", {"data": '{"index": 0', "content_type": "application/json"}, 400, "not valid JSON"),
    ("post", "/api/explain", {"data": "[1, 2]", "content_type": "application/json"}, 400, "JSON object"),
    ("get", "/api/images?page=\u00b2", {}, 400, "page"),  # superscript two: str.isdigit() is True, int() fails
    ("get", "/api/images?page=\u2460", {}, 400, "page"),  # circled one
    ("get", "/api/images?page=\u0661", {}, 400, "page"),  # Arabic-Indic one: int() accepts it, we do not
    ("get", "/api/images?page=99999999999999999999", {}, 400, "page"),
    ("post", "/api/concepts", {"json": {"index": 0, "k": "\u00b2"}}, 400, "'k'"),
    ("post", "/api/explain", {"json": {"index": 0, "concept": "red", "methods": ["cam"]}}, 422, "cam explains only"),
    ("post", "/api/explain", {"json": {"index": 0, "concept": "red", "methods": ["gradcam", "cam"]}}, 422, "LinearClassTarget"),
])
def test_bad_requests_answer_4xx_with_a_message(client, method, path, kwargs, status, needle):
    path = path.encode().decode("unicode_escape")
    r = getattr(client, method)(path, **kwargs)
    assert r.status_code == status, (path, r.status_code, r.get_data(as_text=True)[:200])
    assert needle in r.get_json()["error"]


@pytest.mark.parametrize("path", ["/img/\u0661.png", "/img/\u00b2.png", "/img/99999999999999999999999.png",
                                  "/img/upload/\u00b2.png", "/api/images?page=", "/api/images?page=%00"])
def test_odd_paths_never_answer_500(client, path):
    r = client.get(path.encode().decode("unicode_escape"))
    assert r.status_code < 500 and (r.status_code == 200 or "error" in r.get_json())


def test_the_method_list_offers_only_methods_that_can_explain_a_concept(client, run):
    info = client.get("/api/info").get_json()
    assert "cam" in info["methods"] and "cam" in info["unsupported_methods"]
    assert "LinearClassTarget" in info["unsupported_methods"]["cam"]
    assert set(info["unsupported_methods"]) == {"cam"}  # every other method explains any target
    assert info["target_free_methods"] == ["eigencam"]
    page = client.get("/").get_data(as_text=True)
    assert 'value="cam" disabled' in page and 'value="gradcam" checked' in page
    explorer = create_app(run, methods=["cam", "gradcam"]).extensions["xbyol_explorer"]
    assert explorer.methods == ["gradcam"]  # a default that cannot explain a concept is not ticked


# ----------------------------------------------------------------------------- uploads


def test_an_upload_is_decoded_in_memory_and_explained(client, app, trained_run, monkeypatch):
    before = sorted(p.relative_to(trained_run) for p in trained_run.rglob("*"))
    tmp_before = set(Path(tempfile.gettempdir()).iterdir())

    def no_temp_files(*a, **k):
        raise AssertionError("an upload must not be spooled to a temporary file")

    for name in ("TemporaryFile", "NamedTemporaryFile", "SpooledTemporaryFile", "mkstemp"):
        monkeypatch.setattr(tempfile, name, no_temp_files)
    noise = np.random.default_rng(0).integers(0, 256, (600, 600, 3), dtype=np.uint8)  # ~1 MB PNG
    buf = io.BytesIO()
    Image.fromarray(noise).save(buf, format="PNG")
    assert buf.tell() > 1_000_000
    r = upload(client, buf.getvalue(), filename="../../evil.png")
    monkeypatch.undo()
    assert r.status_code == 201, r.get_json()
    body = r.get_json()
    uid = body["upload"]
    assert len(uid) == 32 and body["url"] == f"/img/upload/{uid}.png" and len(body["concepts"]) == 5
    assert 0 < body["uniform"] < 1
    stored = app.extensions["xbyol_explorer"].uploads[uid]
    assert stored.shape == (3, 32, 32) and stored.dtype == torch.uint8
    img = np.asarray(Image.open(io.BytesIO(client.get(body["url"]).data)))
    assert np.array_equal(img, stored.permute(1, 2, 0).numpy())
    r = client.post("/api/explain", json={"upload": uid, "concept": "blue square", "methods": ["gradcampp"]})
    assert r.status_code == 200 and r.get_json()["upload"] == uid
    assert client.post("/api/concepts", json={"upload": uid}).get_json()["upload"] == uid
    # nothing was written: not in the run directory, not as a temporary file
    assert sorted(p.relative_to(trained_run) for p in trained_run.rglob("*")) == before
    assert not [p for p in set(Path(tempfile.gettempdir()).iterdir()) - tmp_before if "evil" in p.name]


def test_upload_resizes_like_the_datasets(client, app):
    # 64x32, left half red, right half blue: shorter side -> 32, centre crop keeps the middle 32 columns
    im = Image.new("RGB", (64, 32), (255, 0, 0))
    im.paste((0, 0, 255), (32, 0, 64, 32))
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    uid = upload(client, buf.getvalue()).get_json()["upload"]
    stored = app.extensions["xbyol_explorer"].uploads[uid]
    assert stored[:, 0, 0].tolist() == [255, 0, 0] and stored[:, 0, 31].tolist() == [0, 0, 255]


@pytest.mark.parametrize("data,filename,mimetype,status,needle", [
    (b"hello, this is text", "x.png", "image/png", 415, "not an image"),
    (b"<svg xmlns='http://www.w3.org/2000/svg'/>", "x.svg", "image/svg+xml", 415, "not an image"),
    (b"%PDF-1.4\n", "x.pdf", "application/pdf", 415, "not an image"),
    (b"", "x.png", "image/png", 400, "empty"),
    (png_bytes()[:60], "x.png", "image/png", 400, "truncated or corrupt"),
    (png_bytes()[:20], "x.png", "image/png", 400, "starts like a PNG image but is truncated or corrupt"),
    (png_bytes()[:4], "x.png", "image/png", 400, "starts like a PNG image but is truncated or corrupt"),
    (jpeg_bytes()[:40], "x.jpg", "image/jpeg", 400, "truncated or corrupt"),
    (b"GIF89a\x10", "x.gif", "image/gif", 400, "starts like a GIF image"),
    (png_header(5000, 5000), "big.png", "image/png", 400, "at most 16000000"),
    (png_bomb(), "bomb.png", "image/png", 400, "decompression bomb"),
])
def test_bad_uploads_are_refused_with_json(client, data, filename, mimetype, status, needle):
    r = upload(client, data, filename, mimetype)
    assert r.status_code == status, r.get_json()
    assert needle in r.get_json()["error"]


def test_too_large_and_malformed_upload_requests(client):
    r = upload(client, b"\0" * (5 * 1024 * 1024 + 1))
    assert r.status_code == 413 and "limit of 5.0 MB (5242880 bytes)" in r.get_json()["error"]
    r = client.post("/api/upload", data={"file": (io.BytesIO(png_bytes()), "x.png")}, content_type="multipart/form-data")
    assert r.status_code == 400 and "'image'" in r.get_json()["error"]


def test_concurrent_uploads_run_at_most_two_decodes_at_once(app, monkeypatch):
    import concurrent.futures
    import time as time_module

    import xbyol.web.uploads as uploads

    running, peak, lock = [0], [0], threading.Lock()
    real = uploads.decode_image

    def counted(*args, **kwargs):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        try:
            time_module.sleep(0.05)  # long enough for the other requests to pile up
            return real(*args, **kwargs)
        finally:
            with lock:
                running[0] -= 1

    monkeypatch.setattr(uploads, "decode_image", counted)
    assert app.extensions["xbyol_explorer"].decode.max_concurrent == 2
    data = png_bytes(800, 600)
    with serving(app) as url, concurrent.futures.ThreadPoolExecutor(8) as pool:
        import urllib.request

        def post(_):
            boundary = "xbyolboundary"
            body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"x.png\"\r\n"
                    "Content-Type: image/png\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
            req = urllib.request.Request(f"{url}/api/upload", data=body, method="POST",
                                         headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
            with urllib.request.urlopen(req, timeout=120) as r:
                return r.status

        assert list(pool.map(post, range(8))) == [201] * 8
    assert peak[0] == 2  # eight server threads, two decodes at a time


def test_the_upload_store_is_bounded(run):
    c = create_app(run, methods=["gradcam"], max_uploads=2).test_client()
    ids = [upload(c, png_bytes(colour=(i, 0, 0))).get_json()["upload"] for i in range(3)]
    assert c.get(f"/img/upload/{ids[0]}.png").status_code == 404
    assert all(c.get(f"/img/upload/{u}.png").status_code == 200 for u in ids[1:])


def test_foreign_hosts_and_cross_origin_posts_are_refused(client):
    r = client.get("/", base_url="http://evil.example")  # DNS rebinding
    assert r.status_code == 400 and "evil.example" in r.get_json()["error"]
    for base in ("http://127.0.0.2:8000", "http://[::2]:8000", "http://localhost.evil.example"):
        assert client.get("/api/info", base_url=base).status_code == 400, base
    ok = {"index": 0, "concept": "red", "methods": ["gradcam"]}
    r = client.post("/api/explain", json=ok, headers={"Origin": "http://evil.example"})
    assert r.status_code == 403 and "cross-origin" in r.get_json()["error"]
    assert upload(client, png_bytes()).status_code == 201
    assert client.post("/api/explain", json=ok, headers={"Origin": "http://localhost"}).status_code == 200


def test_ipv6_loopback_is_served(app):
    """Bound to ::1, the explorer answers requests whose Host is [::1]:port (Werkzeug's own check never matched it)."""
    import json
    import urllib.request

    from werkzeug.serving import make_server

    server = make_server("::1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://[::1]:{server.server_port}"
        with urllib.request.urlopen(f"{url}/api/info", timeout=30) as r:
            assert r.status == 200 and json.loads(r.read())["test_images"] == 128
        req = urllib.request.Request(f"{url}/api/concepts", data=b'{"index": 1}', method="POST",
                                     headers={"Content-Type": "application/json", "Origin": url})
        with urllib.request.urlopen(req, timeout=60) as r:
            assert r.status == 200 and len(json.loads(r.read())["concepts"]) == 5
    finally:
        server.shutdown()
        thread.join(timeout=10)
    client = app.test_client()
    assert client.get("/api/info", base_url="http://[::1]:8000").status_code == 200
    assert client.get("/api/info", base_url="http://[::1]").status_code == 200
    assert client.get("/api/info", base_url="http://LOCALHOST:8000").status_code == 200


# ----------------------------------------------------------------------------- the command


def test_serve_binds_loopback_by_default(trained_run, monkeypatch, capsys):
    import flask

    calls = []
    monkeypatch.setattr(flask.Flask, "run", lambda self, **kw: calls.append((self, kw)))
    assert main(["serve", str(trained_run)]) == 0
    app, kw = calls[-1]
    assert kw["host"] == "127.0.0.1" and kw["port"] == 8000 and kw["debug"] is False
    assert app.config["XBYOL_TRUSTED_HOSTS"] == {"127.0.0.1", "localhost", "::1"}
    assert "http://127.0.0.1:8000/" in capsys.readouterr().out
    for host in ("::1", "[::1]"):
        assert main(["serve", str(trained_run), "--host", host]) == 0
        app, kw = calls[-1]
        assert kw["host"] == "::1" and app.config["XBYOL_TRUSTED_HOSTS"] == {"127.0.0.1", "localhost", "::1"}
        captured = capsys.readouterr()
        assert "http://[::1]:8000/" in captured.out and "warning" not in captured.err
    assert main(["serve", str(trained_run), "--host", "0.0.0.0", "--port", "8123"]) == 0
    app, kw = calls[-1]
    assert kw["host"] == "0.0.0.0" and app.config["XBYOL_TRUSTED_HOSTS"] is None
    assert "warning" in capsys.readouterr().err
    assert main(["serve", str(trained_run), "--port", "70000"]) == 2
    assert "--port" in capsys.readouterr().err


# ----------------------------------------------------------------------------- in a browser


@contextlib.contextmanager
def serving(app):
    """``app`` on a threaded local server; yields its URL."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)


@pytest.fixture
def live_server(app):
    with serving(app) as url:
        yield url


@pytest.mark.browser
def test_explorer_in_chromium(live_server, browser, artifacts_dir):
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(live_server + "/")
    expect(page.locator("#thumbs img")).to_have_count(24)
    expect(page.locator("#top-concepts li")).to_have_count(5, timeout=30_000)
    page.fill("#concept", "yellow triangle")
    page.click("#explain")
    heatmaps = page.locator("#results img.heatmap")
    expect(heatmaps).to_have_count(len(METHODS), timeout=60_000)
    loaded = heatmaps.evaluate_all("els => els.map(i => [i.dataset.method, i.complete, i.naturalWidth])")
    assert loaded == [[m, True, 192] for m in METHODS]
    expect(page.locator("#status")).to_contain_text("cosine with the image")
    page.screenshot(path=str(artifacts_dir / "explorer.png"), full_page=True)

    # the same for an uploaded image
    page.set_input_files("#upload-file", files=[{"name": "mine.png", "mimeType": "image/png", "buffer": png_bytes()}])
    page.click("#upload")
    expect(page.locator("#selected-title")).to_have_text("your image", timeout=30_000)
    page.locator("#top-concepts button").first.click()  # explain its top concept
    expect(page.locator("#status")).to_contain_text("cosine with the image", timeout=60_000)
    widths = page.locator("#results img.heatmap").evaluate_all("els => els.map(i => i.naturalWidth)")
    assert widths == [192] * len(METHODS)
    page.screenshot(path=str(artifacts_dir / "explorer-upload.png"), full_page=True)
    page.close()
    assert errors == []


def open_explorer(browser, live_server):
    """A page on the explorer with image 0's top concepts shown; returns (page, console errors, failed requests)."""
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    failed: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("requestfailed", lambda r: failed.append(r.url))
    page.goto(live_server + "/")
    expect(page.locator("#top-concepts li")).to_have_count(5, timeout=30_000)
    return page, errors, failed


def hold(page, pattern: str) -> list:
    """Hold the next request matching ``pattern`` until the test calls ``.continue_()`` on it; later ones pass."""
    held: list = []
    page.route(pattern, lambda route, request: route.continue_() if held else held.append(route))
    return held


@pytest.mark.browser
def test_a_late_answer_for_another_image_is_dropped(live_server, browser, artifacts_dir):
    from playwright.sync_api import expect

    page, errors, failed = open_explorer(browser, live_server)
    held = hold(page, "**/api/explain")
    page.fill("#concept", "red")
    page.click("#explain")
    page.wait_for_function("document.getElementById('explain').disabled")
    expect(page.locator("#status")).to_contain_text('explaining "red"')
    assert len(held) == 1
    page.locator("#thumbs button").nth(7).click()  # pick image 7 while image 0 is being explained
    expect(page.locator("#selected-title")).to_have_text("test image 7")
    expect(page.locator("#top-concepts li")).to_have_count(5, timeout=30_000)
    with page.expect_response("**/api/explain") as answer:
        held[0].continue_()  # image 0's answer arrives now
    assert answer.value.ok and answer.value.json()["index"] == 0
    page.wait_for_timeout(300)
    expect(page.locator("#results img.heatmap")).to_have_count(0)  # not shown under "test image 7"
    expect(page.locator("#selected-title")).to_have_text("test image 7")
    assert "cosine" not in page.locator("#status").inner_text()
    # explaining image 7 now shows image 7's answer
    with page.expect_response("**/api/explain") as answer:
        page.click("#explain")
    assert answer.value.json()["index"] == 7
    expect(page.locator("#results img.heatmap")).to_have_count(len(METHODS), timeout=60_000)
    page.screenshot(path=str(artifacts_dir / "explorer-after-race.png"), full_page=True)
    page.close()
    assert errors == [] and failed == []


@pytest.mark.browser
def test_an_error_clears_the_old_results(live_server, browser):
    from playwright.sync_api import expect

    page, errors, failed = open_explorer(browser, live_server)
    page.fill("#concept", "blue")
    page.click("#explain")
    expect(page.locator("#results img.heatmap")).to_have_count(len(METHODS), timeout=60_000)
    page.route("**/api/explain", lambda route, request: route.fulfill(
        status=422, content_type="application/json", body='{"error": "cannot explain this", "status": 422}'))
    page.fill("#concept", "green")
    page.click("#explain")
    expect(page.locator("#status")).to_have_text("cannot explain this")
    expect(page.locator("#status")).to_have_class("error")
    expect(page.locator("#results img")).to_have_count(0)
    page.close()
    # the 422 shows in the console as a failed resource load, which is the page's intended error path
    assert [e for e in errors if "422" not in e] == [] and failed == []


@pytest.mark.browser
def test_the_method_list_and_the_display_controls(run, browser, artifacts_dir):
    with serving(create_app(run, methods=METHODS)) as url:  # a fresh explorer: no concept text embedded yet
        page, errors, failed = open_explorer(browser, url)
        controls(page, artifacts_dir)
    assert errors == [] and failed == []


def controls(page, artifacts_dir) -> None:
    from playwright.sync_api import expect

    cam = page.locator('#methods input[value="cam"]')
    expect(cam).to_be_disabled()
    assert "LinearClassTarget" in page.locator("#methods label.unsupported").get_attribute("title")
    expect(page.locator("#methods")).to_contain_text("ignores the concept text")
    assert page.locator("#selected-truth").inner_text().startswith("ground-truth concepts: ")
    assert "100/" in page.locator("#uniform-level").inner_text()
    assert "x uniform" in page.locator("#top-concepts li").first.inner_text()
    # a concept text the dataset does not name: the page says the text model is loading
    held = hold(page, "**/api/explain")
    page.fill("#concept", "a mauve thing never typed before")
    page.click("#explain")
    expect(page.locator("#status")).to_contain_text("loading the text model")
    held[0].continue_()
    expect(page.locator("#results img.heatmap")).to_have_count(len(METHODS), timeout=60_000)
    expect(page.locator("#colorbar")).to_be_visible()
    page.fill("#opacity", "30")
    page.dispatch_event("#opacity", "input")
    opacities = page.locator("#results img.heatmap").evaluate_all("els => els.map(i => i.style.opacity)")
    assert opacities == ["0.3"] * len(METHODS)
    expect(page.locator("#opacity-value")).to_have_text("30%")
    # a known concept with a mask in this image: its outline is drawn
    truth = page.locator("#selected-truth").inner_text().removeprefix("ground-truth concepts: ").split(", ")
    page.fill("#concept", truth[0])
    page.click("#explain")
    expect(page.locator("#mask-note")).to_contain_text(f'ground-truth mask of "{truth[0]}"', timeout=60_000)
    expect(page.locator("#results img.outline")).to_have_count(len(METHODS))
    page.screenshot(path=str(artifacts_dir / "explorer-controls.png"), full_page=True)
    page.close()


@pytest.mark.browser
def test_an_upload_while_explaining_drops_the_old_answer(live_server, browser, artifacts_dir):
    from playwright.sync_api import expect

    page, errors, failed = open_explorer(browser, live_server)
    held = hold(page, "**/api/explain")
    page.fill("#concept", "red")
    page.click("#explain")
    page.wait_for_function("document.getElementById('explain').disabled")
    page.set_input_files("#upload-file", files=[{"name": "wide.png", "mimeType": "image/png",
                                                   "buffer": png_bytes(96, 32, (20, 160, 40))}])
    page.click("#upload")
    expect(page.locator("#selected-title")).to_have_text("your image", timeout=30_000)
    expect(page.locator("#selected-info")).to_contain_text("centre-cropped")
    expect(page.locator("#explain")).to_be_enabled()
    with page.expect_response("**/api/explain") as answer:
        held[0].continue_()
    assert answer.value.json()["index"] == 0
    page.wait_for_timeout(300)
    expect(page.locator("#results img.heatmap")).to_have_count(0)
    with page.expect_response("**/api/explain") as answer:
        page.click("#explain")
    assert "upload" in answer.value.json()
    expect(page.locator("#results img.heatmap")).to_have_count(len(METHODS), timeout=60_000)
    page.screenshot(path=str(artifacts_dir / "explorer-upload-race.png"), full_page=True)
    page.close()
    assert errors == [] and failed == []
