"""The pipeline's stages, each a thin call into the domain packages: generator -> lipschitz -> dataset ->
classifiers -> evaluation -> report. Paths come from :class:`~.layout.RunLayout`; the device is resolved
once per run and handed to every stage.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from typing import Any

import torch

from intrinsic_robustness.distributed import is_main, job_size, main_only
from intrinsic_robustness.layout import RunLayout
from intrinsic_robustness.pipeline.config import ClassifierConfig, PipelineConfig, config_to_dict
from intrinsic_robustness.pipeline.engine import (
    RunDir,
    Stage,
    StageContext,
    StageOutcome,
    execute,
    match_force,
    nothing_left_on_early_failure,
)
from intrinsic_robustness.runtime import derive_seed, make_generator, resolve_device
from intrinsic_robustness.storage import exclusive, read_json, write_json

log = logging.getLogger(__name__)


def _load_gen(layout: RunLayout, device: torch.device, trust_code: bool = False) -> Any:
    from intrinsic_robustness.generators.load import load_generator

    return load_generator(str(layout.generator_dir), device=device, trust_code=trust_code).eval()


def generator_stage(config: PipelineConfig, device: torch.device, trust_code: bool = False) -> Stage:
    """Train a generator (``generator.family``: acgan or flow) on real data, or load one, into ``generator/``."""
    section = config.generator
    seed = config.run.seed

    def run(ctx: StageContext) -> Sequence[str]:
        layout = ctx.layout
        out = layout.generator_dir
        if section.source == "train":
            from intrinsic_robustness.generators.train import trainer

            kwargs = {"lr": section.lr} if section.lr is not None else {}
            if section.family == "acgan":  # a flow's latent is C*H*W
                kwargs["latent_dim"] = section.latent_dim
            trainer(section.family)(section.data, out, epochs=section.epochs, batch_size=section.batch_size,
                                    seed=derive_seed(seed, "generator"), device=device, size=section.image_size,
                                    force=False, **kwargs, **section.options)
        else:
            from intrinsic_robustness.generators.load import load_generator, save_generator

            gen = load_generator(section.spec, weights=section.weights or None, device=device, trust_code=trust_code,
                                 named_by="config generator.spec")
            save_generator(gen, out, _saved_config(gen, section.spec))
        return [layout.rel(out / "generator.json"), layout.rel(out / "generator.safetensors")]

    cfg = {**section.model_dump(mode="json"), "seed": seed}
    if cfg["family"] == "acgan":  # the default: runs made before the key existed keep their stage key
        del cfg["family"]
    files = (section.weights,) if section.source == "load" and section.weights else ()
    return Stage("generator", cfg, run, files=files, clean=("generator",))


def _saved_config(gen: Any, spec: str) -> dict[str, Any]:
    """What ``save_generator`` needs to rebuild a loaded generator from the run directory alone."""
    from intrinsic_robustness.plugins import is_factory_spec

    own = gen.config() if callable(getattr(gen, "config", None)) else None
    if isinstance(own, dict) and "architecture" in own:
        return dict(own)
    if is_factory_spec(spec):
        return {"architecture": "factory", "factory": spec}
    return {"architecture": "affine" if spec == "affine" else spec, "latent_dim": int(gen.latent_dim),
            "num_classes": int(gen.num_classes), "image_shape": [int(s) for s in gen.image_shape]}


def lipschitz_stage(config: PipelineConfig, method: str, device: torch.device, trust_code: bool = False) -> Stage:
    """One Lipschitz estimate of the run's generator, written to ``lipschitz/<method>.json``."""
    section = config.lipschitz
    options = section.method_options(method)

    def run(ctx: StageContext) -> Sequence[str]:
        from intrinsic_robustness.lipschitz import estimate_lipschitz
        from intrinsic_robustness.lipschitz.estimate import make_estimator

        gen = _load_gen(ctx.layout, device, trust_code)
        # the estimator is built here so that its own options (e.g. certified-local's ``radius``) never collide
        # with the run-wide arguments of estimate_lipschitz
        result = estimate_lipschitz(gen, make_estimator(method, **options), anchors_per_class=section.anchors_per_class,
                                    radius=section.radius, seed=derive_seed(config.run.seed, "lipschitz"),
                                    device=device)  # same anchors for every method
        out = ctx.layout.lipschitz_file(method)
        if is_main():  # under torchrun every rank holds the gathered result; rank 0 writes it
            result.save(out)
        return [ctx.layout.rel(out)]

    cfg = {"anchors_per_class": section.anchors_per_class, "radius": section.radius, "method": method,
           "options": options, "seed": config.run.seed}
    return Stage(f"lipschitz/{method}", cfg, run, inputs=("generator",), distributed=True)


