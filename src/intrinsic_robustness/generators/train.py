"""ACGAN training on real images with per-epoch safetensors checkpoints, sample grids and resume.

Output directory: ``generator.json`` + ``generator.safetensors`` (loadable by ``load_generator`` after
every finished epoch), ``checkpoint.safetensors`` (generator, discriminator and both optimizer states;
optimizer hyper-parameters as JSON metadata, nothing pickled), ``samples/epoch-NNNN.png`` and
``samples.png`` (class-by-row grids) and ``training.json`` (history, wall time, fidelity). Every epoch
draws its batches from its own seeded generator, so a resumed run equals an uninterrupted one.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from intrinsic_robustness.errors import UserInputError
from intrinsic_robustness.generators.acgan import ACGANDiscriminator, ACGANGenerator
from intrinsic_robustness.generators.fidelity import fidelity_report
from intrinsic_robustness.generators.images import save_class_grid
from intrinsic_robustness.generators.load import save_generator
from intrinsic_robustness.progress import advance, task
from intrinsic_robustness.runtime import derive_seed, make_generator, resolve_device, seeded
from intrinsic_robustness.storage import load_tensors, read_json, save_tensors, set_aside_if_damaged, write_json
from intrinsic_robustness.weights import load_state_strict, optimizer_tensors, restore_optimizer

log = logging.getLogger(__name__)

TRAINING_FILE = "training.json"
CHECKPOINT_FILE = "checkpoint.safetensors"
TRAINING_FORMAT = "irob-acgan-training/2"
# Options that define a run: resuming with different values would silently mix two trainings.
IDENTITY_KEYS = ("dataset", "image_shape", "num_classes", "latent_dim", "batch_size", "lr", "seed", "max_batches",
                 "width", "hidden")


def train_acgan(dataset: str, out: str | os.PathLike[str], epochs: int, batch_size: int = 64, lr: float = 2e-4,
                seed: int = 0, device: str | torch.device = "cpu", latent_dim: int = 100, size: int = 28,
                max_batches: int | None = None, fidelity_epochs: int = 2, fidelity_per_class: int = 100,
                force: bool = False, width: int = 64, hidden: int = 1024) -> dict[str, Any]:
    """Train (or resume) an ACGAN on ``dataset`` for ``epochs`` epochs; returns the ``training.json`` content."""
    from intrinsic_robustness.data.real import load_real

    _check_options(epochs, batch_size, lr, latent_dim, max_batches, width, hidden)
    out = Path(out)
    train = load_real(dataset, "train", size)
    test = load_real(dataset, "test", size)
    if len(train[1]) < batch_size:
        raise UserInputError(f"--batch-size {batch_size}: larger than the {len(train[1])} training images")
    config = {"dataset": dataset, "image_shape": list(train[0].shape[1:]), "num_classes": int(train[1].max()) + 1,
              "latent_dim": int(latent_dim), "batch_size": int(batch_size), "lr": float(lr), "seed": int(seed),
              "max_batches": max_batches, "betas": [0.5, 0.999], "size": int(size),
              "width": int(width), "hidden": int(hidden)}
    dev = resolve_device(device)
    gen, disc, opt_g, opt_d = _build(config, dev)
    history = _resume(out, config, gen, disc, opt_g, opt_d, force)
    with task("ACGAN epochs", epochs) as handle:
        advance(handle, min(len(history), epochs))
        for epoch in range(len(history), epochs):
            start = time.perf_counter()
            stats = _train_epoch(gen, disc, opt_g, opt_d, train, config, epoch, dev)
            history.append({"epoch": epoch + 1, **stats, "seconds": time.perf_counter() - start})
            _save_epoch(out, config, gen, disc, opt_g, opt_d, history)
            log.info("epoch %d: %s", epoch + 1, history[-1])
            advance(handle)
    return _finish(out, config, gen, history, train, test, dev, fidelity_epochs, fidelity_per_class)


def _check_options(epochs: int, batch_size: int, lr: float, latent_dim: int, max_batches: int | None,
                   width: int, hidden: int) -> None:
    for flag, value in (("--epochs", epochs), ("--batch-size", batch_size), ("--latent-dim", latent_dim),
                        ("--width", width), ("--hidden", hidden)):
        if int(value) < 1:
            raise UserInputError(f"{flag} {value}: expected a positive integer")
    if not lr > 0:
        raise UserInputError(f"--lr {lr}: expected a positive learning rate")
    if max_batches is not None and max_batches < 1:
        raise UserInputError(f"--max-batches {max_batches}: expected a positive integer")


def _build(config: dict[str, Any], device: torch.device) -> tuple[nn.Module, nn.Module, Any, Any]:
    with seeded(derive_seed(config["seed"], "acgan", "init")):  # seeded initialisation, global RNG left untouched
        shape, width, hidden = config["image_shape"], config["width"], config["hidden"]
        gen = ACGANGenerator(config["latent_dim"], config["num_classes"], shape, width, hidden).to(device)
        disc = ACGANDiscriminator(config["num_classes"], shape, width, hidden).to(device)
    betas = tuple(config["betas"])
    opt_g = torch.optim.Adam(gen.parameters(), lr=config["lr"], betas=betas)
    opt_d = torch.optim.Adam(disc.parameters(), lr=config["lr"], betas=betas)
    return gen, disc, opt_g, opt_d


def _train_epoch(gen: nn.Module, disc: nn.Module, opt_g: Any, opt_d: Any, data: tuple[torch.Tensor, torch.Tensor],
                 config: dict[str, Any], epoch: int, device: torch.device) -> dict[str, float]:
    """One pass over a fresh permutation; returns mean losses and the auxiliary classifier's accuracies."""
    images, labels = data
    rng = make_generator(derive_seed(config["seed"], "acgan", "epoch", epoch))
    perm = torch.randperm(len(labels), generator=rng)
    bs, k = config["batch_size"], config["num_classes"]
    n_batches = len(labels) // bs if config["max_batches"] is None else min(config["max_batches"], len(labels) // bs)
    gen.train()
    disc.train()
    sums = torch.zeros(4)
    with task(f"epoch {epoch + 1}", n_batches) as handle:
        for b in range(n_batches):
            idx = perm[b * bs:(b + 1) * bs]
            z = torch.randn(bs, config["latent_dim"], generator=rng)
            y_fake = torch.randint(0, k, (bs,), generator=rng)
            sums += _step(gen, disc, opt_g, opt_d, images[idx].to(device), labels[idx].to(device),
                          z.to(device), y_fake.to(device))
            advance(handle)
            if (b + 1) % 100 == 0:  # background runs have no live progress bar; -v shows this
                log.info("epoch %d: batch %d/%d", epoch + 1, b + 1, n_batches)
    means = (sums / max(1, n_batches)).tolist()
    return dict(zip(("d_loss", "g_loss", "real_class_accuracy", "fake_class_accuracy"), means, strict=True))


