"""METRICS metadata: every public metric is listed once with its direction and category."""

import xbyol.metrics as metrics


def test_metrics_metadata():
    expected = {
        "pointing_game": (True, "localization"),
        "energy_pointing_game": (True, "localization"),
        "mask_iou": (True, "localization"),
        "relevance_mass": (True, "localization"),
        "relevance_rank": (True, "localization"),
        "deletion_auc": (False, "faithfulness"),
        "insertion_auc": (True, "faithfulness"),
        "infidelity": (False, "faithfulness"),
        "max_sensitivity": (False, "robustness"),
        "model_randomization": (False, "randomization"),
    }
    assert {k: (m["higher_is_better"], m["category"]) for k, m in metrics.METRICS.items()} == expected
    for name, meta in metrics.METRICS.items():
        assert meta["name"] == name and meta["fn"] is getattr(metrics, name)