def dataset_stage(config: PipelineConfig, device: torch.device, trust_code: bool = False) -> Stage:
    """Generate the labelled dataset (images, labels, latents) from the run's generator."""
    section = config.dataset

    def run(ctx: StageContext) -> Sequence[str]:
        from intrinsic_robustness.data.synthetic import generate_dataset

        gen = _load_gen(ctx.layout, device, trust_code)
        info = {"spec": "generator", "fingerprint": ctx.upstream["generator"].get("fingerprint")}
        generate_dataset(gen, ctx.layout.dataset_dir, n_train=section.n_train, n_test=section.n_test,
                         seed=derive_seed(config.run.seed, "dataset"), priors=section.priors, generator_info=info,
                         batch_size=section.batch_size, device=device, overwrite=True)
        return [ctx.layout.rel(ctx.layout.manifest_file)]

    cfg = {**section.model_dump(mode="json"), "seed": config.run.seed}
    return Stage("dataset", cfg, run, inputs=("generator",), clean=("dataset",), distributed=True)


def concentration_stage(config: PipelineConfig, device: torch.device) -> Stage:
    """Concentration from data on the real images the generator learned and on the generated test split, into
    ``concentration/<source>.json`` (an estimate from samples, not a bound)."""
    section = config.concentration
    assert section is not None

    def run(ctx: StageContext) -> Sequence[str]:
        from intrinsic_robustness.concentration import estimate_concentration, load_sample

        eps = section.eps if section.eps is not None else config.evaluation.eps
        size = int(read_json(ctx.layout.manifest_file)["image_shape"][-1])  # the eps scale of the generated images
        outputs = []
        for source in section.sources:
            if source == "real":
                points, info = load_sample(config.generator.data, size)
            else:
                from intrinsic_robustness.data.synthetic import load_dataset

                points = load_dataset(ctx.layout.dataset_dir, "test").images
                info = {"data": "generated test split", "kind": "generated", "n": len(points)}
            if section.n is not None and section.n < len(points):
                pick = torch.randperm(len(points), generator=make_generator(section.split_seed))
                points = points[pick[: section.n]]
                info = {**info, "subsample": section.n}
            result = estimate_concentration(points, section.alpha, eps, section.method, section.split_seed, device,
                                            data=info, **section.options)
            out = ctx.layout.concentration_file(source)
            result.save(out)
            outputs.append(ctx.layout.rel(out))
        return outputs

    cfg = {**section.model_dump(mode="json"), "eps": section.eps if section.eps is not None else
           config.evaluation.eps, "real": config.generator.data}
    return Stage("concentration", cfg, run, inputs=("dataset",), clean=("concentration",))


def _real_train(config: PipelineConfig, layout: RunLayout) -> Any:
    """The real train split of ``generator.data`` at the generated images' size (``classifiers.*.data = 'real'``)."""
    from intrinsic_robustness.data.real import RealDataset

    size = int(read_json(layout.manifest_file)["image_shape"][-1])
    return RealDataset.load(config.generator.data, "train", size)


