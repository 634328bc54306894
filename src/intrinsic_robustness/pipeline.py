"""The pipeline's stages, each a thin call into the library: generator -> lipschitz -> dataset ->
classifiers -> evaluation -> report.

Layout of a run directory (see ``docs/readme/07-pipeline.md``)::

    config.json  meta.json
    generator/                      saved generator (config JSON + safetensors), training samples
    lipschitz/<method>.json         one LipschitzResult per estimator
    dataset/                        manifest.json + safetensors shards (x, y, z)
    classifiers/<name>/             saved classifier, history, checkpoints
    eval/<name>/<threat>.json       EvalResult JSON (+ per-example norms, a few adversarial examples)
    report/                         report.json, report.md, report.html, figures
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from intrinsic_robustness.config import ClassifierConfig, PipelineConfig, config_to_dict
from intrinsic_robustness.io import write_json
from intrinsic_robustness.runs import RunDir, Stage, StageContext, StageOutcome, execute
from intrinsic_robustness.runtime import derive_seed

log = logging.getLogger(__name__)


def threat_file(threat: str) -> str:
    return f"{threat}.json"


def _device(config: PipelineConfig) -> str:
    from intrinsic_robustness.runtime import resolve_device

    return str(resolve_device(config.run.device))


def _load_gen(run_dir: Path, device: str) -> Any:
    from intrinsic_robustness.generators.load import load_generator

    gen = load_generator(str(run_dir / "generator"), device=device)
    gen.eval()
    return gen


def generator_stage(config: PipelineConfig) -> Stage:
    """Train an ACGAN on real data, or load a given generator, into ``generator/``."""
    section = config.generator
    seed = config.run.seed

    def run(ctx: StageContext) -> Sequence[str]:
        out = ctx.path("generator")
        device = _device(config)
        if section.source == "train":
            from intrinsic_robustness.generators.train import train_acgan

            kwargs = {"lr": section.lr} if section.lr is not None else {}
            train_acgan(
                section.data,
                out,
                epochs=section.epochs,
                batch_size=section.batch_size,
                seed=derive_seed(seed, "generator"),
                device=device,
                latent_dim=section.latent_dim,
                size=section.image_size,
                force=False,
                **kwargs,
                **section.options,
            )
        else:
            from intrinsic_robustness.generators.load import load_generator, save_generator

            gen = load_generator(section.spec, weights=section.weights or None, device=device)
            save_generator(gen, out, _saved_config(gen, section.spec))
        return ["generator/generator.json", "generator/generator.safetensors"]

    cfg = {**section.model_dump(mode="json"), "seed": seed}
    files = (section.weights,) if section.source == "load" and section.weights else ()
    return Stage("generator", cfg, run, files=files, clean=("generator",))


def _saved_config(gen: Any, spec: str) -> dict[str, Any]:
    """What ``save_generator`` needs to rebuild a loaded generator from the run directory alone."""
    from intrinsic_robustness.generators.external import is_factory_spec

    own = gen.config() if callable(getattr(gen, "config", None)) else None
    if isinstance(own, dict) and "architecture" in own:
        return dict(own)
    if is_factory_spec(spec):
        return {"architecture": "factory", "factory": spec}
    return {
        "architecture": "affine" if spec == "affine" else spec,
        "latent_dim": int(gen.latent_dim),
        "num_classes": int(gen.num_classes),
        "image_shape": [int(s) for s in gen.image_shape],
    }


def lipschitz_stage(config: PipelineConfig, method: str) -> Stage:
    """One Lipschitz estimate of the run's generator, written to ``lipschitz/<method>.json``."""
    section = config.lipschitz

    def run(ctx: StageContext) -> Sequence[str]:
        from intrinsic_robustness.lipschitz import estimate_lipschitz

        device = _device(config)
        gen = _load_gen(ctx.run_dir, device)
        result = estimate_lipschitz(
            gen,
            method=method,
            anchors_per_class=section.anchors_per_class,
            radius=section.radius,
            neighbors=section.neighbors,
            seed=derive_seed(config.run.seed, "lipschitz"),  # one seed: every method sees the same anchors
            device=device,
            **section.options,
        )
        rel = f"lipschitz/{method}.json"
        result.save(ctx.path(rel))
        return [rel]

    cfg = {k: v for k, v in section.model_dump(mode="json").items() if k not in ("methods", "percentile")}
    cfg.update(method=method, seed=config.run.seed)
    return Stage(f"lipschitz/{method}", cfg, run, inputs=("generator",))


def dataset_stage(config: PipelineConfig) -> Stage:
    """Generate the labelled dataset (images, labels, latents) from the run's generator."""
    section = config.dataset

    def run(ctx: StageContext) -> Sequence[str]:
        from intrinsic_robustness.data.synthetic import generate_dataset

        device = _device(config)
        gen = _load_gen(ctx.run_dir, device)
        info = {"spec": "generator", "fingerprint": ctx.upstream["generator"].get("fingerprint")}
        generate_dataset(
            gen,
            ctx.path("dataset"),
            n_train=section.n_train,
            n_test=section.n_test,
            seed=derive_seed(config.run.seed, "dataset"),
            priors=section.priors,
            generator_info=info,
            batch_size=section.batch_size,
            device=device,
            overwrite=True,
        )
        return ["dataset/manifest.json"]

    cfg = {**section.model_dump(mode="json"), "seed": config.run.seed}
    return Stage("dataset", cfg, run, inputs=("generator",), clean=("dataset",))


