"""Classifier architectures (plain nn.Modules on [0,1] images) and their safetensors save/load."""

from intrinsic_robustness.models.architectures import ARCHITECTURES, build_architecture, check_classifier
from intrinsic_robustness.models.load import load_classifier, load_weights, save_classifier

__all__ = [
    "ARCHITECTURES", "build_architecture", "check_classifier", "load_classifier", "load_weights", "save_classifier",
]