def _step(gen: nn.Module, disc: nn.Module, opt_g: Any, opt_d: Any, x: torch.Tensor, y: torch.Tensor,
          z: torch.Tensor, y_fake: torch.Tensor) -> torch.Tensor:
    """ACGAN update: D on real/fake + class losses, then G to fool D and be classified as y_fake."""
    fake = gen.decode(z, y_fake)
    real_adv, real_cls = disc(x)
    fake_adv, fake_cls = disc(fake.detach())
    d_loss = (F.binary_cross_entropy_with_logits(real_adv, torch.ones_like(real_adv))
              + F.binary_cross_entropy_with_logits(fake_adv, torch.zeros_like(fake_adv))
              + F.cross_entropy(real_cls, y) + F.cross_entropy(fake_cls, y_fake))
    opt_d.zero_grad(set_to_none=True)
    d_loss.backward()
    opt_d.step()
    disc.requires_grad_(False)
    adv, cls = disc(fake)
    g_loss = F.binary_cross_entropy_with_logits(adv, torch.ones_like(adv)) + F.cross_entropy(cls, y_fake)
    opt_g.zero_grad(set_to_none=True)
    g_loss.backward()
    opt_g.step()
    disc.requires_grad_(True)
    with torch.no_grad():
        real_acc = (real_cls.argmax(1) == y).float().mean()
        fake_acc = (cls.argmax(1) == y_fake).float().mean()
    return torch.stack([d_loss.detach(), g_loss.detach(), real_acc, fake_acc]).cpu()


def _save_epoch(out: Path, config: dict[str, Any], gen: nn.Module, disc: nn.Module, opt_g: Any, opt_d: Any,
                history: list[dict[str, Any]]) -> None:
    """Checkpoint first (the resume point), then the loadable generator, the grid and training.json."""
    tensors = {**{f"G.{k}": v for k, v in gen.state_dict().items()},
               **{f"D.{k}": v for k, v in disc.state_dict().items()}}
    opt_g_tensors, opt_g_groups = optimizer_tensors(opt_g, "optG")
    opt_d_tensors, opt_d_groups = optimizer_tensors(opt_d, "optD")
    metadata = {"format": TRAINING_FORMAT, "epoch": str(len(history)), "config": json.dumps(config),
                "history": json.dumps(history), "optG": opt_g_groups, "optD": opt_d_groups}
    save_tensors(out / CHECKPOINT_FILE, {**tensors, **opt_g_tensors, **opt_d_tensors}, metadata)
    save_generator(gen, out, {**gen.config(), "trained_on": config["dataset"], "epochs": len(history)})
    grid = save_class_grid(gen, out / "samples" / f"epoch-{len(history):04d}.png", seed=config["seed"])
    _copy_atomic(grid, out / "samples.png")
    write_json(out / TRAINING_FILE, _summary(config, history))