def classifier_stage(config: PipelineConfig, entry: ClassifierConfig, device: torch.device) -> Stage:
    """Train one classifier on the generated (or, ``data = 'real'``, the real) training split into
    ``classifiers/<name>/`` (resumable)."""

    def run(ctx: StageContext) -> Sequence[str]:
        from intrinsic_robustness.data.synthetic import load_dataset
        from intrinsic_robustness.training import fit

        out = ctx.layout.classifier_dir(entry.name)
        done = [ctx.layout.rel(out / "config.json"), ctx.layout.rel(out / "model.safetensors")]
        if (out / "config.json").is_file():  # finished before an interruption: nothing to redo
            return done
        kwargs = {k: getattr(entry, k) for k in ("arch", "eps", "epochs", "batch_size", "lr")
                  if getattr(entry, k) is not None}
        data = _real_train(config, ctx.layout) if entry.data == "real" else \
            load_dataset(ctx.layout.dataset_dir, split="train")
        fit(data if entry.n_train is None else data.head(entry.n_train), entry.method,
            seed=derive_seed(config.run.seed, "classifier", entry.name), device=device, out=str(out),
            force=False, **kwargs, **entry.options)
        return done

    rel = f"classifiers/{entry.name}"
    cfg = {**entry.model_dump(mode="json", exclude={"data"}), "seed": config.run.seed}
    if entry.data == "real":  # (generated data adds no key: runs made before the key existed stay done)
        cfg.update(data="real", real=config.generator.data)
    return Stage(rel, cfg, run, inputs=("dataset",), clean=(rel,), distributed=True)


def evaluation_stage(config: PipelineConfig, entry: ClassifierConfig, device: torch.device,
                     trust_code: bool = False) -> Stage:
    """Attack one classifier under each threat model; JSON results go to ``eval/<name>/<threat>.json``."""
    section = config.evaluation

    def run(ctx: StageContext) -> Sequence[str]:
        from intrinsic_robustness.evaluation import evaluate

        layout = ctx.layout
        grid = tuple(section.eps)
        jobs = [(t, section.attacks.get(t), layout.eval_file(entry.name, t), section.threat_n.get(t, section.n), grid,
                 section.threat_batch_size.get(t, section.batch_size)) for t in section.threats]
        compare_n = min(n for n in (section.n, section.compare_n, config.dataset.n_test) if n is not None)
        jobs += [("unconstrained", [a], layout.compare_file(entry.name, a), compare_n,
                  tuple(section.compare_eps or grid), section.batch_size) for a in section.compare_attacks]
        data = {file: (str(layout.dataset_dir), {}) for _, _, file, _, _, _ in jobs}
        if section.real_n is not None:  # real images: no latents, so the unconstrained threat only
            real_file = layout.real_eval_file(entry.name)
            jobs.append(("unconstrained", section.attacks.get("unconstrained"), real_file, section.real_n, grid,
                         section.batch_size))
            size = int(read_json(layout.manifest_file)["image_shape"][-1])  # the generated images' size
            data[real_file] = (config.generator.data, {"image_size": size})
        outputs = []
        for threat, attacks, file, n, eps, batch_size in jobs:
            gen = _load_gen(layout, device, trust_code) if threat == "in-distribution" else None
            evaluate(str(layout.classifier_dir(entry.name)), data[file][0], generator=gen, threat=threat,
                     attacks=attacks, eps=eps, n=n, batch_size=batch_size,
                     seed=derive_seed(config.run.seed, "evaluation", entry.name, threat), device=device, out=str(file),
                     attack_options=_attack_options(section.attack_options, attacks, threat, device),
                     trust_code=trust_code, reuse=True, **data[file][1], **section.options)  # a stage not resumed
            # starts with eval/<name> removed, so only a finished job of an interrupted attempt is reused
            outputs.append(layout.rel(file))
        return outputs

    rel = f"eval/{entry.name}"
    cfg = {**section.model_dump(mode="json", exclude={"real_n", "compare_eps", "threat_n", "threat_batch_size"}),
           "classifier": entry.name, "seed": config.run.seed}
    if section.compare_eps is not None:  # (likewise: no key unless set)
        cfg.update(compare_eps=section.compare_eps)
    if section.threat_n:  # (likewise)
        cfg.update(threat_n=section.threat_n)
    if section.threat_batch_size:  # (likewise)
        cfg.update(threat_batch_size=section.threat_batch_size)
    if section.real_n is not None:  # (no key without it: runs made before the key existed stay done)
        cfg.update(real_n=section.real_n, real=config.generator.data)
    inputs = ("generator", "dataset", f"classifiers/{entry.name}")
    return Stage(f"evaluation/{entry.name}", cfg, run, inputs=inputs, clean=(rel,), distributed=True)


