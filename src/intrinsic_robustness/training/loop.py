"""One training loop for every method: paper defaults, LR schedule, per-epoch history, checkpoints, resume.

Files in ``out``: ``train.json`` (the run's settings, written first), ``checkpoint.safetensors`` (after each
epoch), ``history.jsonl`` (one line per epoch: loss, clean and PGD error on a held-out slice), and on
completion ``model.safetensors`` + ``config.json`` (see :mod:`intrinsic_robustness.models.load`). Every
epoch draws its shuffling, attack starts, projections and dropout from seeds derived from (seed, epoch),
so a run resumed from its checkpoint ends with the same weights as an uninterrupted one.

Under torchrun the loop is data-parallel: ``batch_size`` stays the *global* batch (the recipe's numbers keep
their meaning), every rank takes its contiguous block of each batch, weights its mean loss by its share, and
the gradients are summed over ranks before every step (the same all-reduce DDP performs; the DDP wrapper
itself is not used because the objectives call the model inside frozen inner attacks and the certified loss
never calls its forward, which the wrapper's bookkeeping cannot follow). Buffers follow rank 0. Attack and
dropout draws are named per rank, so a run is deterministic for a given world size and resumes only with it;
rank 0 alone writes the files.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from intrinsic_robustness.distributed import all_reduce_sum_, broadcast_, collect, main_only, rank, share, world_size
from intrinsic_robustness.errors import UserInputError
from intrinsic_robustness.hashing import canonical_hash, tensor_digest
from intrinsic_robustness.models import build_architecture, save_classifier
from intrinsic_robustness.modes import frozen
from intrinsic_robustness.progress import advance, task
from intrinsic_robustness.runtime import derive_seed, make_generator, resolve_device, seeded
from intrinsic_robustness.storage import read_json, set_aside_if_damaged, write_json, write_text
from intrinsic_robustness.training.checkpoint import load_checkpoint, read_checkpoint_meta, save_checkpoint
from intrinsic_robustness.training.objectives import METHODS, paper_recipe, pgd_l2
from intrinsic_robustness.training.schedule import Recipe, eps_at_step, lr_at, warmup_factor

log = logging.getLogger(__name__)

RUN_FILES = ("config.json", "model.safetensors", "checkpoint.safetensors", "history.jsonl", "train.json")


def dataset_tensors(data: Any) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(images, labels, num_classes) from a SyntheticDataset or any dataset yielding (x, y[, z])."""
    if hasattr(data, "images") and hasattr(data, "labels"):
        x, y = data.images, data.labels
    else:
        try:
            items = [data[i] for i in range(len(data))]
        except TypeError:
            raise UserInputError("train_data: expected a dataset with len() and items (x, y[, z])") from None
        if not items:
            raise UserInputError("train_data: the dataset is empty; generate some training examples first")
        x = torch.stack([torch.as_tensor(it[0]) for it in items])
        y = torch.as_tensor([int(it[1]) for it in items])
    x, y = x.float(), y.long()
    if x.ndim != 4 or len(x) != len(y) or len(x) == 0:
        raise UserInputError(f"train_data: images of shape {tuple(x.shape)} with {len(y)} labels; need a "
                             "non-empty [N, C, H, W] batch and one label per image")
    if float(x.min()) < 0 or float(x.max()) > 1:
        raise UserInputError("train_data: pixel values outside [0, 1]; classifiers here take [0,1] images")
    k = int(getattr(data, "num_classes", 0) or int(y.max()) + 1)
    return x, y, max(k, int(y.max()) + 1)


_FRACTIONS = {"ramp": (0.0, 1.0), "warmup": (0.0, 1.0), "clean_weight": (0.0, 0.999)}


def _recipe(method: str, shape: tuple[int, ...], **overrides: Any) -> Recipe:
    recipe = replace(paper_recipe(method, shape), **_checked(overrides))
    if not METHODS.info(method)["adversarial"]:  # a method without a training eps (e.g. standard)
        recipe = replace(recipe, eps=None, ramp=0.0)
    elif recipe.eps is not None and not 0 <= recipe.eps_start <= recipe.eps:
        raise UserInputError(f"--eps-start {recipe.eps_start}: must lie between 0 and the training eps {recipe.eps}")
    return recipe