def classifier_stage(config: PipelineConfig, entry: ClassifierConfig) -> Stage:
    """Train one classifier on the generated training split into ``classifiers/<name>/`` (resumable)."""
    rel = f"classifiers/{entry.name}"

    def run(ctx: StageContext) -> Sequence[str]:
        from intrinsic_robustness.data.synthetic import load_dataset
        from intrinsic_robustness.training import fit

        if ctx.path(rel, "config.json").is_file():  # finished before an interruption: nothing to redo
            return [f"{rel}/config.json", f"{rel}/model.safetensors"]
        kwargs: dict[str, Any] = {}
        for key in ("arch", "eps", "epochs", "batch_size", "lr"):
            if getattr(entry, key) is not None:
                kwargs[key] = getattr(entry, key)
        fit(
            load_dataset(ctx.path("dataset"), split="train"),
            entry.method,
            seed=derive_seed(config.run.seed, "classifier", entry.name),
            device=_device(config),
            out=str(ctx.path(rel)),
            force=False,
            **kwargs,
            **entry.options,
        )
        return [f"{rel}/config.json", f"{rel}/model.safetensors"]

    cfg = {**entry.model_dump(mode="json"), "seed": config.run.seed}
    return Stage(rel, cfg, run, inputs=("dataset",), clean=(rel,))


def evaluation_stage(config: PipelineConfig, entry: ClassifierConfig) -> Stage:
    """Attack one classifier under each threat model; JSON results go to ``eval/<name>/<threat>.json``."""
    section = config.evaluation
    rel = f"eval/{entry.name}"

    def run(ctx: StageContext) -> Sequence[str]:
        from intrinsic_robustness.evaluation import evaluate

        device = _device(config)
        classifier = str(ctx.path(f"classifiers/{entry.name}"))
        jobs = [(t, section.attacks.get(t), threat_file(t)) for t in section.threats]
        jobs += [("unconstrained", [a], f"attack-{a}.json") for a in section.compare_attacks]
        outputs = []
        for threat, attacks, file in jobs:
            gen = _load_gen(ctx.run_dir, device) if threat == "in-distribution" else None
            evaluate(
                classifier,
                str(ctx.path("dataset")),
                generator=gen,
                threat=threat,
                attacks=attacks,
                eps=tuple(section.eps),
                n=section.n,
                batch_size=section.batch_size,
                seed=derive_seed(config.run.seed, "evaluation", entry.name, threat),
                device=device,
                out=str(ctx.path(rel, file)),
                attack_options=_attack_options(section.attack_options, attacks, threat),
                **section.options,
            )
            outputs.append(f"{rel}/{file}")
        return outputs

    cfg = {**section.model_dump(mode="json"), "classifier": entry.name, "seed": config.run.seed}
    return Stage(
        f"evaluation/{entry.name}", cfg, run, inputs=("generator", "dataset", f"classifiers/{entry.name}"), clean=(rel,)
    )


def _attack_options(
    options: dict[str, dict[str, Any]], attacks: list[str] | None, threat: str
) -> dict[str, dict[str, Any]] | None:
    """The configured per-attack options of the attacks this evaluation actually runs."""
    from intrinsic_robustness.attacks import parse_attack_names

    chosen = parse_attack_names(attacks, threat)
    return {k: v for k, v in options.items() if k in chosen} or None


def report_stage(config: PipelineConfig, upstream: Sequence[str]) -> Stage:
    """Render the report from the run's files (no model is run again)."""

    def run(ctx: StageContext) -> Sequence[str]:
        from intrinsic_robustness.report import write_report

        write_report(ctx.run_dir)
        return ["report/report.json"]

    cfg = {
        "report": config.report.model_dump(mode="json"),
        "evaluation_eps": config.evaluation.eps,
        "lipschitz": {"percentile": config.lipschitz.percentile, "radius": config.lipschitz.radius},
        "classifiers": [c.name for c in config.classifiers],
        "format": 1,
    }
    return Stage("report", cfg, run, inputs=tuple(upstream))


def build_stages(config: PipelineConfig) -> list[Stage]:
    """All stages of a config, in execution order."""
    stages = [generator_stage(config)]
    stages += [lipschitz_stage(config, m) for m in dict.fromkeys(config.lipschitz.methods)]
    stages.append(dataset_stage(config))
    stages += [classifier_stage(config, c) for c in config.classifiers]
    stages += [evaluation_stage(config, c) for c in config.classifiers]
    stages.append(report_stage(config, [s.name for s in stages]))
    return stages


def run_pipeline(
    config: PipelineConfig,
    run_dir: str | os.PathLike[str],
    force: Sequence[str] = (),
    on_event: Callable[[StageOutcome], None] | None = None,
    stages: list[Stage] | None = None,
) -> list[StageOutcome]:
    """Run (or resume) every stage of ``config`` in ``run_dir``; returns what each stage did."""
    run = RunDir.open(run_dir, seed=config.run.seed)
    run.meta["device"] = config.run.device
    write_json(run.path / "config.json", config_to_dict(config))
    run.save()
    return execute(run, stages if stages is not None else build_stages(config), force=force, on_event=on_event)
