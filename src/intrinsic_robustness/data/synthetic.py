"""Labelled synthetic datasets that keep each image's latent code: x = decode(z, y), stored as float32.

On disk (one directory): ``manifest.json`` plus safetensors shards ``{split}-{k:05d}.safetensors`` with
``images`` (float32, exactly decode(z, y)), ``labels`` (int64) and ``latents`` (float32). Shards are
written one at a time, so memory stays bounded; the directory appears atomically (temp dir + rename). In a
torchrun job the ranks decode blocks of each shard's batches and rank 0 writes the same bytes.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from intrinsic_robustness.distributed import collect, is_main, main_only, share
from intrinsic_robustness.errors import UserInputError
from intrinsic_robustness.hashing import file_sha256
from intrinsic_robustness.modes import evaluating
from intrinsic_robustness.progress import advance, task
from intrinsic_robustness.runtime import derive_seed, make_generator
from intrinsic_robustness.storage import load_tensors, read_versioned, save_tensors, write_json

FORMAT = "irob-synthetic/1"
SPLITS = ("train", "test")


class SyntheticDataset(Dataset):
    """In-memory split of a generated dataset; items are ``(x, y, z)``."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, latents: torch.Tensor,
                 manifest: dict[str, Any] | None = None) -> None:
        if not (len(images) == len(labels) == len(latents)):
            raise UserInputError(f"dataset: {len(images)} images, {len(labels)} labels, {len(latents)} latents; "
                                 "counts must match")
        self.images, self.labels, self.latents = images, labels.long(), latents
        self.manifest = manifest or {}

    @property
    def num_classes(self) -> int:
        return int(self.manifest.get("num_classes", int(self.labels.max()) + 1 if len(self.labels) else 0))

    def __len__(self) -> int:
        return len(self.labels)

    def head(self, n: int) -> SyntheticDataset:
        """The first ``n`` examples (a classifier may train on part of the training split)."""
        return SyntheticDataset(self.images[:n], self.labels[:n], self.latents[:n], self.manifest)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.images[i], self.labels[i], self.latents[i]


def balanced_labels(n: int, num_classes: int, rng: torch.Generator) -> torch.Tensor:
    """Exactly balanced labels (counts differ by at most one), in random order."""
    labels = torch.arange(n) % num_classes
    return labels[torch.randperm(n, generator=rng)]


def prior_labels(n: int, priors: Sequence[float], rng: torch.Generator) -> torch.Tensor:
    p = torch.tensor(list(priors), dtype=torch.float64)
    if (p < 0).any() or abs(float(p.sum()) - 1.0) > 1e-6:
        raise UserInputError(f"priors {list(priors)}: need non-negative values summing to 1")
    return torch.multinomial(p, n, replacement=True, generator=rng)


def check_images(x: object, expected: tuple[int, ...], name: str = "generator", where: str = "") -> torch.Tensor:
    """``decode``'s output for one batch at run time: the shape asked for, finite and within [0, 1]. The first
    batch where this fails is named (``where``: which examples), with how many images are bad and the first."""
    at = f" ({where})" if where else ""
    if not isinstance(x, torch.Tensor) or tuple(x.shape) != tuple(expected):
        got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise UserInputError(f"{name}: decode returned shape {got} for a batch of {expected[0]}{at}, expected "
                             f"{tuple(expected)}; its output must not depend on the batch size")
    flat = x.detach().flatten(1)
    nonfinite = ~torch.isfinite(flat).all(dim=1)
    outside = (flat.nan_to_num(0.5) < -1e-6).any(dim=1) | (flat.nan_to_num(0.5) > 1 + 1e-6).any(dim=1)
    for bad, what in ((nonfinite, "NaN or inf pixels"), (outside, "pixels outside [0, 1]")):
        if bad.any():
            first = int(bad.nonzero()[0])
            raise UserInputError(f"{name}: decode gave {what} for {int(bad.sum())} of {len(bad)} images{at}, the "
                                 f"first at row {first} of the batch; a generator must give finite images in [0, 1] "
                                 "for every latent (clamp or squash inside decode)")
    return x


def _decode(gen: Any, z: torch.Tensor, y: torch.Tensor, device: torch.device, where: str = "") -> torch.Tensor:
    x = gen.decode(z.to(device), y.to(device))
    check_images(x, (len(z), *(int(s) for s in gen.image_shape)), where=where)
    return x.float().cpu().clamp(0, 1)  # within 1e-6 of [0, 1]: exactly on it