def _checked(overrides: dict[str, Any]) -> dict[str, Any]:
    """The options actually given, each checked: one line naming the flag when a value makes no sense."""
    chosen = {k: v for k, v in overrides.items() if v is not None and not (k == "arch" and v == "auto")}
    for key, value in chosen.items():
        flag = f"--{key.replace('_', '-')} {value}"
        if key in ("epochs", "batch_size", "num_steps") and int(value) < (0 if key == "num_steps" else 1):
            raise UserInputError(f"{flag}: must be a positive integer")
        if key in ("lr", "eps", "step_size", "clip_norm") and not float(value) > 0:
            raise UserInputError(f"{flag}: must be positive")
        if key in _FRACTIONS and not _FRACTIONS[key][0] <= float(value) <= _FRACTIONS[key][1]:
            raise UserInputError(f"{flag}: must be a fraction in [{_FRACTIONS[key][0]}, {_FRACTIONS[key][1]}]")
        if key == "eps_start" and not float(value) >= 0:
            raise UserInputError(f"{flag}: must be non-negative")
    return chosen


def _optimizer(model: nn.Module, recipe: Recipe) -> torch.optim.Optimizer:
    if recipe.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    return torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=recipe.momentum,
                           weight_decay=recipe.weight_decay)


def _prepare_out(out: Path, settings: dict[str, Any], force: bool) -> bool:
    """Guard a finished model, clear for ``force``; True when a matching checkpoint can be resumed."""
    if force:
        for name in RUN_FILES:
            (out / name).unlink(missing_ok=True)
    elif (out / "config.json").is_file():
        raise UserInputError(f"{out} already holds a finished classifier; pass --force to retrain it or choose "
                             "another --out")
    ckpt = out / "checkpoint.safetensors"
    if not ckpt.is_file() or set_aside_if_damaged(ckpt, "the training checkpoint"):  # damaged: train afresh
        return False
    saved = read_json(out / "train.json") if (out / "train.json").is_file() else {}
    if saved != settings or read_checkpoint_meta(ckpt).get("fingerprint") != settings["fingerprint"]:
        diff = sorted(k for k in set(saved) | set(settings) if saved.get(k) != settings.get(k))
        raise UserInputError(f"{out} holds an unfinished run with other settings ({', '.join(diff) or 'train.json'}"
                             " differ); pass --force to restart or choose another --out")
    return True


def _run_epoch(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
               recipe: Recipe, epoch: int, seed: int, handle: object) -> float:
    """One pass over (x, y) in a seeded order; returns the mean training objective.

    eps and the learning-rate warm-up follow the global optimizer step (``epoch * batches + batch``), so a
    run resumed at an epoch boundary continues exactly where it stopped."""
    objective = METHODS.get(recipe.method)
    per_epoch = -(-len(y) // recipe.batch_size)
    total_steps, lr = recipe.epochs * per_epoch, lr_at(epoch, recipe.epochs, recipe.lr)
    order = torch.randperm(len(y), generator=make_generator(derive_seed(seed, "shuffle", epoch)))
    own = () if world_size() == 1 else (rank(),)  # a rank's own draws; a single process keeps its old names
    gen = make_generator(derive_seed(seed, "attack", epoch, *own), x.device)
    total, count = 0.0, 0
    model.train()
    with seeded(derive_seed(seed, "dropout", epoch, *own), x.device):  # dropout draws from the global RNG
        for batch, start in enumerate(range(0, len(y), recipe.batch_size)):
            step = epoch * per_epoch + batch
            idx, weight = _my_rows(order[start:start + recipe.batch_size])
            idx = idx.to(x.device)
            xb, yb = x[idx], y[idx]
            loss = objective(model, xb, yb, recipe, eps_at_step(step, total_steps, recipe), gen)
            opt.zero_grad(set_to_none=True)
            if own:
                (loss * weight).backward()
                _sum_gradients(model)
            else:
                loss.backward()
            if recipe.clip_norm is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.clip_norm)
            for group in opt.param_groups:
                group["lr"] = lr * warmup_factor(step, total_steps, recipe)
            opt.step()
            broadcast_(list(model.buffers()))  # replicas keep rank 0's buffers (a no-op for one process)
            total += float(loss.detach()) * len(yb) * (weight > 0)
            count += len(yb) * (weight > 0)
            advance(handle, 1)
    if own:
        total, count = (sum(v) for v in zip(*collect(world_size(), lambda _: [(total, count)]), strict=True))
    return total / max(count, 1)


def _my_rows(batch: torch.Tensor) -> tuple[torch.Tensor, float]:
    """This rank's block of a global batch and its share n_rank / n_batch (the whole batch, 1.0, for one process).

    Losses are batch means, so weighting each rank's loss by its share and summing the gradients over ranks
    gives the gradient of the global batch's mean. A rank left without rows (a last batch smaller than the
    world) still runs one row with weight 0, so every rank takes part in every gradient sum.
    """
    block = share(len(batch))
    if len(block) == 0:
        return batch[:1], 0.0
    return batch[block.start:block.stop], len(block) / len(batch)


def _sum_gradients(model: nn.Module) -> None:
    """Sum every trainable parameter's gradient over the ranks (missing gradients count as zeros)."""
    params = [p for p in model.parameters() if p.requires_grad]
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    all_reduce_sum_([p.grad for p in params])


