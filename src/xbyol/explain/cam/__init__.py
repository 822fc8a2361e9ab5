"""The class-activation-map family: one small file per variant on :class:`BaseCAM`."""

from xbyol.explain.cam.base import BaseCAM, weighted_sum
from xbyol.explain.cam.cam import CAM
from xbyol.explain.cam.eigencam import EigenCAM, eigen_projection
from xbyol.explain.cam.gradcam import GradCAM
from xbyol.explain.cam.gradcampp import GradCAMPlusPlus
from xbyol.explain.cam.layercam import LayerCAM
from xbyol.explain.cam.scorecam import ScoreCAM
from xbyol.explain.cam.xgradcam import XGradCAM

__all__ = [
    "CAM",
    "BaseCAM",
    "EigenCAM",
    "GradCAM",
    "GradCAMPlusPlus",
    "LayerCAM",
    "ScoreCAM",
    "XGradCAM",
    "eigen_projection",
    "weighted_sum",
]