@torch.no_grad()
def _write_split(gen: Any, tmp: Path | None, split: str, n: int, seed: int, priors: Sequence[float] | None,
                 batch_size: int, shard_size: int, device: torch.device) -> dict[str, Any]:
    """One split, shard by shard. Every rank of a torchrun job draws every latent (one CPU sequence, as a
    single process does) and decodes its block of the shard's batches; rank 0 (``tmp`` set) writes."""
    rng = make_generator(derive_seed(seed, "dataset", split))
    k = int(gen.num_classes)
    labels = balanced_labels(n, k, rng) if priors is None else prior_labels(n, priors, rng)
    shards = []
    with task(f"generate {split}", n) as handle:
        for index, start in enumerate(range(0, n, shard_size)):
            stop = min(n, start + shard_size)
            spans = [(b, min(stop, b + batch_size)) for b in range(start, stop, batch_size)]
            zs = [torch.randn(e - b, int(gen.latent_dim), generator=rng) for b, e in spans]  # CPU: any device

            def decode_block(block: range, zs: list[torch.Tensor] = zs,
                             spans: list[tuple[int, int]] = spans) -> list[torch.Tensor]:
                xs = []
                for i in block:
                    b, e = spans[i]
                    xs.append(_decode(gen, zs[i], labels[b:e], device, f"{split} examples {b}-{e - 1}"))
                    advance(handle, len(zs[i]))
                return xs

            xs = collect(len(spans), decode_block, to_all=False)
            if tmp is None:
                continue
            advance(handle, stop - start - sum(len(zs[i]) for i in share(len(spans))))  # the other ranks' part
            name = f"{split}-{index:05d}.safetensors"
            save_tensors(tmp / name, {"images": torch.cat(xs), "labels": labels[start:stop], "latents": torch.cat(zs)})
            shards.append({"file": name, "n": stop - start, "sha256": file_sha256(tmp / name)})
    counts = torch.bincount(labels, minlength=k).tolist()
    return {"n": n, "counts": counts, "shards": shards}


def generate_dataset(gen: Any, out: str | os.PathLike[str], n_train: int, n_test: int, seed: int,
                     priors: Sequence[float] | None = None, generator_info: dict[str, Any] | None = None,
                     batch_size: int = 500, shard_size: int = 10_000, device: str | torch.device = "cpu",
                     overwrite: bool = False) -> dict[str, Any]:
    """Generate train/test splits into ``out`` and return the manifest (deterministic for a seed)."""
    out = Path(out)
    if n_train < 0 or n_test < 0 or n_train + n_test == 0:
        raise UserInputError(f"--n-train {n_train} --n-test {n_test}: need non-negative counts, not both zero")
    if out.exists() and not overwrite:
        raise UserInputError(f"{out} already exists; choose another --out or pass --force to replace it")
    _check_request(gen, out, n_train + n_test, priors)
    device = torch.device(device)
    tmp = _temp_dir(out) if is_main() else None  # in a torchrun job rank 0 alone writes
    try:
        with evaluating(gen):
            splits = {s: _write_split(gen, tmp, s, n, seed, priors, batch_size, shard_size, device)
                      for s, n in (("train", n_train), ("test", n_test))}
        k = int(gen.num_classes)
        manifest = {
            "format": FORMAT, "seed": int(seed), "num_classes": k, "latent_dim": int(gen.latent_dim),
            "image_shape": list(gen.image_shape), "priors": list(priors) if priors else [1.0 / k] * k,
            "generator": generator_info or {}, "splits": splits,
        }
        return main_only(_publish, tmp, out, manifest)
    finally:
        if tmp is not None and tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _check_request(gen: Any, out: Path, n: int, priors: Sequence[float] | None) -> None:
    """Before anything is written: one prior per class (finite, non-negative, summing to 1), and room on disk."""
    import math

    from intrinsic_robustness.storage import check_free_space

    k = int(gen.num_classes)
    if priors is not None:
        values = [float(p) for p in priors]
        if len(values) != k or any(not math.isfinite(p) or p < 0 for p in values) or abs(sum(values) - 1) > 1e-6:
            raise UserInputError(f"priors {values}: need {k} non-negative finite values (one per class of the "
                                 "generator) summing to 1")
    pixels = math.prod(int(s) for s in gen.image_shape)
    check_free_space(out, float(n) * (pixels + int(gen.latent_dim) + 2) * 4, f"{n} examples")