def held_out_errors(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, num_steps: int = 20,
                    seed: int = 0, batch_size: int = 256) -> tuple[float | None, float | None]:
    """Clean error and L2 PGD error (step 2.5 eps / steps, uniform start) on a held-out slice."""
    if len(y) == 0:
        return None, None
    gen = make_generator(derive_seed(seed, "holdout-attack"), x.device)
    wrong_clean = wrong_adv = 0
    with frozen(model):  # one freeze for the whole slice; pgd_l2 enables gradients for its own steps
        for start in range(0, len(y), batch_size):
            xb, yb = x[start:start + batch_size], y[start:start + batch_size]
            with torch.no_grad():
                wrong_clean += int((model(xb).argmax(1) != yb).sum())
            x_adv = pgd_l2(model, xb, yb, eps, num_steps, 2.5 * eps / num_steps, gen)
            with torch.no_grad():
                wrong_adv += int((model(x_adv).argmax(1) != yb).sum())
    return wrong_clean / len(y), wrong_adv / len(y)


def _append_history(out: Path, record: dict[str, Any], completed: int) -> None:
    path = out / "history.jsonl"
    lines = path.read_text().splitlines() if path.is_file() else []
    lines = [ln for ln in lines if ln.strip() and json.loads(ln)["epoch"] <= completed] + [json.dumps(record)]
    write_text(path, "\n".join(lines) + "\n")


