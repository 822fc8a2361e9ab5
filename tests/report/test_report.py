"""``xbyol report`` on tiny trained runs: a bare run, a fully evaluated one, the CLI, a real browser."""

from __future__ import annotations

import json
import shutil
from html import unescape
from html.parser import HTMLParser
from pathlib import Path

import pytest

from xbyol.cli import main
from xbyol.data.sampling import dataset_labels, stratified_indices
from xbyol.report import ReportOptions, build_sections, render_html, write_report
from xbyol.report.blocks import Figure, Gallery, ImageGrid, Table

FAST = dict(gallery_images=2, methods=["gradcam"], embedding_map="pca", progress=False)


class _Assets(HTMLParser):
    """Every URL-bearing attribute and every tag of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[tuple[str, str, str]] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        for k, v in attrs:
            if k in ("src", "href", "srcset", "action", "data", "poster") and v is not None:
                self.urls.append((tag, k, v))


def assert_self_contained(html: str) -> _Assets:
    """No network and no side files: images are data: URIs, no external script/style/font."""
    p = _Assets()
    p.feed(html)
    assert "script" not in p.tags and "link" not in p.tags and "iframe" not in p.tags
    for tag, attr, url in p.urls:
        if tag == "a" and attr == "href":
            assert url.startswith("#"), url  # only in-page links
        else:
            assert url.startswith("data:image/png;base64,"), (tag, attr, url[:60])
    assert "url(" not in html and "@import" not in html and "http://" not in html and "https://" not in html
    return p


def _by_id(sections):
    return {s.id: s for s in sections}


def _bare_copy(src: Path, dst: Path, checkpoint: bool) -> Path:
    dst.mkdir()
    for name in ("config.yaml", "metrics.csv"):
        shutil.copy(src / name, dst / name)
    if checkpoint:
        (dst / "checkpoints").mkdir()
        shutil.copy(src / "checkpoints" / "last.pt", dst / "checkpoints" / "last.pt")
    return dst


def test_a_run_with_only_a_training_log_renders(trained_run, tmp_path):
    d = _bare_copy(trained_run, tmp_path / "log-only", checkpoint=False)
    a, sections = build_sections(d, ReportOptions(progress=False, strict=True))
    html = render_html(a, sections)
    assert_self_contained(html)
    assert "could not render" not in html
    s = _by_id(sections)
    assert list(s) == ["run", "training", "views", "evaluation", "concepts", "retrieval", "embedding-map", "neighbours",
                       "gallery", "dissection"]
    assert isinstance(s["training"].blocks[0], Figure) and s["training"].missing is None
    assert s["evaluation"].missing == f"not computed: run `xbyol eval {d}` (writes eval.json)."
    assert f"`xbyol dissect {d}`" in s["dissection"].missing
    assert "checkpoints/last.pt is missing" in s["embedding-map"].missing
    gallery_text = " ".join(b.text for b in s["gallery"].blocks)
    assert f"`xbyol explain-eval {d}`" in gallery_text and "checkpoints/last.pt is missing" in gallery_text
    for sid in ("evaluation", "concepts", "embedding-map", "dissection", "views", "neighbours"):
        assert s[sid].missing and s[sid].missing in unescape(html)


@pytest.mark.slow
def test_a_run_with_log_and_checkpoint_renders_the_model_sections(trained_run, tmp_path):
    from xbyol.config import DataCfg
    from xbyol.data import create_dataset

    d = _bare_copy(trained_run, tmp_path / "bare", checkpoint=True)
    _, sections = build_sections(d, ReportOptions(**FAST, strict=True))
    s = _by_id(sections)
    assert s["embedding-map"].missing is None and isinstance(s["embedding-map"].blocks[0], Figure)
    gallery = next(b for b in s["gallery"].blocks if isinstance(b, Gallery))
    assert gallery.methods == ["gradcam"] and gallery.colorbar.startswith("data:image/png;base64,")
    # two images of different labels; each row is one of the image's shape or colour concepts
    test = create_dataset(DataCfg(name="shapes", num_train=256, num_test=128, image_size=32), "test")
    chosen = stratified_indices(dataset_labels(test), 2)
    assert len({int(test[i]["label"]) for i in chosen}) == 2
    assert [g.title for g in gallery.images] == [f"test image {i}" for i in chosen]
    for item, index in zip(gallery.images, chosen):
        has = test[index]["concepts"]
        expected = [n for i, n in enumerate(test.concept_names)
                    if has[i] and i in test.concept_groups["shape"] + test.concept_groups["colour"]]
        assert [r.concept for r in item.rows] == expected[:3]
        for r in item.rows:
            assert -1.0 <= r.score <= 1.0 and len(r.cells) == 1 and r.cells[0].startswith("data:image/png;base64,")
    assert s["evaluation"].missing is not None and s["concepts"].missing is not None
    # one figure per colouring: label, then the concept groups that do not repeat it
    assert [b.alt for b in s["embedding-map"].blocks] == [
        "embedding map coloured by label", "embedding map coloured by shape", "embedding map coloured by colour"]
    views = next(b for b in s["views"].blocks if isinstance(b, ImageGrid))
    assert views.columns[:3] == ["original", "view 1", "view 2"] and len(views.rows) == 4
    grid = next(b for b in s["neighbours"].blocks if isinstance(b, ImageGrid))
    assert len(grid.rows) == 2 * 4 and len(grid.rows[0].cells) == 1 + 5
    assert [r.label.split(", ")[1] for r in grid.rows[:2]] == ["trained", "random init"]


def _evaluate_everything(run_dir: Path) -> None:
    from xbyol.eval.evaluate import evaluate
    from xbyol.explain.dissection_run import dissect_run
    from xbyol.explain.evaluation import explain_eval
    from xbyol.run import load_run

    evaluate(run_dir, progress=False)
    run = load_run(run_dir)
    dissect_run(run, progress=False, top_units=2, top_images=2)
    explain_eval(run, methods=["gradcam"], n_images=2, n_robust=1, sensitivity_samples=1, progress=False)


@pytest.fixture(scope="module")
def full_report(trained_run, tmp_path_factory):
    """The tiny run after eval, dissect and explain-eval, reported beside a baseline copy of itself."""
    _evaluate_everything(trained_run)
    baseline = tmp_path_factory.mktemp("baseline") / "twin"
    baseline.mkdir()
    shutil.copy(trained_run / "config.yaml", baseline / "config.yaml")
    shutil.copy(trained_run / "eval.json", baseline / "eval.json")
    opts = ReportOptions(**FAST, baselines=[baseline], strict=True)
    a, sections = build_sections(trained_run, opts)
    out = write_report(trained_run, tmp_path_factory.mktemp("out") / "report.html", opts)
    return trained_run, _by_id(sections), out


def _table(section, first_column):
    return next(b for b in section.blocks if isinstance(b, Table) and b.columns[0] == first_column)


@pytest.mark.slow
def test_full_report_shows_every_computed_result(full_report):
    run_dir, s, out = full_report
    ev = json.loads((run_dir / "eval.json").read_text())
    assert all(sec.missing is None and sec.error is None for k, sec in s.items() if k != "retrieval")
    assert "no text tower" in s["retrieval"].missing  # a byol run

    t = _table(s["evaluation"], "metric")
    assert t.columns == ["metric", "byol (this run)", "random init", "this run - random init", "byol (twin)"]
    assert t.rows[0] == ["linear probe accuracy", ev["trained"]["linear_probe"], ev["random_init"]["linear_probe"],
                         pytest.approx(ev["trained"]["linear_probe"] - ev["random_init"]["linear_probe"]),
                         ev["trained"]["linear_probe"]]
    assert t.rows[2][0].startswith("chance") and 0 < t.rows[2][1] < 1
    # the probe confusion matrix agrees with eval.json's linear-probe accuracy
    per_class = _table(s["evaluation"], "class")
    correct = sum(round(n * recall) for _, n, recall, _ in per_class.rows)
    assert correct / sum(n for _, n, _, _ in per_class.rows) == pytest.approx(ev["trained"]["linear_probe"], abs=1e-9)
    assert any(isinstance(b, Figure) and b.alt == "probe confusion matrix" for b in s["evaluation"].blocks)

    c = ev["concepts"]
    scs = _table(s["concepts"], "metric")
    assert scs.rows[0][:2] == ["SCS (match)", c["scs"]]
    acc = _table(s["concepts"], "group")
    assert acc.rows[0] == ["shape", c["concept_accuracy"]["shape"], c["concept_accuracy"]["shape_chance"],
                           c["concept_accuracy"]["shape"]]
    sscs = next(b for b in s["concepts"].blocks if isinstance(b, Table) and b.caption.startswith("SSCS"))
    assert [r[0] for r in sscs.rows] == list(c["sscs"])
    assert sscs.rows[-1][1] == c["sscs"]["mean"]
    confusion = [b for b in s["concepts"].blocks if isinstance(b, Figure) and b.alt.startswith("concept confusion")]
    assert len(confusion) == 4  # shape, colour, size, position

    xe = json.loads((run_dir / "explain_eval.json").read_text())
    metrics = _table(s["gallery"], "method")
    assert metrics.rows[0][0] == "gradcam"
    assert metrics.rows[0][1] == xe["methods"]["gradcam"]["pointing_game"]

    summary = json.loads(next((run_dir / "dissect").rglob("summary.json")).read_text())
    kv = dict(next(b for b in s["dissection"].blocks if hasattr(b, "items")).items)
    assert kv["detector units"] == summary["detectors"] and kv["units"] == summary["units"]
    assert kv["unique concepts (release rule)"] == summary["unique_release"]
    assert any(isinstance(b, Figure) and b.caption.endswith("top_units.png") for b in s["dissection"].blocks)

    html = out.read_text()
    assert_self_contained(html)
    assert f"{ev['trained']['linear_probe']:.4f}" in html and "could not render" not in html


def test_a_malformed_file_costs_one_section_not_the_report(trained_run, tmp_path):
    d = _bare_copy(trained_run, tmp_path / "broken", checkpoint=False)
    (d / "eval.json").write_text("{not json")
    with pytest.raises(ValueError, match="eval.json is not valid JSON"):
        build_sections(d, ReportOptions(progress=False, strict=True))
    _, sections = build_sections(d, ReportOptions(progress=False))
    s = _by_id(sections)
    for sid in ("evaluation", "concepts", "retrieval"):
        assert "eval.json is not valid JSON" in s[sid].error and s[sid].missing is None
    assert s["training"].error is None and isinstance(s["training"].blocks[0], Figure)


def test_report_command(trained_run, tmp_path, capsys):
    d = _bare_copy(trained_run, tmp_path / "cli", checkpoint=False)
    assert main(["report", str(d), "--no-progress"]) == 0
    assert (d / "report.html").is_file() and f"written: {d / 'report.html'}" in capsys.readouterr().out
    out = tmp_path / "mail" / "r.html"
    assert main(["report", str(d), "--out", str(out), "--images", "0", "--map", "none", "--no-progress"]) == 0
    assert out.is_file() and f"written: {out}" in capsys.readouterr().out
    assert main(["report", str(d), "--methods", "gradcam,nope", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "unknown explainer(s) 'nope'" in err and "gradcam" in err
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    for flags, needle in ((["--smoothing", "1.5"], "--smoothing must be in [0, 1)"), (["--views", "-1"], "--views must be >= 0"),
                          (["--k-neighbours", "0"], "--k-neighbours must be in 1..50")):
        assert main(["report", str(d), "--no-progress", *flags]) == 2
        assert needle in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.browser
def test_report_opens_in_chromium_with_every_image_loaded(full_report, browser, artifacts_dir):
    _, _, out = full_report
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(out.as_uri(), wait_until="load")
    state = page.locator("img").evaluate_all("els => els.map(i => [i.complete, i.naturalWidth])")
    assert len(state) >= 10
    assert all(done and width > 0 for done, width in state), state
    assert page.locator("section#gallery table.gallery-grid").count() == 2
    assert page.locator("section#gallery .colorbar img").count() == 1
    assert page.locator("section#views table.image-grid img").count() == 4 * 5
    assert page.locator("section#neighbours table.image-grid img").count() == 8 * 6
    assert page.locator("section#neighbours img.same, section#neighbours img.other").count() == 8 * 5
    # nothing was fetched but the file itself (data: URIs are not requests to a server)
    assert [u for u in requests if not u.startswith(("file://", "data:"))] == []
    page.screenshot(path=str(artifacts_dir / "report.png"), full_page=True)
    page.close()
    assert errors == []
