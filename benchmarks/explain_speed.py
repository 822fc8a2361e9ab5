"""Explainer throughput: heatmaps/s for every registered method, with Captum's Grad-CAM as reference.

    python benchmarks/explain_speed.py                      # batch 64, 32x32, resnet10_16, CPU, 1 thread
    python benchmarks/explain_speed.py --threads 2 --methods gradcam scorecam
    python benchmarks/explain_speed.py --device cuda

Every method runs with its documented defaults on an eval-mode, seeded resnet10_16 and a
per-sample EmbeddingSimilarityTarget (``cam`` gets a LinearClassTarget). Grad-CAM is timed
interleaved with Captum's ``LayerGradCam(relu_attributions=True)`` + bilinear
``LayerAttribution.interpolate`` on the same layer and target (both without min-max), and
the ratio ours/Captum of heatmaps/s is printed. Times are medians over ``--repeats``
round-robin runs after one warm-up run (one timed run for the slow perturbation methods).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from xbyol.explain import EmbeddingSimilarityTarget, LinearClassTarget, explain, names
from xbyol.explain.targets import compute_scores
from xbyol.models import create_backbone


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _time(fn, device: torch.device) -> float:
    _sync(device)
    t0 = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - t0


class _Scores(nn.Module):
    def __init__(self, model: nn.Module, target) -> None:
        super().__init__()
        self.model, self.target = model, target

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return compute_scores(self.target, self.model(x))


def gradcam_vs_captum(model: nn.Module, x: torch.Tensor, target, repeats: int) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """Our Grad-CAM next to Captum's ``LayerGradCam`` + bilinear interpolate on the same inputs.

    Both run without min-max normalisation on ``model.feature_layer``, interleaved for
    ``max(3, 4 * repeats)`` rounds after one untimed call each (the device is synchronised
    around every call).

    Returns:
        ``ours_s`` and ``captum_s`` (median seconds per call for the batch ``x [B, 3, H, W]``),
        ``max_abs_diff`` between the two ``[B, H, W]`` maps and ``captum_max`` (the largest
        value of Captum's maps, the scale of that difference).
    """
    from captum.attr import LayerAttribution, LayerGradCam  # optional dependency, as in xbyol.explain

    size = tuple(x.shape[-2:])
    lgc = LayerGradCam(_Scores(model, target), model.feature_layer)

    def captum_gradcam() -> torch.Tensor:
        a = lgc.attribute(x, relu_attributions=True)
        return LayerAttribution.interpolate(a, size, interpolate_mode="bilinear")

    def ours_gradcam() -> torch.Tensor:
        return explain(model, x, target, method="gradcam", normalize=False)

    reference = captum_gradcam()[:, 0].detach()  # (B, H, W)
    diff = (reference - ours_gradcam()).abs().max().item()
    ours_t, captum_t = [], []
    for _ in range(max(3, 4 * repeats)):
        ours_t.append(_time(ours_gradcam, x.device))
        captum_t.append(_time(captum_gradcam, x.device))
    return {"ours_s": statistics.median(ours_t), "captum_s": statistics.median(captum_t), "max_abs_diff": diff,
            "captum_max": reference.abs().max().item()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--backbone", default="resnet10_16")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--repeats", type=int, default=5, help="timed runs per method (slow methods: 1)")
    p.add_argument("--methods", nargs="*", default=None, help="subset of methods (default: all)")
    args = p.parse_args()

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = create_backbone(args.backbone).eval().to(device)
    x = torch.randn(args.batch, 3, args.size, args.size, device=device)
    with torch.no_grad():
        target = EmbeddingSimilarityTarget(model(x.roll(1, 0)))  # per-sample references
    probe_target = LinearClassTarget(nn.Linear(model.num_features, 10).to(device), torch.arange(args.batch) % 10)
    slow = {"scorecam", "occlusion", "integrated_gradients", "lime", "kernelshap", "smoothgrad", "guided_backprop"}

    print(f"# {args.backbone}, batch {args.batch}, {args.size}x{args.size}, device {device}, "
          f"torch threads {torch.get_num_threads()}, torch {torch.__version__}")  # fmt: skip

    # Grad-CAM vs Captum, interleaved so both see the same machine load
    ref = gradcam_vs_captum(model, x, target, args.repeats)
    ours_med, captum_med, diff = ref["ours_s"], ref["captum_s"], ref["max_abs_diff"]

    rows = [("captum LayerGradCam+interpolate", args.batch / captum_med, 1000 * captum_med / args.batch)]
    rows.append(("gradcam (ours, normalize=False)", args.batch / ours_med, 1000 * ours_med / args.batch))
    methods = args.methods or names()
    runs = {m: (lambda m=m: explain(model, x, probe_target if m == "cam" else target, method=m)) for m in methods}
    times: dict[str, list[float]] = {m: [] for m in methods}
    for m in methods:
        runs[m]()  # warm-up
    # fast methods round-robin, so that all of them see the same machine load
    for i in range(args.repeats):
        for m in methods:
            if m not in slow or i == 0:
                times[m].append(_time(runs[m], device))
    for m in methods:
        med = statistics.median(times[m])
        rows.append((m, args.batch / med, 1000 * med / args.batch))

    print(f"{'method':34s} {'heatmaps/s':>12s} {'ms/image':>10s}")
    for name, rate, ms in rows:
        print(f"{name:34s} {rate:12.1f} {ms:10.3f}")
    print(f"\ngradcam ours/captum heatmaps/s ratio: {captum_med / ours_med:.2f} "
          f"(max |ours - captum| = {diff:.2e})")  # fmt: skip


if __name__ == "__main__":
    main()