def _split(n: int, holdout: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    if holdout < 0 or holdout >= n:
        raise UserInputError(f"--holdout {holdout}: need 0 <= holdout < {n} (the number of training images)")
    order = torch.randperm(n, generator=make_generator(derive_seed(seed, "holdout")))
    return order[holdout:], order[:holdout]


def _build(arch: str, num_classes: int, shape: tuple[int, ...], seed: int, device: torch.device) -> nn.Module:
    with seeded(derive_seed(seed, "init")):  # layer initialisers draw from the global RNG
        model = build_architecture(arch, num_classes, shape)
    return model.to(device)


def _settings(recipe: Recipe, seed: int, holdout: int, eval_eps: float | None, eval_steps: int,
              x: torch.Tensor, y: torch.Tensor, num_classes: int) -> dict[str, Any]:
    """Everything that must match for a checkpoint to be resumed, plus its fingerprint."""
    if int(eval_steps) < 1 or (eval_eps is not None and not float(eval_eps) > 0):
        raise UserInputError(f"eval_steps {eval_steps}, eval_eps {eval_eps}: need at least one step and eps > 0")
    eval_eps = float(eval_eps if eval_eps is not None else (recipe.eps if recipe.eps is not None else 3.0))
    settings = {"recipe": recipe.to_dict(), "seed": int(seed), "holdout": holdout, "eval_eps": eval_eps,
                "eval_steps": int(eval_steps), "n": len(y), "num_classes": num_classes,
                "image_shape": list(x.shape[1:]), "data_digest": tensor_digest(x, y)}
    if world_size() > 1:  # data-parallel runs are deterministic for one world size: resume only with it
        settings["world_size"] = world_size()
    settings["fingerprint"] = canonical_hash(settings)[:16]
    return settings


def _train_epochs(model: nn.Module, opt: torch.optim.Optimizer, train: tuple[torch.Tensor, torch.Tensor],
                  held: tuple[torch.Tensor, torch.Tensor], recipe: Recipe, done: int, settings: dict[str, Any],
                  out: Path) -> None:
    """Epochs ``done`` .. ``recipe.epochs - 1``, each followed by a held-out check, checkpoint and history line."""
    (x, y), (xh, yh) = train, held
    seed = settings["seed"]
    per_epoch = -(-len(y) // recipe.batch_size)
    with task(f"train {recipe.method} ({recipe.arch})", recipe.epochs * per_epoch) as handle:
        advance(handle, done * per_epoch)
        for epoch in range(done, recipe.epochs):
            t0 = time.perf_counter()
            loss = _run_epoch(model, opt, x, y, recipe, epoch, seed, handle)
            seconds = time.perf_counter() - t0
            main_only(_end_epoch, model, opt, (xh, yh), recipe, epoch, {"loss": loss, "seconds": seconds},
                      settings, out)


def _end_epoch(model: nn.Module, opt: torch.optim.Optimizer, held: tuple[torch.Tensor, torch.Tensor],
               recipe: Recipe, epoch: int, measured: dict[str, float], settings: dict[str, Any], out: Path) -> None:
    """Held-out check, checkpoint and history line after ``epoch`` (rank 0's job in a torchrun job)."""
    eval_eps = settings["eval_eps"]
    clean, adv = held_out_errors(model, *held, eval_eps, settings["eval_steps"], settings["seed"])
    per_epoch = -(-(settings["n"] - settings["holdout"]) // recipe.batch_size)
    last_eps = eps_at_step((epoch + 1) * per_epoch - 1, recipe.epochs * per_epoch, recipe)
    record = {"epoch": epoch + 1, "lr": lr_at(epoch, recipe.epochs, recipe.lr), "eps": last_eps,
              "loss": measured["loss"], "clean_error": clean, "adv_error": adv, "adv_eps": eval_eps,
              "seconds": measured["seconds"]}
    # history before checkpoint: a stop between the two retrains this epoch and rewrites its line, never loses it
    _append_history(out, record, epoch)
    save_checkpoint(out / "checkpoint.safetensors", model, opt, epoch + 1, settings["fingerprint"])
    log.info("epoch %d/%d: %s", epoch + 1, recipe.epochs, record)


def fit(train_data: Any, method: str, arch: str = "auto", eps: float | None = None, epochs: int | None = None,
        batch_size: int | None = None, lr: float | None = None, seed: int = 0, device: str | torch.device = "cpu",
        out: str | os.PathLike[str] | None = None, force: bool = False, holdout: int | None = None,
        num_steps: int | None = None, step_size: float | None = None, beta: float | None = None,
        eval_eps: float | None = None, eval_steps: int = 20, ramp: float | None = None,
        warmup: float | None = None, clip_norm: float | None = None, clean_weight: float | None = None,
        eps_start: float | None = None) -> Path:
    """Train a classifier with ``method`` (standard, pgd, trades, certified) and save it into ``out``.

    Unset options take the paper's recipe for the image size (see ``objectives.paper_recipe``); ``ramp``,
    ``warmup``, ``clip_norm``, ``clean_weight`` and ``eps_start`` are the stabilisers of ``schedule``. ``holdout``
    training images (default min(500, N/10)) are kept aside to log clean and PGD error (at ``eval_eps``,
    default the training eps, else 3.0) after every epoch. Resumes from ``out``'s checkpoint when the
    settings match; refuses to replace a finished model unless ``force``.
    """
    if out is None:
        raise UserInputError("fit: pass out=DIR (where the classifier is saved)")
    out = Path(out)
    dev = resolve_device(device)
    x_all, y_all, num_classes = dataset_tensors(train_data)
    shape = tuple(int(s) for s in x_all.shape[1:])
    method = METHODS.canonical(method)
    recipe = _recipe(method, shape, arch=arch, eps=eps, epochs=epochs, batch_size=batch_size, lr=lr,
                     num_steps=num_steps, step_size=step_size, beta=beta, ramp=ramp, warmup=warmup,
                     clip_norm=clip_norm, clean_weight=clean_weight, eps_start=eps_start)
    holdout = min(500, len(y_all) // 10) if holdout is None else int(holdout)
    settings = _settings(recipe, seed, holdout, eval_eps, eval_steps, x_all, y_all, num_classes)
    train_idx, hold_idx = _split(len(y_all), holdout, seed)
    model = _build(recipe.arch, num_classes, shape, seed, dev)
    if METHODS.info(method)["certified"]:
        from intrinsic_robustness.certify import check_certifiable

        check_certifiable(model, shape)
    opt = _optimizer(model, recipe)
    resume = main_only(_prepare_out, out, settings, force)  # torchrun: rank 0 writes, every rank reads
    done = load_checkpoint(out / "checkpoint.safetensors", model, opt, dev) if resume else 0
    if not resume:
        main_only(write_json, out / "train.json", settings)
    x, y = x_all[train_idx].to(dev), y_all[train_idx].to(dev)
    xh, yh = x_all[hold_idx].to(dev), y_all[hold_idx].to(dev)
    _train_epochs(model, opt, (x, y), (xh, yh), recipe, done, settings, out)
    config = {"arch": recipe.arch, "num_classes": num_classes, "image_shape": list(shape), "method": method,
              "recipe": recipe.to_dict(), "seed": int(seed), "holdout": holdout, "n_train": len(y)}
    if world_size() > 1:
        config["world_size"] = world_size()
    main_only(_finish, model, out, config)
    return out


def _finish(model: nn.Module, out: Path, config: dict[str, Any]) -> None:
    """Save the finished classifier with its history summary and drop the checkpoint."""
    history = [json.loads(ln) for ln in (out / "history.jsonl").read_text().splitlines() if ln.strip()]
    config = {**config, "final": history[-1] if history else None,
              "train_seconds": sum(float(h["seconds"]) for h in history)}
    save_classifier(model.eval(), out, config)
    (out / "checkpoint.safetensors").unlink(missing_ok=True)
