"""Robustness evaluation: attack a classifier on a dataset under one threat model, per-example minimal norms.

Robust error at eps = natural error OR a verified adversarial point within eps (norm <= eps + 1e-5), so one
run gives the whole robustness curve. Batches are attacked in dataset order and saved as they finish, so an
interrupted run resumes (same settings) without redoing finished batches; per-example seeds make the answer
independent of the batch split. In a torchrun job the batches are split across ranks and gathered in order,
so every rank returns the single-process result and rank 0 writes it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from intrinsic_robustness.attacks import build_attack, invert_latents, parse_attack_names
from intrinsic_robustness.distributed import collect, main_only, share
from intrinsic_robustness.errors import UserInputError
from intrinsic_robustness.evaluation.result import KEEP_EXAMPLES, EvalResult
from intrinsic_robustness.evaluation.store import PartialStore, outputs_for
from intrinsic_robustness.hashing import canonical_hash, state_checksum, tensor_digest
from intrinsic_robustness.models import check_classifier
from intrinsic_robustness.progress import advance, task
from intrinsic_robustness.runtime import resolve_device
from intrinsic_robustness.storage import check_output, clean_on_failure, exclusive, read_json
from intrinsic_robustness.threat import DEFAULT_EPS, THREATS, eps_key, robust_accuracy

log = logging.getLogger(__name__)

def _module_digest(module: nn.Module | None) -> str | None:
    return None if module is None else state_checksum(module.state_dict())


def class_errors(wrong: torch.Tensor, labels: torch.Tensor, num_classes: int) -> list[float | None]:
    """Natural error per class (None for a class without examples)."""
    out: list[float | None] = []
    for k in range(num_classes):
        mask = labels == k
        out.append(float(wrong[mask].double().mean()) if mask.any() else None)
    return out


@dataclass
class _Inputs:
    model: nn.Module
    images: torch.Tensor
    labels: torch.Tensor
    latents: torch.Tensor | None
    num_classes: int
    generator: nn.Module | None
    certify: bool


def _load_data(dataset: Any, size: int | None = None
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, dict[str, Any], Path | None]:
    """Images, labels, latents (or None), manifest and directory from a dataset object or a path/name (real
    images resized to ``size`` when given, else at their own size)."""
    if isinstance(dataset, str | os.PathLike):
        path = Path(dataset)
        if (path / "manifest.json").is_file():
            from intrinsic_robustness.data.synthetic import load_dataset

            ds = load_dataset(path, split="test")
            return ds.images, ds.labels, ds.latents, ds.manifest, path
        from intrinsic_robustness.data.real import load_real_native

        images, labels = load_real_native(str(dataset), split="test", size=size)
        return images, labels, None, {"real": str(dataset), "num_classes": int(labels.max()) + 1}, None
    if isinstance(dataset, tuple | list):
        images, labels, *rest = dataset
        return images, labels, (rest[0] if rest else None), {}, None
    images, labels = dataset.images, dataset.labels
    return images, labels, getattr(dataset, "latents", None), dict(getattr(dataset, "manifest", {}) or {}), None


def _manifest_generator(manifest: dict[str, Any], data_dir: Path | None, device: torch.device,
                        trust_code: bool = False) -> nn.Module:
    """The generator recorded in a dataset manifest (checked against its weights checksum); a factory it names
    is code named by a file, so it loads only with ``trust_code``."""
    from intrinsic_robustness.generators.load import load_generator

    info = manifest.get("generator") or {}
    spec = info.get("spec")
    if not spec and manifest.get("real"):
        raise UserInputError(f"in-distribution: real images ({manifest['real']}) carry no latents; pass --generator "
                             "to recover them by inversion, or use --threat unconstrained")
    if not spec:
        raise UserInputError("in-distribution: the dataset manifest names no generator; pass --generator")
    if data_dir is not None and not Path(spec).exists() and (data_dir.parent / spec).is_dir():
        spec = str(data_dir.parent / spec)
    source = str(data_dir / "manifest.json") if data_dir is not None else "dataset manifest"
    gen = load_generator(spec, info.get("weights"), device=device, trust_code=trust_code, named_by=source)
    expected = info.get("weights_sha256")
    if expected and state_checksum(gen.state_dict()) != expected:
        raise UserInputError(f"generator {spec}: weights differ from those that made the dataset; pass --generator")
    return gen


def _load_classifier(classifier: nn.Module | str | os.PathLike[str], device: torch.device,
                     trust_code: bool = False) -> tuple[nn.Module, bool]:
    """The model on ``device`` and whether its saved config says it was trained with the certified method."""
    if isinstance(classifier, nn.Module):
        return classifier.to(device), False
    from intrinsic_robustness.models import load_classifier

    model = load_classifier(str(classifier), device=device, trust_code=trust_code)
    config = Path(classifier) / "config.json"
    from intrinsic_robustness.training import is_certified_method  # the method's registry entry says so

    certified = config.is_file() and is_certified_method(read_json(config).get("method"))
    return model, certified


def _inputs(classifier: Any, dataset: Any, generator: Any, threat: str, n: int | None,
            device: torch.device, trust_code: bool = False, image_size: int | None = None) -> _Inputs:
    model, certified = _load_classifier(classifier, device, trust_code)
    images, labels, latents, manifest, data_dir = _load_data(dataset, image_size)
    if n is not None:
        if n < 1:
            raise UserInputError(f"--n {n}: expected a positive number of examples")
        if n > len(images):
            raise UserInputError(f"--n {n}: the test split has only {len(images)} examples; pass --n {len(images)} "
                                 "or less (or leave --n out to evaluate all)")
        images, labels = images[:n], labels[:n]
        latents = None if latents is None else latents[:n]
    if len(images) == 0:
        raise UserInputError("dataset: no test examples to evaluate")
    gen = None
    if threat == "in-distribution":
        if isinstance(generator, str):
            from intrinsic_robustness.generators.load import load_generator

            generator = load_generator(generator, device=device, trust_code=trust_code)
        gen = generator.to(device) if generator is not None else \
            _manifest_generator(manifest, data_dir, device, trust_code)
    num_classes = int(manifest.get("num_classes", 0)) or int(getattr(gen, "num_classes", 0)) \
        or int(labels.max()) + 1
    return _Inputs(model, images.float(), labels.long(), latents, num_classes, gen, certified)


def _check_latents(gen: nn.Module, x: torch.Tensor, y: torch.Tensor, z: torch.Tensor) -> None:
    """The stored latents must decode to the stored images (else the wrong generator was given)."""
    with torch.no_grad():
        gap = float((gen.decode(z, y) - x).flatten(1).norm(dim=1).max())
    if gap > 1e-3:
        raise UserInputError(f"generator: decode(z, y) is {gap:.3g} (L2) away from the dataset images; pass the "
                             "generator that made the dataset")


def _attack_batch(inp: _Inputs, attack: Any, rows: slice, device: torch.device, seed: int,
                  eps: Sequence[float], options: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """Attack one batch (inverting latents first where the threat needs them and the data lacks them)."""
    x = inp.images[rows].to(device)
    y = inp.labels[rows].to(device)
    index = torch.arange(rows.start, rows.stop, device=device)
    out: dict[str, torch.Tensor] = {}
    z = None
    if inp.generator is not None:
        if inp.latents is None:
            z, err = invert_latents(inp.generator, x, y, seed=seed, index=index, **options.get("inversion", {}))
            with torch.no_grad():
                x = inp.generator.decode(z, y).clamp(0, 1)
            out["reconstruction_error"] = err
        else:
            z = inp.latents[rows].to(device)
            _check_latents(inp.generator, x, y, z)
    out["nonfinite"] = _nonfinite_logits(inp, x, rows)
    res = attack(inp.model, x, y, seed=seed, index=index, z=z)
    # The attack template already classified x in eval mode and set norm 0 exactly where x is misclassified.
    out.update(wrong=res.norms == 0, norms=res.norms, success=res.success, x_adv=res.x_adv)
    if rows.start < KEEP_EXAMPLES:
        out["x"] = x
    if inp.certify:
        from intrinsic_robustness.certify import certified_radius

        out["certified_radii"] = certified_radius(inp.model, x, y, max_radius=max(eps), **options.get("certify", {}))
    return {k: v.detach().cpu() for k, v in out.items()}


def _nonfinite_logits(inp: _Inputs, x: torch.Tensor, rows: slice) -> torch.Tensor:
    """Per example, whether the classifier's clean logits hold NaN or inf (such an example counts as misclassified,
    never robust, and is flagged); logits of the wrong shape for this batch are refused, naming the batch."""
    from intrinsic_robustness.modes import evaluating

    with evaluating(inp.model), torch.no_grad():
        logits = inp.model(x)
    if not isinstance(logits, torch.Tensor) or tuple(logits.shape) != (len(x), inp.num_classes):
        got = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise UserInputError(f"classifier: returned {got} for the batch of examples {rows.start}-{rows.stop - 1}, "
                             f"expected logits of shape ({len(x)}, {inp.num_classes}): one logit per class for "
                             "every image, whatever the batch size")
    return ~torch.isfinite(logits).all(dim=1)


def evaluate(classifier: nn.Module | str, dataset: Any, generator: nn.Module | str | None = None,
             threat: str = "unconstrained", attacks: str | Sequence[str] | None = None,
             eps: Sequence[float] = DEFAULT_EPS, n: int | None = None, batch_size: int = 100, seed: int = 0,
             device: str | torch.device = "cpu", out: str | os.PathLike[str] | None = None,
             attack_options: Mapping[str, Mapping[str, Any]] | None = None,
             certify: bool | None = None, inversion: Mapping[str, Any] | None = None,
             trust_code: bool = False, image_size: int | None = None, reuse: bool = False) -> EvalResult:
    """Attack ``classifier`` on ``dataset`` (a generated dataset dir, a real-data name, resized to
    ``image_size`` when given, or an object with images/labels/latents); ``out`` (a .json path) saves the
    result and makes the run resumable by batch.
    ``trust_code``: let files (a classifier's config.json, the dataset manifest) name user code.
    ``reuse``: an ``out`` already finished with the same settings fingerprint is loaded, not recomputed (the
    pipeline's resume of an interrupted evaluation stage; off by default, so a rerun after an upgrade recomputes)."""
    start_time = time.perf_counter()
    if threat not in THREATS:
        raise UserInputError(f"--threat {threat!r} is not one of {', '.join(THREATS)}")
    eps = sorted({float(e) for e in eps})
    if not eps or eps[0] <= 0 or not math.isfinite(eps[-1]):
        raise UserInputError(f"--eps {eps}: give at least one eps, each positive and finite")
    if batch_size < 1:
        raise UserInputError(f"--batch-size {batch_size}: expected a positive integer")
    if out is not None:
        check_output(out, "--out")
    dev = resolve_device(device)
    names = parse_attack_names(attacks, threat, dev)
    if image_size is not None and (not isinstance(dataset, str) or (Path(dataset) / "manifest.json").is_file()
                                   or int(image_size) < 4):
        raise UserInputError(f"--image-size {image_size}: only real data (digits, mnist, fashion-mnist, idx:DIR) is "
                             "resized, to at least 4 pixels a side")
    inp = _inputs(classifier, dataset, generator, threat, n, dev, trust_code, image_size)
    _check_fits(inp, classifier)
    if certify is not None:
        inp.certify = bool(certify)
    attack = build_attack(names, threat, eps=eps, generator=inp.generator, options=attack_options, device=dev)
    settings = {"threat": threat, "attacks": names, "options": attack_options or {}, "eps": eps,
                "batch_size": batch_size, "seed": seed, "certify": inp.certify, "inversion": inversion or {},
                "model": _module_digest(inp.model), "generator": _module_digest(inp.generator),
                "data": tensor_digest(inp.images, inp.labels, *([] if inp.latents is None else [inp.latents]))}
    with _one_writer(out):
        digest = canonical_hash(settings)
        finished = _finished(out, digest) if reuse else None
        return finished if finished is not None else _run_batches(inp, attack, settings, digest, out, dev, start_time)


def _finished(out: str | os.PathLike[str] | None, digest: str) -> EvalResult | None:
    """The saved result at ``out`` when it was computed with exactly these settings, else None."""
    if out is None:
        return None
    json_path, tensor_path, _ = outputs_for(out)
    if not (json_path.is_file() and tensor_path.is_file()) or read_json(json_path).get("settings_digest") != digest:
        return None
    log.info("evaluation %s: finished earlier with the same settings, loaded", json_path)
    return EvalResult.load(out)


def _one_writer(out: str | os.PathLike[str] | None) -> contextlib.AbstractContextManager[None]:
    """Lock ``out``'s partial directory (one writer per output), removed again if nothing was done."""
    if out is None:
        return contextlib.nullcontext()
    partial = outputs_for(out)[2]
    stack = contextlib.ExitStack()
    stack.enter_context(clean_on_failure(partial))
    stack.enter_context(exclusive(partial, f"evaluation output {out}"))
    return stack


def _check_fits(inp: _Inputs, classifier: Any) -> None:
    """The classifier must take the data's images and give one logit per class: one line before any attack."""
    shape = tuple(int(s) for s in inp.images.shape[1:])
    name = type(classifier).__name__ if isinstance(classifier, nn.Module) else str(classifier)
    config = None if isinstance(classifier, nn.Module) else Path(classifier) / "config.json"
    saved = read_json(config).get("image_shape") if config is not None and config.is_file() else None
    if isinstance(saved, list) and tuple(saved) != shape:
        show = "x".join
        raise UserInputError(f"classifier {name}: trained on {show(map(str, saved))} images, the data has "
                             f"{show(map(str, shape))} images; evaluate it on data of its own size")
    check_classifier(inp.model, inp.num_classes, shape, f"classifier {name}")


def _run_batches(inp: _Inputs, attack: Any, settings: dict[str, Any], digest: str, out: str | os.PathLike[str] | None,
                 dev: torch.device, start_time: float) -> EvalResult:
    """Attack every batch not already in the partial store, then summarise (and save when ``out`` is given)."""
    store = PartialStore(None if out is None else outputs_for(out)[2], digest)
    previous = store.seconds()
    threat, names, eps, seed = settings["threat"], settings["attacks"], settings["eps"], settings["seed"]
    batch_size = settings["batch_size"]
    options = {"inversion": dict(settings["inversion"]), "certify": {}}
    total = len(inp.labels)
    spans = [slice(first, min(total, first + batch_size)) for first in range(0, total, batch_size)]

    def attack_block(block: range) -> list[dict[str, torch.Tensor]]:
        """This rank's batches (all of them for a single process), each loaded if saved, else attacked."""
        parts = []
        for k in block:
            part = store.load(k)
            if part is None:
                part = _attack_batch(inp, attack, spans[k], dev, seed, eps, options)
                store.save(k, part, previous + time.perf_counter() - start_time)
            parts.append(part)
            advance(handle, spans[k].stop - spans[k].start)
        return parts

    mine = sum(spans[k].stop - spans[k].start for k in share(len(spans)))  # a torchrun rank's part: its own count
    label = f"evaluate {threat}" if mine == total else f"evaluate {threat} (this rank's {mine} of {total})"
    with task(label, mine) as handle:
        parts = collect(len(spans), attack_block)  # in a torchrun job: split across ranks, gathered in order
    result = _summarise(parts, inp, threat, names, eps, previous + time.perf_counter() - start_time)
    result = dataclasses.replace(result, settings_digest=digest)
    if out is not None:
        main_only(_save, result, out, torch.cat([p["x"] for p in parts if "x" in p])[:KEEP_EXAMPLES], store)
    return result


def _save(result: EvalResult, out: str | os.PathLike[str], x: torch.Tensor, store: PartialStore) -> None:
    result.save(out, x=x)
    store.remove()


def _summarise(parts: list[dict[str, torch.Tensor]], inp: _Inputs, threat: str, names: list[str],
               eps: Sequence[float], seconds: float) -> EvalResult:
    def cat(key: str) -> torch.Tensor | None:
        return torch.cat([p[key] for p in parts]) if all(key in p for p in parts) else None

    norms, wrong = cat("norms"), cat("wrong")
    assert norms is not None and wrong is not None
    nonfinite = cat("nonfinite")  # None for batches saved by a version before the flag
    if nonfinite is not None and nonfinite.any():
        log.warning("classifier returned NaN or inf logits for %d of %d examples: counted as misclassified (natural "
                    "error), never robust", int(nonfinite.sum()), len(wrong))
    radii = cat("certified_radii")
    certified = None if radii is None else {eps_key(e): float((radii >= float(e)).double().mean()) for e in eps}
    labels = inp.labels
    return EvalResult(
        threat=threat, attacks=names, n=len(labels), natural_error=float(wrong.double().mean()),
        class_errors=class_errors(wrong, labels, inp.num_classes), min_norms=norms,
        robust_accuracy=robust_accuracy(norms, eps), certified_accuracy=certified, seconds=float(seconds),
        labels=labels, success=cat("success"), x_adv=cat("x_adv"), certified_radii=radii,
        reconstruction_error=cat("reconstruction_error"), nonfinite=nonfinite,
    )