def _attack_options(options: dict[str, dict[str, Any]], attacks: list[str] | None, threat: str,
                    device: torch.device) -> dict[str, dict[str, Any]] | None:
    """The configured per-attack options of the attacks this evaluation actually runs."""
    from intrinsic_robustness.attacks import parse_attack_names

    chosen = parse_attack_names(attacks, threat, device)
    return {k: v for k, v in options.items() if k in chosen} or None


def report_stage(config: PipelineConfig, upstream: Sequence[str]) -> Stage:
    """Render the report from the run's files (no model is run again)."""

    def run(ctx: StageContext) -> Sequence[str]:
        from intrinsic_robustness.report import write_report

        write_report(ctx.run_dir)
        return [ctx.layout.rel(ctx.layout.report_dir / "report.json")]

    cfg = {"report": config.report.model_dump(mode="json"), "evaluation_eps": config.evaluation.eps,
           "lipschitz": {"percentile": config.lipschitz.percentile, "radius": config.lipschitz.radius,
                         "confidence": config.lipschitz.confidence},
           "classifiers": [c.name for c in config.classifiers], "format": 1}
    return Stage("report", cfg, run, inputs=tuple(upstream))


def build_stages(config: PipelineConfig, device: torch.device | None = None, trust_code: bool = False) -> list[Stage]:
    """All stages of a config, in execution order (``device``: the resolved run device; ``trust_code``: the
    command line's permission for the run's files to name user code)."""
    device = device if device is not None else resolve_device(config.run.device)
    stages = [generator_stage(config, device, trust_code)]
    stages += [lipschitz_stage(config, m, device, trust_code) for m in config.lipschitz.methods]
    stages.append(dataset_stage(config, device, trust_code))
    if config.concentration is not None:
        stages.append(concentration_stage(config, device))
    stages += [classifier_stage(config, c, device) for c in config.classifiers]
    stages += [evaluation_stage(config, c, device, trust_code) for c in config.classifiers]
    stages.append(report_stage(config, [s.name for s in stages]))
    return stages


def run_pipeline(config: PipelineConfig, run_dir: str | os.PathLike[str], force: Sequence[str] = (),
                 on_event: Callable[[StageOutcome], None] | None = None,
                 stages: list[Stage] | None = None, trust_code: bool = False) -> list[StageOutcome]:
    """Run (or resume) every stage of ``config`` in ``run_dir``; returns what each stage did.

    Everything checkable is checked before anything is written (``check_before_run``: user code needs
    ``trust_code``, priors fit the generator). The run directory is locked for the duration: a second
    process on it is refused at once.
    """
    from intrinsic_robustness.pipeline.preflight import check_before_run
    from intrinsic_robustness.storage import check_output

    layout = RunLayout(check_output(run_dir, "--run-dir", kind="directory"))
    check_before_run(config, trust_code, layout.root)
    device = resolve_device(config.run.device)
    if config.run.threads is not None:
        torch.set_num_threads(config.run.threads)
    chosen = stages if stages is not None else build_stages(config, device, trust_code)
    match_force([s.name for s in chosen], force)  # an unknown --force name is refused before anything is written
    with nothing_left_on_early_failure(layout.root), exclusive(layout.root, "run directory"):  # rank 0 locks
        run = main_only(_open_run, layout, config, device)
        return execute(run, chosen, force=force, on_event=on_event)


def _open_run(layout: RunLayout, config: PipelineConfig, device: torch.device) -> RunDir:
    """Open the run directory, record the device (and the world of a torchrun job) and write config.json."""
    run = RunDir.open(layout.root, seed=config.run.seed)
    run.meta["device"] = {"requested": config.run.device, "resolved": str(device)}
    if job_size() > 1:
        run.meta["device"]["world_size"] = job_size()
    write_json(layout.config_file, config_to_dict(config))
    run.save()
    return run
