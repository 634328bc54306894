"""Training the ``flow`` family on real images: rectified flow matching with per-epoch checkpoints and resume.

The output directory has the same files as an ACGAN training (``generator.json`` + ``generator.safetensors``
after every finished epoch, ``checkpoint.safetensors`` with the network and Adam state, sample grids,
``training.json`` with history, wall time and fidelity). Each epoch draws its permutation, noise, times and
label drops from its own seeded generator, so a resumed run ends with exactly the weights of an
uninterrupted one. The sampler (``steps``, ``solver``, ``guidance``) does not affect training: changing it on
a rerun keeps the weights and re-saves the generator (and its fidelity) with the new sampler.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from pathlib import Path
from typing import Any

import torch

from intrinsic_robustness.errors import UserInputError
from intrinsic_robustness.generators.flow import (
    NET_KEYS,
    SAMPLER_KEYS,
    FlowGenerator,
    check_sampler,
    flow_matching_loss,
)
from intrinsic_robustness.progress import advance, task
from intrinsic_robustness.runtime import derive_seed, make_generator, resolve_device, seeded
from intrinsic_robustness.storage import atomic_path, load_tensors, read_json, save_tensors, write_json
from intrinsic_robustness.weights import load_state_strict, optimizer_tensors, restore_optimizer

log = logging.getLogger(__name__)

TRAINING_FILE = "training.json"
CHECKPOINT_FILE = "checkpoint.safetensors"
TRAINING_FORMAT = "irob-flow-training/1"
IDENTITY_KEYS = ("family", "dataset", "image_shape", "num_classes", "batch_size", "lr", "seed", "max_batches",
                 *NET_KEYS, "cond_drop")


def train_flow(dataset: str, out: str | os.PathLike[str], epochs: int, batch_size: int = 128, lr: float = 1e-3,
               seed: int = 0, device: str | torch.device = "cpu", size: int = 28, width: int = 12, levels: int = 2,
               emb_dim: int = 32, steps: int = 8, solver: str = "heun", guidance: float = 0.0,
               cond_drop: float = 0.1, max_batches: int | None = None, fidelity_epochs: int = 2,
               fidelity_per_class: int = 100, force: bool = False) -> dict[str, Any]:
    """Train (or resume) a flow generator on ``dataset`` for ``epochs`` epochs; returns ``training.json``."""
    from intrinsic_robustness.data.real import load_real

    _check_options(epochs, batch_size, lr, width, levels, emb_dim, steps, solver, guidance, cond_drop, max_batches)
    out = Path(out)
    train, test = load_real(dataset, "train", size), load_real(dataset, "test", size)
    if len(train[1]) < batch_size:
        raise UserInputError(f"--batch-size {batch_size}: larger than the {len(train[1])} training images")
    if size % (2 ** levels):
        raise UserInputError(f"--size {size}: must be divisible by 2^levels = {2 ** levels}; choose another "
                             "--size or fewer --levels")
    config = {"family": "flow", "dataset": dataset, "image_shape": list(train[0].shape[1:]),
              "num_classes": int(train[1].max()) + 1, "batch_size": int(batch_size), "lr": float(lr),
              "seed": int(seed), "max_batches": max_batches, "size": int(size), "width": int(width),
              "levels": int(levels), "emb_dim": int(emb_dim), "cond_drop": float(cond_drop),
              "steps": int(steps), "solver": solver, "guidance": float(guidance), "betas": [0.9, 0.999]}
    dev = resolve_device(device)
    gen, opt = _build(config, dev)
    history = _resume(out, config, gen, opt, force)
    with task("flow epochs", epochs) as handle:
        advance(handle, min(len(history), epochs))
        for epoch in range(len(history), epochs):
            start = time.perf_counter()
            loss = train_epoch(gen, opt, train, config, epoch, dev)
            history.append({"epoch": epoch + 1, "loss": loss, "seconds": time.perf_counter() - start})
            _save_epoch(out, config, gen, opt, history)
            log.info("epoch %d: %s", epoch + 1, history[-1])
            advance(handle)
    return _finish(out, config, gen, history, train, test, dev, fidelity_epochs, fidelity_per_class)


def _check_options(epochs: int, batch_size: int, lr: float, width: int, levels: int, emb_dim: int, steps: int,
                   solver: str, guidance: float, cond_drop: float, max_batches: int | None) -> None:
    for flag, value in (("--epochs", epochs), ("--batch-size", batch_size), ("--width", width)):
        if int(value) < 1:
            raise UserInputError(f"{flag} {value}: expected a positive integer")
    if levels < 0 or emb_dim < 2 or emb_dim % 2:
        raise UserInputError(f"--levels {levels} / --emb-dim {emb_dim}: need levels >= 0 and an even emb-dim >= 2")
    if not (isinstance(lr, int | float) and math.isfinite(lr) and lr > 0):
        raise UserInputError(f"--lr {lr}: expected a positive learning rate")
    if not 0 <= cond_drop < 1:
        raise UserInputError(f"--cond-drop {cond_drop}: expected a probability in [0, 1)")
    if guidance and not cond_drop:
        raise UserInputError(f"--guidance {guidance} needs an unconditional model: give --cond-drop > 0 (e.g. 0.1)")
    if max_batches is not None and max_batches < 1:
        raise UserInputError(f"--max-batches {max_batches}: expected a positive integer")
    try:
        check_sampler(steps, solver, guidance)
    except ValueError as exc:
        raise UserInputError(f"--{exc}") from None


def _build(config: dict[str, Any], device: torch.device) -> tuple[FlowGenerator, torch.optim.Optimizer]:
    with seeded(derive_seed(config["seed"], "flow", "init")):  # seeded initialisation, global RNG left untouched
        gen = FlowGenerator(config["num_classes"], config["image_shape"],
                            **{k: config[k] for k in (*NET_KEYS, *SAMPLER_KEYS)}).to(device)
    return gen, torch.optim.Adam(gen.parameters(), lr=config["lr"], betas=tuple(config["betas"]))


def train_epoch(gen: FlowGenerator, opt: torch.optim.Optimizer, data: tuple[torch.Tensor, torch.Tensor],
                config: dict[str, Any], epoch: int, device: torch.device) -> float:
    """One pass over a fresh permutation of ``data`` (images in [0, 1]); returns the mean flow-matching loss."""
    images, labels = data
    rng = make_generator(derive_seed(config["seed"], "flow", "epoch", epoch))
    perm = torch.randperm(len(labels), generator=rng)
    bs = config["batch_size"]
    n_batches = len(labels) // bs if config["max_batches"] is None else min(config["max_batches"], len(labels) // bs)
    gen.train()
    total = 0.0
    with task(f"epoch {epoch + 1}", n_batches) as handle:
        for b in range(n_batches):
            idx = perm[b * bs:(b + 1) * bs]
            x1, y = images[idx] * 2 - 1, labels[idx].clone()
            z, t = torch.randn(x1.shape, generator=rng), torch.rand(bs, generator=rng)
            y[torch.rand(bs, generator=rng) < config["cond_drop"]] = gen.num_classes  # the "no class" token
            loss = flow_matching_loss(gen.net, x1.to(device), y.to(device), z.to(device), t.to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach())
            advance(handle)
            if (b + 1) % 100 == 0:  # background runs have no live progress bar; -v shows this
                log.info("epoch %d: batch %d/%d, loss %.4f", epoch + 1, b + 1, n_batches, total / (b + 1))
    gen.eval()
    return total / max(1, n_batches)


def _generator_config(gen: FlowGenerator, config: dict[str, Any], epochs: int) -> dict[str, Any]:
    return {**gen.config(), "trained_on": config["dataset"], "epochs": epochs}


def _save_epoch(out: Path, config: dict[str, Any], gen: FlowGenerator, opt: torch.optim.Optimizer,
                history: list[dict[str, Any]]) -> None:
    """Checkpoint first (the resume point), then the loadable generator, the grid and training.json."""
    from intrinsic_robustness.generators.images import save_class_grid
    from intrinsic_robustness.generators.load import save_generator

    opt_tensors, opt_groups = optimizer_tensors(opt, "opt")
    metadata = {"format": TRAINING_FORMAT, "epoch": str(len(history)), "config": json.dumps(config),
                "history": json.dumps(history), "opt": opt_groups}
    tensors = {**{f"G.{k}": v for k, v in gen.state_dict().items()}, **opt_tensors}
    save_tensors(out / CHECKPOINT_FILE, tensors, metadata)
    save_generator(gen, out, _generator_config(gen, config, len(history)))
    grid = save_class_grid(gen, out / "samples" / f"epoch-{len(history):04d}.png", seed=config["seed"])
    with atomic_path(out / "samples.png") as tmp:
        shutil.copyfile(grid, tmp)
    write_json(out / TRAINING_FILE, _summary(config, history))


def _summary(config: dict[str, Any], history: list[dict[str, Any]], fidelity: dict[str, Any] | None = None) -> dict:
    data = {"format": TRAINING_FORMAT, "config": config, "epochs_done": len(history), "history": history,
            "wall_seconds": float(sum(h["seconds"] for h in history))}
    if fidelity is not None:
        data["fidelity"] = fidelity
    return data


def _resume(out: Path, config: dict[str, Any], gen: FlowGenerator, opt: torch.optim.Optimizer,
            force: bool) -> list[dict[str, Any]]:
    """Restore the last finished epoch from ``out`` (empty history when starting fresh)."""
    path = out / CHECKPOINT_FILE
    if not path.exists() or force:
        return []
    meta = _checkpoint_metadata(path)
    saved = json.loads(meta.get("config", "{}"))
    for key in IDENTITY_KEYS:
        if saved.get(key) != config.get(key):
            raise UserInputError(f"{out}: holds a run with {key}={saved.get(key)!r}, not {config.get(key)!r}; "
                                 "rerun with the same options to resume, choose another --out, or pass --force")
    tensors = load_tensors(path)
    load_state_strict(gen, {k[2:]: v for k, v in tensors.items() if k.startswith("G.")}, source=str(path))
    restore_optimizer(opt, "opt", tensors, meta["opt"])
    history = json.loads(meta["history"])
    log.info("resuming %s after epoch %d", out, len(history))
    return history


def _checkpoint_metadata(path: Path) -> dict[str, str]:
    from intrinsic_robustness.weights import checkpoint_metadata

    return checkpoint_metadata(path, TRAINING_FORMAT, "a flow training checkpoint")


def _finish(out: Path, config: dict[str, Any], gen: FlowGenerator, history: list[dict[str, Any]],
            train: tuple[torch.Tensor, torch.Tensor], test: tuple[torch.Tensor, torch.Tensor], device: torch.device,
            fidelity_epochs: int, per_class: int) -> dict[str, Any]:
    """Re-save the generator if its file is stale (killed mid-save, new sampler), then measure fidelity once."""
    from intrinsic_robustness.generators.fidelity import fidelity_report
    from intrinsic_robustness.generators.load import save_generator

    wanted_gen = _generator_config(gen, config, len(history))
    saved = read_json(out / "generator.json") if (out / "generator.json").is_file() else {}
    if any(saved.get(k) != v for k, v in wanted_gen.items()):
        save_generator(gen, out, wanted_gen)
    previous = read_json(out / TRAINING_FILE) if (out / TRAINING_FILE).is_file() else {}
    fidelity = previous.get("fidelity")
    wanted = {"epoch": len(history), "samples_per_class": per_class, "classifier_epochs": fidelity_epochs,
              "sampler": {k: config[k] for k in SAMPLER_KEYS}}
    if not fidelity or any(fidelity.get(k) != v for k, v in wanted.items()):
        start = time.perf_counter()
        fidelity = fidelity_report(gen, train, test, seed=config["seed"], epochs=fidelity_epochs,
                                   per_class=per_class, device=device, max_batches=config["max_batches"])
        fidelity.update(wanted, seconds=time.perf_counter() - start)
    summary = _summary(config, history, fidelity)
    write_json(out / TRAINING_FILE, summary)
    return summary