def _temp_dir(out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)  # mkdtemp makes 0700; the finished dataset should follow the umask
    return tmp


def _publish(tmp: Path, out: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """Write the manifest and move the finished directory into place (rank 0); returns the manifest."""
    write_json(tmp / "manifest.json", manifest)
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return manifest


def read_manifest(path: str | os.PathLike[str]) -> dict[str, Any]:
    p = Path(path)
    if not (p / "manifest.json").is_file():
        raise UserInputError(f"{p}: no manifest.json; pass a directory written by 'irob generate'")
    return read_versioned(p / "manifest.json", FORMAT)


def load_dataset(path: str | os.PathLike[str], split: str = "test", verify: bool = False) -> SyntheticDataset:
    """Read one split written by :func:`generate_dataset` (``verify`` re-checks shard checksums)."""
    p = Path(path)
    manifest = read_manifest(p)
    try:
        entry = _split_entry(p, manifest, split)
        parts: dict[str, list[torch.Tensor]] = {"images": [], "labels": [], "latents": []}
        for shard in entry["shards"]:
            f = p / str(shard["file"])
            if verify and file_sha256(f) != shard["sha256"]:
                raise UserInputError(f"{f}: checksum mismatch; the dataset was modified or truncated, regenerate it")
            tensors = load_tensors(f)
            for key in parts:
                if key not in tensors:
                    raise UserInputError(f"{f}: missing tensor {key!r}; regenerate the dataset")
                parts[key].append(tensors[key])
        return _checked_split(p, manifest, split, parts)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        if isinstance(exc, UserInputError):
            raise
        raise UserInputError(f"{p}/manifest.json: damaged ({type(exc).__name__}: {exc}); regenerate the "
                             "dataset") from None


def _split_entry(p: Path, manifest: dict[str, Any], split: str) -> dict[str, Any]:
    if split not in manifest["splits"]:
        raise UserInputError(f"{p}: no split {split!r}; available: {', '.join(manifest['splits'])}")
    return manifest["splits"][split]


def _checked_split(p: Path, manifest: dict[str, Any], split: str,
                   parts: dict[str, list[torch.Tensor]]) -> SyntheticDataset:
    """The split's tensors, which must agree with the manifest: counts per shard and class, shapes, labels."""
    k, shape = int(manifest["num_classes"]), tuple(int(s) for s in manifest["image_shape"])
    latent_dim, entry = int(manifest["latent_dim"]), manifest["splits"][split]
    if parts["images"]:
        images, labels, latents = (torch.cat(parts[key]) for key in ("images", "labels", "latents"))
    else:
        images, labels, latents = torch.zeros(0, *shape), torch.zeros(0, dtype=torch.long), torch.zeros(0, latent_dim)
    if [len(t) for t in parts["labels"]] != [int(s["n"]) for s in entry["shards"]] or len(labels) != int(entry["n"]) \
            or len(images) != len(labels) or tuple(images.shape[1:]) != shape or tuple(latents.shape) != (
                len(labels), latent_dim):
        raise UserInputError(f"{p}/manifest.json: the {split} split should hold {entry['n']} examples of shape "
                             f"{list(shape)} with {latent_dim}-d latents, its shards hold {len(labels)} of shape "
                             f"{list(images.shape[1:])}; the dataset was edited, regenerate it")
    if len(labels) and (labels.min() < 0 or labels.max() >= k):
        raise UserInputError(f"{p}: labels outside 0..{k - 1}; regenerate the dataset")
    counts = torch.bincount(labels.long(), minlength=k).tolist()
    if [int(c) for c in entry["counts"]] != counts:
        raise UserInputError(f"{p}/manifest.json: {split} class counts {entry['counts']} differ from the labels in the "
                             f"shards {counts}; the dataset was edited, regenerate it")
    return SyntheticDataset(images, labels, latents, {**manifest, "split": split})


def parse_priors(text: str | None) -> list[float] | None:
    """``"0.2,0.8"`` -> ``[0.2, 0.8]`` (None stays None: balanced classes)."""
    if text is None or not text.strip():
        return None
    try:
        return [float(p) for p in text.split(",")]
    except ValueError:
        raise UserInputError(f"--priors {text!r}: expected comma-separated numbers such as 0.5,0.5") from None