def _copy_atomic(src: Path, dst: Path) -> None:
    from intrinsic_robustness.storage import atomic_path

    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)


def _summary(config: dict[str, Any], history: list[dict[str, Any]], fidelity: dict[str, Any] | None = None) -> dict:
    data = {"format": TRAINING_FORMAT, "config": config, "epochs_done": len(history), "history": history,
            "wall_seconds": float(sum(h["seconds"] for h in history))}
    if fidelity is not None:
        data["fidelity"] = fidelity
    return data


def _resume(out: Path, config: dict[str, Any], gen: nn.Module, disc: nn.Module, opt_g: Any, opt_d: Any,
            force: bool) -> list[dict[str, Any]]:
    """Restore the last finished epoch from ``out`` (empty history when starting fresh)."""
    path = out / CHECKPOINT_FILE
    if not path.exists() or force or set_aside_if_damaged(path, "the ACGAN checkpoint"):  # damaged: train afresh
        return []
    meta = _checkpoint_metadata(path)
    saved = json.loads(meta.get("config", "{}"))
    for key in IDENTITY_KEYS:
        if saved.get(key) != config.get(key):
            raise UserInputError(f"{out}: holds a run with {key}={saved.get(key)!r}, not {config.get(key)!r}; "
                                 "rerun with the same options to resume, choose another --out, or pass --force")
    tensors = load_tensors(path)
    for prefix, module in (("G.", gen), ("D.", disc)):
        state = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
        load_state_strict(module, state, source=str(path))
    restore_optimizer(opt_g, "optG", tensors, meta["optG"])
    restore_optimizer(opt_d, "optD", tensors, meta["optD"])
    history = json.loads(meta["history"])
    log.info("resuming %s after epoch %d", out, len(history))
    return history


def _checkpoint_metadata(path: Path) -> dict[str, str]:
    from intrinsic_robustness.weights import checkpoint_metadata

    return checkpoint_metadata(path, TRAINING_FORMAT, "an ACGAN training checkpoint")


def _finish(out: Path, config: dict[str, Any], gen: nn.Module, history: list[dict[str, Any]],
            train: tuple[torch.Tensor, torch.Tensor], test: tuple[torch.Tensor, torch.Tensor], device: torch.device,
            fidelity_epochs: int, per_class: int) -> dict[str, Any]:
    """Measure fidelity once per finished training length and record it in training.json."""
    saved = read_json(out / "generator.json") if (out / "generator.json").is_file() else {}
    if saved.get("epochs") != len(history):  # killed between checkpoint and generator writes
        save_generator(gen, out, {**gen.config(), "trained_on": config["dataset"], "epochs": len(history)})
    previous = read_json(out / TRAINING_FILE) if (out / TRAINING_FILE).is_file() else {}
    fidelity = previous.get("fidelity")
    wanted = {"epoch": len(history), "samples_per_class": per_class, "classifier_epochs": fidelity_epochs}
    stale = not fidelity or "frechet_distance" not in fidelity  # made before distribution fidelity existed
    if stale or any(fidelity.get(k) != v for k, v in wanted.items()):
        start = time.perf_counter()
        fidelity = fidelity_report(gen, train, test, seed=config["seed"], epochs=fidelity_epochs,
                                   per_class=per_class, device=device, max_batches=config["max_batches"])
        fidelity.update(epoch=len(history), seconds=time.perf_counter() - start)
    summary = _summary(config, history, fidelity)
    write_json(out / TRAINING_FILE, summary)
    return summary


FAMILY_DEFAULT = "acgan"


def trainer(family: str) -> Any:
    """The training function of a generator family (``acgan`` or ``flow``); unknown names are a one-line error."""
    from intrinsic_robustness.generators.flow_train import train_flow

    trainers = {"acgan": train_acgan, "flow": train_flow}
    if family not in trainers:
        raise UserInputError(f"--family {family!r}: choose from {', '.join(trainers)}")
    return trainers[family]


def train_family(family: str, dataset: str, out: str | os.PathLike[str], epochs: int,
                 **options: Any) -> dict[str, Any]:
    """Train (or resume) a generator of ``family``; an option that family does not take is a one-line error."""
    import inspect

    fn = trainer(family)
    accepted = inspect.signature(fn).parameters
    for name in options:
        if name not in accepted:
            others = [f for f in ("acgan", "flow") if f != family and name in inspect.signature(trainer(f)).parameters]
            where = f"; it belongs to --family {others[0]}" if others else ""
            raise UserInputError(f"--{name.replace('_', '-')}: not an option of --family {family}{where}")
    return fn(dataset, out, epochs, **options)
