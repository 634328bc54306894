"""The outcome of one evaluation as data: the JSON summary, the per-example tensors beside it, and loading both.

``<out>.json`` holds threat, attacks, n, natural error, per-class errors, minimal norms (null = none found),
robust accuracy per eps (keys from :func:`intrinsic_robustness.threat.eps_key`) and, for certified models,
certified accuracy, each accuracy with n and its 95% Clopper-Pearson interval (``*_ci``);
``<out>.safetensors`` holds the per-example tensors and a few adversarial examples.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any

import torch

from intrinsic_robustness.errors import UserInputError
from intrinsic_robustness.evaluation.store import outputs_for
from intrinsic_robustness.stats import CONFIDENCE, proportion_ci
from intrinsic_robustness.storage import check_format, load_tensors, read_json, save_tensors, write_json
from intrinsic_robustness.threat import eps_key

KEEP_EXAMPLES = 16
FORMAT = "irob-evaluation/1"  # files before the key existed have none and are read as this


@dataclass(frozen=True)
class EvalResult:
    """Outcome of one evaluation; :meth:`to_dict` gives the JSON (keys fixed by the issue)."""

    threat: str
    attacks: list[str]
    n: int
    natural_error: float
    class_errors: list[float | None]
    min_norms: torch.Tensor
    robust_accuracy: dict[str, float]
    certified_accuracy: dict[str, float] | None
    seconds: float
    labels: torch.Tensor = field(repr=False)
    success: torch.Tensor = field(repr=False)
    x_adv: torch.Tensor = field(repr=False)
    certified_radii: torch.Tensor | None = field(default=None, repr=False)
    reconstruction_error: torch.Tensor | None = field(default=None, repr=False)
    nonfinite: torch.Tensor | None = field(default=None, repr=False)  # per example: NaN/inf clean logits
    settings_digest: str | None = field(default=None, repr=False)  # fingerprint of what determined the answer

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "format": FORMAT, "threat": self.threat, "attacks": list(self.attacks), "n": self.n,
            "natural_error": self.natural_error, "class_errors": list(self.class_errors),
            "min_norms": [None if not math.isfinite(v) else v for v in self.min_norms.tolist()],
            "robust_accuracy": dict(self.robust_accuracy),
        }
        out.update(accuracy_intervals(self.n, 1.0 - self.natural_error, self.robust_accuracy))
        if self.certified_accuracy is not None:
            out["certified_accuracy"] = dict(self.certified_accuracy)
            out["certified_accuracy_ci"] = {k: proportion_ci(v, self.n) for k, v in self.certified_accuracy.items()}
        out["confidence"] = CONFIDENCE
        if self.reconstruction_error is not None and len(self.reconstruction_error):
            out["reconstruction_error"] = {"mean": float(self.reconstruction_error.mean()),
                                           "max": float(self.reconstruction_error.max())}
        if self.nonfinite is not None and bool(self.nonfinite.any()):  # a flag, shown only when raised
            out["nonfinite_logits"] = int(self.nonfinite.sum())  # counted misclassified, never robust
        out["seconds"] = self.seconds
        if self.settings_digest is not None:
            out["settings_digest"] = self.settings_digest
        return out

    @classmethod
    def load(cls, out: str | os.PathLike[str]) -> EvalResult:
        """Read an evaluation written by :meth:`save` (its JSON and the tensors beside it)."""
        json_path, tensor_path, _ = outputs_for(out)
        data = read_json(json_path)
        check_format(data, json_path, FORMAT, required=False)
        missing = [k for k in ("threat", "attacks", "n", "natural_error", "class_errors", "robust_accuracy")
                   if k not in data]
        if missing:
            raise UserInputError(f"{json_path}: missing key(s) {', '.join(missing)}; not an evaluation written by "
                                 "'irob evaluate'")
        t = load_tensors(tensor_path)
        return cls(threat=data["threat"], attacks=list(data["attacks"]), n=int(data["n"]),
                   natural_error=float(data["natural_error"]), class_errors=list(data["class_errors"]),
                   min_norms=t["min_norms"], robust_accuracy=_keyed(data["robust_accuracy"]) or {},
                   certified_accuracy=_keyed(data.get("certified_accuracy")), seconds=float(data.get("seconds") or 0.0),
                   labels=t["labels"], success=t["success"].bool(), x_adv=t["x_adv"],
                   certified_radii=t.get("certified_radii"), reconstruction_error=t.get("reconstruction_error"),
                   nonfinite=t.get("nonfinite_logits"), settings_digest=data.get("settings_digest"))

    @staticmethod
    def norms_from_json(data: dict[str, Any]) -> list[float]:
        """Per-example minimal norms from the JSON form (null means no adversarial example: +inf)."""
        return [math.inf if v is None else float(v) for v in data.get("min_norms", [])]

    def save(self, out: str | os.PathLike[str], x: torch.Tensor | None = None,
             keep: int = KEEP_EXAMPLES) -> None:
        """Write the JSON and, beside it, ``.safetensors`` with per-example norms and a few examples."""
        json_path, tensor_path, _ = outputs_for(out)
        tensors = {"min_norms": self.min_norms.float(), "labels": self.labels, "success": self.success,
                   "x_adv": self.x_adv[:keep].float()}
        if x is not None:
            tensors["x"] = x[:keep].float()
        if self.certified_radii is not None:
            tensors["certified_radii"] = self.certified_radii.float()
        if self.reconstruction_error is not None:
            tensors["reconstruction_error"] = self.reconstruction_error.float()
        if self.nonfinite is not None:
            tensors["nonfinite_logits"] = self.nonfinite.bool()
        save_tensors(tensor_path, tensors, metadata={"threat": self.threat, "attacks": ",".join(self.attacks)})
        write_json(json_path, self.to_dict())


def accuracy_intervals(n: int, natural_accuracy: float, robust: dict[str, float]) -> dict[str, Any]:
    """Natural accuracy and the 95% Clopper-Pearson intervals of the natural and per-eps robust accuracies."""
    return {"natural_accuracy": natural_accuracy, "natural_accuracy_ci": proportion_ci(natural_accuracy, n),
            "robust_accuracy_ci": {k: proportion_ci(v, n) for k, v in robust.items()}}


def _keyed(values: dict[str, float] | None) -> dict[str, float] | None:
    """Re-key a per-eps mapping with the one eps key (older files wrote ``"1.0"`` for certified accuracy)."""
    return None if values is None else {eps_key(float(k)): float(v) for k, v in values.items()}


def load_norms(out: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """The per-example tensors saved beside an evaluation JSON (min_norms, labels, success, ...)."""
    return load_tensors(outputs_for(out)[1])
