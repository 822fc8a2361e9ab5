"""Report building blocks without a model: readers, formatting, sections from hand-made files."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from xbyol.report.artifacts import RunArtifacts, read_metrics
from xbyol.report.blocks import KeyValues, Note, Table, flatten, format_value
from xbyol.report.context import Baseline
from xbyol.report.sections.dissection import dissection_section
from xbyol.report.sections.evaluation import evaluation_section
from xbyol.report.sections.gallery import explain_metrics_blocks
from xbyol.report.sections.retrieval import retrieval_section
from xbyol.report.sections.run import format_duration
from xbyol.report.sections.training import collapse_warnings, ema, training_panels


def _run_dir(tmp_path: Path) -> Path:
    from xbyol.config import from_dict, save

    d = tmp_path / "run"
    d.mkdir()
    save(from_dict({}, {"name": "hand", "out_dir": str(tmp_path)}), d / "config.yaml")
    return d


def test_format_value_and_duration():
    assert format_value(0.123456) == "0.1235"
    assert format_value(float("nan")) == "n/a"
    assert format_value(None) == "-"
    assert format_value(True) == "yes"
    assert format_value(3.0) == "3"
    assert format_value(6.7e-05) == "6.7e-05"
    assert format_value(12345.6) == "1.235e+04"
    assert format_value([0.5, 2]) == "0.5000, 2"
    assert format_duration(3725.2) == "1 h 02 min 05 s"
    assert format_duration(65) == "1 min 05 s"
    assert format_duration(8.24) == "8.2 s"
    assert format_duration(None) == "-"


def test_flatten_nested_dicts():
    assert flatten({"a": {"b": 1, "c": {"d": 2}}, "e": [1, 2]}) == {"a.b": 1, "a.c.d": 2, "e": [1, 2]}


def test_metrics_csv_with_a_growing_header_reads_nan_for_missing_cells(tmp_path):
    p = tmp_path / "metrics.csv"
    p.write_text("step,loss,lr,projection_std,projection_std_healthy\n1,4.0,0.1,,\n2,3.5,0.05,0.12,0.17\n")
    cols = read_metrics(p)
    assert cols["step"] == [1.0, 2.0]
    assert cols["loss"] == [4.0, 3.5]
    assert math.isnan(cols["projection_std"][0]) and cols["projection_std"][1] == 0.12
    panels = training_panels(cols)
    titles = [p["title"] for p in panels]
    assert titles[0] == "loss" and "learning rate" in titles
    std = next(p for p in panels if p["title"].startswith("collapse: embedding std"))
    # the monitor skips the NaN row; the healthy level is the dashed reference line
    assert std["lines"][0]["x"] == [2.0] and std["lines"][0]["y"] == [0.12]
    assert std["lines"][1]["style"] == "--" and std["lines"][1]["label"] == "projection isotropic 1/sqrt(d)"
    assert read_metrics(tmp_path / "absent.csv") is None


def test_bad_metrics_csv_names_the_file(tmp_path):
    p = tmp_path / "metrics.csv"
    p.write_text("loss\n1\n")
    with pytest.raises(ValueError, match="metrics.csv.*'step'"):
        read_metrics(p)


def test_evaluation_section_puts_baselines_beside_the_run(tmp_path):

    d = _run_dir(tmp_path)
    (d / "eval.json").write_text(json.dumps({
        "step": 10, "trained": {"linear_probe": 0.8, "knn": 0.7}, "random_init": {"linear_probe": 0.3, "knn": 0.25},
        "eval_seconds": 3.0, "custom": {"a": {"b": 0.5}},
    }))
    a = RunArtifacts.read(d)
    base = Baseline("clip (other)", {"trained": {"linear_probe": 0.6, "knn": 0.55}}, tmp_path / "other")
    sec = evaluation_section(a, [base], checkpoint_step=12)
    table = next(b for b in sec.blocks if isinstance(b, Table) and b.columns[0] == "metric")
    assert table.columns == ["metric", "byol (this run)", "random init", "this run - random init", "clip (other)"]
    assert table.rows == [["linear probe accuracy", 0.8, 0.3, pytest.approx(0.5), 0.6],
                          ["kNN accuracy", 0.7, 0.25, pytest.approx(0.45), 0.55]]
    assert not [b for b in sec.blocks if isinstance(b, Note) and b.level == "warning"]
    # a stale eval.json is called out; an unknown evaluator is shown generically
    assert any(isinstance(b, Note) and "step 10" in b.text and "step 12" in b.text for b in sec.blocks)
    generic = next(b for b in sec.blocks if isinstance(b, Table) and b.caption == "evaluator: custom")
    assert generic.rows == [["a.b", 0.5]]


def test_retrieval_section_shows_chance_and_cross_modal_baselines_only(tmp_path):

    d = _run_dir(tmp_path)
    i2t = {"R@1": 0.5, "chance_R@1": 0.1, "median_rank": 2.0, "chance_median_rank": 5.0, "queries": 10.0, "gallery": 9.0}
    t2i = {"R@1": 0.4, "chance_R@1": 0.1, "median_rank": 3.0, "chance_median_rank": 5.0, "queries": 12.0, "gallery": 10.0}
    (d / "eval.json").write_text(json.dumps({"retrieval": {"image_to_text": i2t, "text_to_image": t2i,
                                                           "embeddings": {"image_std": 0.05}}}))
    clip = Baseline("clip (c)", {"retrieval": {"image_to_text": {"R@1": 0.3}, "text_to_image": {"R@1": 0.2}}}, tmp_path)
    byol = Baseline("byol (b)", {"trained": {"knn": 0.5}}, tmp_path)
    sec = retrieval_section(RunArtifacts.read(d), [clip, byol])
    t = sec.blocks[0]
    assert t.columns == ["metric", "image to text", "chance", "text to image", "chance", "clip (c) image to text",
                         "clip (c) text to image"]
    assert t.rows[0] == ["R@1", 0.5, 0.1, 0.4, 0.1, 0.3, 0.2]
    assert t.rows[1] == ["median_rank", 2.0, 5.0, 3.0, 5.0, None, None]
    assert t.rows[2][:5] == ["queries", 10.0, None, 12.0, None]
    assert sec.blocks[1].items == [("image_std", 0.05)]
    (d / "eval.json").write_text(json.dumps({"trained": {"knn": 0.5}}))
    assert "no text tower" in retrieval_section(RunArtifacts.read(d)).missing


def test_explain_metrics_table_marks_the_better_direction(tmp_path):
    d = _run_dir(tmp_path)
    (d / "explain_eval.json").write_text(json.dumps({
        "protocol": {"pairs": 8},
        "methods": {"gradcam": {"pointing_game": 0.5, "deletion_auc": 0.1, "randomization_corr": 0.2, "ms_per_image": 3.0},
                    "saliency": {"pointing_game": 0.25, "deletion_auc": 0.3, "randomization_corr": 0.9, "ms_per_image": 1.0}},
    }))
    blocks = explain_metrics_blocks(RunArtifacts.read(d))
    t = blocks[0]
    assert t.columns == ["method", "pointing game ↑", "deletion auc ↓", "randomization corr ↓", "ms per image ↓"]
    assert t.rows[1] == ["saliency", 0.25, 0.3, 0.9, 1.0]
    assert isinstance(blocks[1], KeyValues) and blocks[1].items == [("protocol.pairs", 8)]


def test_missing_files_name_the_command_that_writes_them(tmp_path):
    d = _run_dir(tmp_path)
    a = RunArtifacts.read(d)
    assert evaluation_section(a).missing == f"not computed: run `xbyol eval {d}` (writes eval.json)."
    assert f"`xbyol dissect {d}`" in dissection_section(a).missing
    assert f"`xbyol explain-eval {d}`" in explain_metrics_blocks(a)[0].text


def test_not_a_run_directory_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.yaml is missing"):
        RunArtifacts.read(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        RunArtifacts.read(tmp_path / "nope")


def test_dissection_section_reads_summary_and_ranks_units(tmp_path):
    d = _run_dir(tmp_path)
    out = d / "dissect" / "stages.3"
    out.mkdir(parents=True)
    (out / "summary.json").write_text(json.dumps({
        "layer": "stages.3", "units": 3, "detectors": 2,
        "detectors_per_group": {"shape": 1, "colour": 1},
        "unique_paper_per_group": {"shape": 1, "colour": 1},
        "unique_release_per_group": {"shape": 1, "colour": 2},
    }))
    (out / "units.csv").write_text(
        "unit,concept,group,iou,detector,threshold\n0,red,colour,0.050000,True,1.0\n1,circle,shape,0.200000,True,1.0\n"
        "2,blue,colour,0.010000,False,1.0\n")
    sec = dissection_section(RunArtifacts.read(d), top_units=2)
    assert dict(sec.blocks[0].items) == {"layer": "stages.3", "units": 3, "detector units": 2}
    per_group = next(b for b in sec.blocks if isinstance(b, Table) and b.columns[0] == "group")
    assert per_group.rows == [["shape", 1, 1, 1], ["colour", 1, 1, 2]]
    units = next(b for b in sec.blocks if isinstance(b, Table) and b.columns[0] == "unit")
    assert units.rows == [["1", "circle", "shape", 0.2, True], ["0", "red", "colour", 0.05, True]]


class _Labels:
    """A stand-in dataset: concept vocabulary and per-image concepts."""

    concept_names = ["red", "blue", "green"]
    concept_groups = {"colour": [0, 1, 2]}
    class_names: list[str] = []
    has_captions = False

    def __init__(self, concepts: list[list[int]]):
        self.rows = concepts

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        c = torch.zeros(3, dtype=torch.bool)
        c[self.rows[i]] = True
        return {"image": torch.full((3, 4, 4), i, dtype=torch.uint8), "label": -1, "concepts": c, "index": i}


class _FakeRun:
    """Embeds image i (all pixels = i) as a fixed vector of the concept space."""

    def __init__(self, dataset, vectors):
        self.device = torch.device("cpu")
        self._ds = dataset
        vec = torch.tensor(vectors, dtype=torch.float32)
        self.backbone = lambda x: vec[x[:, 0, 0, 0].round().long()]  # preprocess is affine per channel: keep order

    def dataset(self, split):
        return self._ds


def test_concept_confusion_counts_single_concept_images(monkeypatch):
    """Hand-worked: image 0 is red and closest to red, image 1 is blue but closest to green,
    image 2 has two colours and image 3 none (both left out), image 4 is green and closest to green."""
    import xbyol.report.live as live
    import xbyol.rundir as rundir
    from xbyol.concepts.bank import ConceptBank
    from xbyol.report.live import concept_confusion

    bank = ConceptBank(["red", "blue", "green"], torch.eye(3), {"colour": [0, 1, 2]})
    monkeypatch.setattr(live, "concept_projection", lambda run: (torch.nn.Identity(), bank))
    monkeypatch.setattr(rundir, "preprocess", lambda x: x.float())  # the encode loop's preprocessing
    ds = _Labels([[0], [1], [0, 1], [], [2]])
    vectors = [[1.0, 0.1, 0.0], [0.0, 0.2, 0.9], [1.0, 1.0, 0.0], [0.3, 0.3, 0.3], [0.1, 0.0, 1.0]]
    conf = concept_confusion(_FakeRun(ds, vectors), progress=False)
    texts, counts = conf["colour"]
    assert texts == ["red", "blue", "green"]
    assert counts.tolist() == [[1, 0, 0], [0, 0, 1], [0, 0, 1]]


def test_mask_outline_is_the_inner_boundary() -> None:
    import numpy as np

    from xbyol.explain.render import mask_outline

    mask = np.zeros((5, 6), dtype=bool)
    mask[1:4, 1:5] = True  # a 3x4 block: only its middle row's two middle pixels are interior
    expected = mask.copy()
    expected[2, 2:4] = False
    assert np.array_equal(mask_outline(mask), expected)
    assert not mask_outline(np.zeros((3, 3), dtype=bool)).any()


def test_evaluation_flags_a_run_below_random_init_and_shows_chance(tmp_path):
    d = _run_dir(tmp_path)
    (d / "eval.json").write_text(json.dumps({
        "step": 30, "trained": {"linear_probe": 0.238, "knn": 0.26}, "random_init": {"linear_probe": 0.262, "knn": 0.207},
    }))
    sec = evaluation_section(RunArtifacts.read(d), chance=0.25)
    table = next(b for b in sec.blocks if isinstance(b, Table) and b.columns[0] == "metric")
    assert table.rows[0][3] == pytest.approx(-0.024)
    assert table.rows[2] == ["chance (always the most frequent test class)", 0.25, 0.25, None]
    warnings = [b.text for b in sec.blocks if isinstance(b, Note) and b.level == "warning"]
    assert len(warnings) == 2
    assert "below its random-init twin (linear probe accuracy 0.2380 < 0.2620)" in warnings[0]
    assert "kNN" not in warnings[0]  # kNN is above random init
    assert warnings[1].startswith("warning: linear probe accuracy at or below chance (0.2500)")


def test_training_panels_split_losses_drop_constants_and_draw_references():
    m = {"step": [1.0, 2.0, 3.0, 4.0], "loss": [3.0, 2.0, 1.5, 1.2], "loss_byol": [2.9, 1.9, 1.4, 1.1],
         "loss_semantic": [0.1, 0.1, 0.1, 0.1 + 1e-3], "labelled_fraction": [1.0] * 4,
         "projection_std": [0.05, 0.06, 0.07, 0.08], "projection_std_healthy": [0.125] * 4,
         "projection_rank": [10.0, 12.0, 20.0, 25.0]}
    panels = {p["title"]: p for p in training_panels(m, batch_size=32)}
    assert list(panels) == ["loss", "loss component: byol", "loss component: semantic",
                            "collapse: embedding std (dashed: isotropic)",
                            "collapse: effective rank (dashed: maximum)"]  # no labelled_fraction panel
    rank = panels["collapse: effective rank (dashed: maximum)"]["lines"]
    # d = 1 / 0.125^2 = 64, the batch has 32 rows: the rank cannot exceed 32
    assert rank[1] == {"label": "projection maximum 32", "x": [1.0, 4.0], "y": [32, 32], "style": "--"}
    # a component equal to the total is not drawn twice
    assert "loss component: byol" not in {p["title"] for p in training_panels({"step": [1.0, 2.0], "loss": [2.0, 1.0],
                                                                               "loss_byol": [2.0, 1.0]})}

    # d = 64, 32 rows: std 0.08 * sqrt(64) = 64% of isotropic, rank 25 / 32 = 78% of its maximum: healthy
    assert collapse_warnings(m, batch_size=32) == []


def test_collapse_warnings_fire_below_their_calibrated_fractions():
    m = {"step": [1.0, 2.0], "projection_std_healthy": [0.125] * 2, "projection_std": [0.08, 0.03],
         "projection_rank": [25.0, 1.5]}
    # std 0.03 * 8 = 0.24 < 0.3; rank 1.5 / 32 = 0.047 < 0.05 (hand-worked)
    assert collapse_warnings(m, batch_size=32) == [
        "projection_std ends at 0.0300, 24% of the isotropic 1/sqrt(d) = 0.1250 (collapsed below 30%)",
        "projection_rank ends at 1.5 of at most 32 (collapsed below 5%)"]
    m["projection_std"][-1], m["projection_rank"][-1] = 0.0375, 1.6  # exactly 0.3 and 0.05: not below
    assert collapse_warnings(m, batch_size=32) == []
    m["projection_rank"][-1] = 3.0  # 3 / 64 < 0.05 without the batch cap (rank of a 64-dim embedding)
    assert collapse_warnings(m) == ["projection_rank ends at 3.0 of at most 64 (collapsed below 5%)"]


def test_smoothing_adds_an_ema_over_faint_raw_values():

    assert ema([1.0, 0.0, 0.0], 0.5) == [1.0, 0.5, 0.25]  # worked by hand
    panel = training_panels({"step": [1.0, 2.0, 3.0], "loss": [1.0, 0.0, 0.0]}, smoothing=0.5)[0]
    assert [ln.get("faint", False) for ln in panel["lines"]] == [True, False]
    assert panel["lines"][1]["y"] == [1.0, 0.5, 0.25] and panel["lines"][1]["label"] == "loss (EMA 0.5)"
    lr = training_panels({"step": [1.0, 2.0, 3.0], "lr": [1.0, 0.5, 0.0]}, smoothing=0.5)[0]
    assert [ln["y"] for ln in lr["lines"]] == [[1.0, 0.5, 0.0]]  # a schedule is drawn as logged
    with pytest.raises(ValueError, match="smoothing"):
        training_panels({"step": [1.0], "loss": [1.0]}, smoothing=1.0)


def test_nearest_neighbours_and_label_rates_by_hand():
    from xbyol.report.live import nearest_neighbours, random_pick_same_label_rate, same_label_rate

    # four points on the unit circle at 0, 10, 90 and 180 degrees
    angles = torch.tensor([0.0, 10.0, 90.0, 180.0]) * math.pi / 180
    feats = torch.stack([angles.cos(), angles.sin()], dim=1) * torch.tensor([[1.0], [2.0], [3.0], [4.0]])  # norms differ
    idx, cos = nearest_neighbours(feats, [0, 2], k=2)
    assert idx.tolist() == [[1, 2], [1, 0]]  # the query itself is never its own neighbour
    assert cos[0].tolist() == pytest.approx([math.cos(math.radians(10)), 0.0], abs=1e-6)
    assert cos[1].tolist() == pytest.approx([math.cos(math.radians(80)), 0.0], abs=1e-6)
    # 1-NN: 0 <-> 1 share label 0; 2's nearest is 1 (label 0, not 1); 3's nearest is 2 (cos 0 vs -1 for 0)
    assert same_label_rate(feats, [0, 0, 1, 1], k=1) == pytest.approx(3 / 4)
    # labels 0,0,1,1: another random image shares the label with probability 1/3
    assert random_pick_same_label_rate([0, 0, 1, 1]) == pytest.approx(1 / 3)
    assert random_pick_same_label_rate([0, 1, 2]) == 0.0


def test_shared_scale_is_one_min_max_over_the_batch(monkeypatch):
    import xbyol.explain
    from xbyol.explain import concept_heatmaps as heatmaps

    raw = torch.tensor([[[0.0, 1.0]], [[2.0, 4.0]]])  # two images, [B=2, H=1, W=2]

    def fake_explain(backbone, x, target, method, normalize=True):
        return xbyol.explain.minmax_normalize(raw) if normalize else raw

    class Run:
        device = "cpu"
        backbone = torch.nn.Identity()

    monkeypatch.setattr(heatmaps, "explain", fake_explain)
    images = torch.zeros(2, 3, 1, 2, dtype=torch.uint8)
    target = lambda z: z.flatten(1).sum(1)  # noqa: E731
    _, each = heatmaps.concept_heatmaps(Run(), images, "red", ["gradcam"], target=target, scale="image")
    _, shared = heatmaps.concept_heatmaps(Run(), images, "red", ["gradcam"], target=target, scale="shared")
    assert each["gradcam"].tolist() == [[[0.0, 1.0]], [[0.0, 1.0]]]
    assert shared["gradcam"].tolist() == [[[0.0, 0.25]], [[0.5, 1.0]]]  # (v - 0) / (4 - 0): image 1 is weaker
    with pytest.raises(ValueError, match="heatmap scale"):
        heatmaps.concept_heatmaps(Run(), images, "red", ["gradcam"], target=target, scale="row")


def test_a_concept_group_that_repeats_the_labels_is_not_drawn_twice():
    from xbyol.report.live import _colourings

    class Folder:  # a folder dataset: its "class" concepts are the class names as text
        class_names = ["golden_retriever", "tabby"]
        concept_names = ["golden retriever", "tabby", "grass"]
        concept_groups = {"class": [0, 1], "mask": [2]}

        def __getitem__(self, i):
            return {"label": i % 2, "concepts": torch.tensor([i % 2 == 0, i % 2 == 1, i < 2])}

    got = _colourings(Folder(), [0, 1, 2, 3])
    assert list(got) == ["label", "mask"]
    assert got["label"] == ["golden_retriever", "tabby"] * 2 and got["mask"] == ["grass", "grass", "none", "none"]
