"""Every command fed bad input: exit 2, exactly one line on stderr starting with ``error:``, no traceback, no
internal error, and nothing left behind (the workspace tree is compared before and after each case).

Inputs (a tiny dataset, classifier, generator directory, IDX files, configs, hostile files) are built once per
module in a world-readable workspace, so the read-only cases can run as an unprivileged user when the tests run
as root. ``IROB_BAD_INPUTS_TABLE=FILE`` writes the table of every case and the message it gave (Markdown).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from intrinsic_robustness.cli import main

TINY_TOML = """\
[run]
name = "tiny"

[generator]
source = "load"
spec = "affine"

[lipschitz]
methods = ["gradient"]
anchors_per_class = 2

[dataset]
n_train = 30
n_test = 6
batch_size = 30

[[classifiers]]
name = "std"
arch = "linear"
epochs = 1
batch_size = 10

[evaluation]
eps = [0.1]
n = 3
batch_size = 3
attacks = {unconstrained = ["pgd"], in-distribution = ["latent"]}
"""


@dataclass(frozen=True)
class Case:
    """One bad input: ``args`` ({ws} is the workspace), text the message must contain, and whether it runs as
    an unprivileged user (read-only directories cannot stop root)."""

    name: str
    args: tuple[str, ...]
    needle: str
    unprivileged: bool = False


def C(name: str, needle: str, *args: str, unprivileged: bool = False) -> Case:  # noqa: N802 - table helper
    return Case(name, tuple(args), needle, unprivileged)


def _write_idx(path: Path, data: torch.Tensor, magic: bytes | None = None) -> None:
    header = magic if magic is not None else bytes([0, 0, 0x08, data.ndim])
    dims = b"".join(int(d).to_bytes(4, "big") for d in data.shape)
    path.write_bytes(header + dims + data.to(torch.uint8).numpy().tobytes())


def _idx_dir(root: Path, size: int, classes: int, bad_magic: bool = False) -> Path:
    root.mkdir()
    g = torch.Generator().manual_seed(0)
    for prefix, n in (("train", 24), ("t10k", 6)):
        images = torch.randint(0, 256, (n, size, size), generator=g)
        labels = torch.arange(n) % classes
        _write_idx(root / f"{prefix}-images-idx3-ubyte", images, b"\x08\x03\x00\x00" if bad_magic else None)
        _write_idx(root / f"{prefix}-labels-idx1-ubyte", labels)
    return root


@pytest.fixture(scope="module")
def ws():
    """The workspace: every input the cases use, built once (about 2 s)."""
    from intrinsic_robustness.data.synthetic import generate_dataset, load_dataset
    from intrinsic_robustness.generators import make_affine
    from intrinsic_robustness.generators.load import generator_info, save_generator
    from intrinsic_robustness.models import save_classifier
    from intrinsic_robustness.training import fit

    root = Path(tempfile.mkdtemp(prefix="irob-bad-"))
    root.chmod(0o755)
    gen = make_affine()
    save_generator(gen, root / "gen", {"architecture": "affine", "latent_dim": 8, "num_classes": 3,
                                       "image_shape": [1, 6, 6]})
    generate_dataset(gen, root / "ds", 30, 6, seed=0, generator_info=generator_info("affine", gen))
    fit(load_dataset(root / "ds", "train"), "standard", arch="linear", epochs=1, out=root / "clf")
    shutil.copytree(root / "ds", root / "ds-edited")
    manifest = json.loads((root / "ds-edited" / "manifest.json").read_text())
    manifest["splits"]["test"]["counts"] = [6, 0, 0]
    manifest["splits"]["train"]["counts"] = [30, 0, 0]
    (root / "ds-edited" / "manifest.json").write_text(json.dumps(manifest))
    shutil.copytree(root / "ds", root / "ds-evil")  # its manifest names code: os:system
    manifest = json.loads((root / "ds-evil" / "manifest.json").read_text())
    manifest["generator"]["spec"] = "os:system"
    (root / "ds-evil" / "manifest.json").write_text(json.dumps(manifest))
    (root / "evil-gen").mkdir()
    (root / "evil-gen" / "generator.json").write_text(json.dumps(
        {"format": "irob-generator/1", "architecture": "factory", "factory": "os:system",
         "kwargs": {"command": f"touch {root / 'MARKER'}"}}))
    save_classifier(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(36, 3)), root / "evil-clf",
                    {"arch": "_user_code:payload_classifier", "num_classes": 3, "image_shape": [1, 6, 6]})
    _idx_dir(root / "idx-8x8", 8, 3)
    _idx_dir(root / "idx-magic", 8, 3, bad_magic=True)
    from intrinsic_robustness import api

    api.lipschitz("affine", "gradient", seed=0, device="cpu", out=root / "lip.json", anchors_per_class=2)
    (root / "garbage.json").write_text("{not json")
    (root / "afile").write_text("a file, not a directory\n")
    (root / "adir.png").mkdir()
    (root / "emptydir").mkdir()
    (root / "ro").mkdir()
    (root / "ro").chmod(stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
    (root / "tiny.toml").write_text(TINY_TOML)
    (root / "badkey.toml").write_text(TINY_TOML.replace("[dataset]\n", "[dataset]\nn_trian = 3\n"))
    (root / "broken.toml").write_text("[run\nname=")
    (root / "cwd").mkdir()
    yield root
    shutil.rmtree(root, ignore_errors=True)


def _snapshot(root: Path) -> dict[str, tuple[bool, int, int]]:
    return {str(p.relative_to(root)): (p.is_dir(), p.stat().st_size if p.is_file() else 0,
                                       p.stat().st_mtime_ns if p.is_file() else 0)
            for p in root.rglob("*")}


@contextlib.contextmanager
def _as_nobody(enabled: bool):
    """Drop the effective uid to nobody (root ignores directory permissions); restored afterwards."""
    if not enabled or os.geteuid() != 0:
        yield
        return
    os.setegid(65534)
    os.seteuid(65534)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)


S = ("--set",)
RUN = ("run", "{ws}/tiny.toml", "--device", "cpu")
RUN_IN = (*RUN, "--run-dir", "{ws}/runs/x")
GEN = ("generate", "--generator", "affine", "--n-train", "6", "--n-test", "3", "--device", "cpu")
LIP = ("lipschitz", "--generator", "affine", "--anchors-per-class", "2", "--device", "cpu")
TRG = ("train-generator", "--dataset", "digits", "--epochs", "1", "--device", "cpu")
TRC = ("train-classifier", "--data", "{ws}/ds", "--method", "standard", "--arch", "linear", "--epochs", "1",
       "--device", "cpu")
EVA = ("evaluate", "--classifier", "{ws}/clf", "--data", "{ws}/ds", "--threat", "unconstrained", "--attack", "pgd",
       "--device", "cpu")
BOUND = ("bound", "--risk", "0.1", "--eps", "1")

CASES = [
    # bound
    C("bound: risk NaN", "risk", "bound", "--risk", "nan", "--eps", "1", "--lipschitz", "1"),
    C("bound: risk above 1", "risk", "bound", "--risk", "1.5", "--eps", "1", "--lipschitz", "1"),
    C("bound: negative risk", "risk", "bound", "--risk", "-0.1", "--eps", "1", "--lipschitz", "1"),
    C("bound: eps inf", "eps", *BOUND[:3], "--eps", "inf", "--lipschitz", "1"),
    C("bound: negative eps", "eps", *BOUND[:3], "--eps", "-1", "--lipschitz", "1"),
    C("bound: eps NaN", "eps", *BOUND[:3], "--eps", "nan", "--lipschitz", "1"),
    C("bound: Lipschitz 0", "lipschitz", *BOUND, "--lipschitz", "0"),
    C("bound: Lipschitz NaN", "lipschitz", *BOUND, "--lipschitz", "nan"),
    C("bound: negative Lipschitz", "lipschitz", *BOUND, "--lipschitz", "-2"),
    C("bound: no Lipschitz", "--lipschitz", *BOUND),
    C("bound: priors with NaN", "priors", *BOUND, "--lipschitz", "1", "--priors", "nan", "--priors", "0.5"),
    C("bound: priors of the wrong length", "one value per class", *BOUND, "--lipschitz", "1", "--lipschitz", "2",
      "--priors", "0.2", "--priors", "0.3", "--priors", "0.5"),
    C("bound: priors not summing to 1", "priors", *BOUND, "--lipschitz", "1", "--priors", "0.7", "--priors", "0.7"),
    C("bound: negative prior", "priors", *BOUND, "--lipschitz", "1", "--priors", "-0.5", "--priors", "1.5"),
    C("bound: --plot empty", "--plot ''", *BOUND, "--lipschitz", "1", "--plot", ""),
    C("bound: --plot without an image suffix", "--plot", *BOUND, "--lipschitz", "1", "--plot", "{ws}/x.txt"),
    C("bound: --plot an existing directory", "is a directory", *BOUND, "--lipschitz", "1", "--plot", "{ws}/adir.png"),
    C("bound: --plot under a file", "is a file", *BOUND, "--lipschitz", "1", "--plot", "{ws}/afile/x.png"),
    C("bound: --plot in a read-only directory", "permission denied", *BOUND, "--lipschitz", "1", "--plot",
      "{ws}/ro/x.png", unprivileged=True),
    C("bound: missing --lipschitz-file", "not found", *BOUND, "--lipschitz-file", "{ws}/nope.json"),
    C("bound: --lipschitz-file not JSON", "not valid JSON", *BOUND, "--lipschitz-file", "{ws}/garbage.json"),
    C("bound: unknown percentile", "p9", *BOUND, "--lipschitz-file", "{ws}/lip.json", "--percentile", "p9"),
    C("bound: unknown condition", "--condition", *BOUND, "--lipschitz", "1", "--condition", "bogus"),
    C("bound: slack above 1", "slack", *BOUND, "--lipschitz", "1", "--slack", "2"),
    C("bound: 0 classes", "num_classes", *BOUND, "--lipschitz", "1", "--condition", "overall", "--num-classes", "0"),
    C("bound: missing --eps", "--eps", "bound", "--risk", "0.1", "--lipschitz", "1"),
    # generate
    C("generate: --out empty", "--out ''", *GEN, "--out", ""),
    C("generate: --out exists", "already exists", *GEN, "--out", "{ws}/ds"),
    C("generate: --out under a file", "is a file", *GEN, "--out", "{ws}/afile/x"),
    C("generate: --out in a read-only directory", "permission denied", *GEN, "--out", "{ws}/ro/x",
      unprivileged=True),
    C("generate: factory raises", "RuntimeError: weights server unreachable", "generate", "--generator",
      "_user_code:raising_generator", "--n-train", "6", "--n-test", "3", "--out", "{ws}/new"),
    C("generate: generator whose decode raises", "ValueError: decoder expects 128-d latents", "generate",
      "--generator", "_user_code:broken_decode_generator", "--n-train", "6", "--n-test", "3", "--out", "{ws}/new"),
    C("generate: factory module missing", "cannot import", "generate", "--generator", "nope_mod:make",
      "--n-train", "6", "--n-test", "3", "--out", "{ws}/new"),
    C("generate: priors with NaN", "priors", *GEN, "--out", "{ws}/new/deeper", "--priors", "nan,0.5,0.5"),
    C("generate: priors of the wrong length", "--priors: 2 values", *GEN, "--out", "{ws}/new", "--priors", "0.5,0.5"),
    C("generate: priors not numbers", "--priors", *GEN, "--out", "{ws}/new", "--priors", "a,b,c"),
    C("generate: negative --n-train", "--n-train", "generate", "--generator", "affine", "--n-train", "-1",
      "--n-test", "3", "--out", "{ws}/new"),
    C("generate: --n-train 1e12", "--n-train", "generate", "--generator", "affine", "--n-train", "1e12",
      "--n-test", "3", "--out", "{ws}/new"),
    C("generate: --n-train 10^12", "on disk", "generate", "--generator", "affine", "--n-train", "1000000000000",
      "--n-test", "3", "--out", "{ws}/new"),
    C("generate: --batch-size 0", "--batch-size", *GEN, "--out", "{ws}/new", "--batch-size", "0"),
    C("generate: generator directory naming os:system", "names code 'os:system'", "generate", "--generator",
      "{ws}/evil-gen", "--n-train", "6", "--n-test", "3", "--out", "{ws}/new"),
    C("generate: missing weights file", "not found", *GEN, "--out", "{ws}/new", "--generator-weights",
      "{ws}/nope.safetensors"),
    C("generate: unknown device", "--device", *GEN[:-2], "--device", "gpu", "--out", "{ws}/new"),
    C("generate: empty generator spec", "--generator ''", "generate", "--generator", "", "--n-train", "6",
      "--n-test", "3", "--out", "{ws}/new"),
    # lipschitz
    C("lipschitz: --out empty", "--out ''", *LIP, "--out", ""),
    C("lipschitz: --out an existing directory", "is a directory", *LIP, "--out", "{ws}/emptydir"),
    C("lipschitz: --out under a file", "is a file", *LIP, "--out", "{ws}/afile/l.json"),
    C("lipschitz: --out in a read-only directory", "permission denied", *LIP, "--out", "{ws}/ro/l.json",
      unprivileged=True),
    C("lipschitz: negative radius", "radius", *LIP, "--out", "{ws}/l.json", "--radius", "-1"),
    C("lipschitz: radius NaN", "radius", *LIP, "--out", "{ws}/l.json", "--radius", "nan"),
    C("lipschitz: radius inf", "radius", *LIP, "--out", "{ws}/l.json", "--radius", "inf"),
    C("lipschitz: 0 anchors", "anchors_per_class", "lipschitz", "--generator", "affine", "--anchors-per-class", "0",
      "--out", "{ws}/l.json"),
    C("lipschitz: --anchors-per-class 1e9", "--anchors-per-class", "lipschitz", "--generator", "affine",
      "--anchors-per-class", "1e9", "--out", "{ws}/l.json"),
    C("lipschitz: --anchors-per-class 10^13", "memory", "lipschitz", "--generator", "affine", "--anchors-per-class",
      "10000000000000", "--out", "{ws}/l.json"),
    C("lipschitz: unknown method", "lipschitz method", *LIP, "--out", "{ws}/l.json", "--method", "bogus"),
    C("lipschitz: 0 neighbours", "neighbors", *LIP, "--out", "{ws}/l.json", "--method", "sampling", "--neighbors",
      "0"),
    C("lipschitz: negative power iterations", "power_iters", *LIP, "--out", "{ws}/l.json", "--method", "gradient",
      "--power-iters", "-1"),
    C("lipschitz: factory raises", "_user_code:raising_generator", "lipschitz", "--generator",
      "_user_code:raising_generator", "--out", "{ws}/l.json"),
    C("lipschitz: generator directory naming os:system", "names code 'os:system'", "lipschitz", "--generator",
      "{ws}/evil-gen", "--out", "{ws}/l.json"),
    # train-generator
    C("train-generator: --out empty", "--out ''", *TRG, "--out", ""),
    C("train-generator: --out a file", "not a directory", *TRG, "--out", "{ws}/afile"),
    C("train-generator: --out under a file", "is a file", *TRG, "--out", "{ws}/afile/g"),
    C("train-generator: --out in a read-only directory", "permission denied", *TRG, "--out", "{ws}/ro/g",
      unprivileged=True),
    C("train-generator: unknown dataset", "dataset 'cifar'", "train-generator", "--dataset", "cifar", "--epochs", "1",
      "--out", "{ws}/g"),
    C("train-generator: 0 epochs", "--epochs", "train-generator", "--dataset", "digits", "--epochs", "0", "--out",
      "{ws}/g"),
    C("train-generator: IDX with a bad magic number", "bad magic number", "train-generator", "--dataset",
      "idx:{ws}/idx-magic", "--epochs", "1", "--out", "{ws}/g"),
    C("train-generator: missing IDX directory", "not a directory", "train-generator", "--dataset", "idx:{ws}/nope",
      "--epochs", "1", "--out", "{ws}/g"),
    C("train-generator: lr NaN", "--lr", *TRG, "--out", "{ws}/g", "--lr", "nan"),
    C("train-generator: latent size 0", "--latent-dim", *TRG, "--out", "{ws}/g", "--latent-dim", "0"),
    C("train-generator: batch larger than the data", "--batch-size", *TRG, "--out", "{ws}/g", "--batch-size",
      "100000"),
    # train-classifier
    C("train-classifier: --out empty", "--out ''", *TRC, "--out", ""),
    C("train-classifier: --out a file", "not a directory", *TRC, "--out", "{ws}/afile"),
    C("train-classifier: --out in a read-only directory", "permission denied", *TRC, "--out", "{ws}/ro/c",
      unprivileged=True),
    C("train-classifier: --data missing", "manifest.json", *TRC[:1], "--data", "{ws}/nope", *TRC[3:], "--out",
      "{ws}/c"),
    C("train-classifier: manifest counts edited", "counts", *TRC[:1], "--data", "{ws}/ds-edited", *TRC[3:],
      "--out", "{ws}/c"),
    C("train-classifier: unknown method", "bogus", "train-classifier", "--data", "{ws}/ds", "--method", "bogus",
      "--out", "{ws}/c"),
    C("train-classifier: unknown arch", "--arch", *TRC[:5], "--arch", "bogus", "--out", "{ws}/c"),
    C("train-classifier: arch factory raises", "RuntimeError: no such checkpoint", *TRC[:5], "--arch",
      "_user_code:raising_classifier", "--out", "{ws}/c"),
    C("train-classifier: eps NaN", "--eps", "train-classifier", "--data", "{ws}/ds", "--method", "pgd", "--arch",
      "linear", "--eps", "nan", "--out", "{ws}/c"),
    C("train-classifier: 0 epochs", "--epochs", *TRC[:7], "--epochs", "0", "--out", "{ws}/c"),
    C("train-classifier: negative lr", "--lr", *TRC, "--lr", "-1", "--out", "{ws}/c"),
    C("train-classifier: holdout beyond the data", "--holdout", *TRC, "--holdout", "1000", "--out", "{ws}/c"),
    # evaluate
    C("evaluate: --out empty", "--out ''", *EVA, "--out", ""),
    C("evaluate: --out an existing directory", "is a directory", *EVA, "--out", "{ws}/emptydir"),
    C("evaluate: --out under a file", "is a file", *EVA, "--out", "{ws}/afile/e.json"),
    C("evaluate: --out in a read-only directory", "permission denied", *EVA, "--out", "{ws}/ro/e.json",
      unprivileged=True),
    C("evaluate: eps inf", "eps", *EVA, "--out", "{ws}/e.json", "--eps", "inf"),
    C("evaluate: eps 0", "eps", *EVA, "--out", "{ws}/e.json", "--eps", "0"),
    C("evaluate: eps NaN", "eps", *EVA, "--out", "{ws}/e.json", "--eps", "nan"),
    C("evaluate: empty --attack", "--attack ''", *EVA[:-4], "--attack", "", "--out", "{ws}/e.json"),
    C("evaluate: unknown attack", "fgsm", *EVA[:-4], "--attack", "fgsm", "--out", "{ws}/e.json"),
    C("evaluate: attack of the other threat", "latent", *EVA[:-4], "--attack", "latent", "--out", "{ws}/e.json"),
    C("evaluate: --n beyond the test split", "--n 1000", *EVA, "--out", "{ws}/e.json", "--n", "1000"),
    C("evaluate: --n 0", "--n 0", *EVA, "--out", "{ws}/e.json", "--n", "0"),
    C("evaluate: unknown threat", "--threat", "evaluate", "--classifier", "{ws}/clf", "--data", "{ws}/ds",
      "--threat", "bogus", "--out", "{ws}/e.json"),
    C("evaluate: classifier missing", "classifier", "evaluate", "--classifier", "{ws}/nope", "--data", "{ws}/ds",
      "--threat", "unconstrained", "--out", "{ws}/e.json"),
    C("evaluate: classifier config naming code", "names code '_user_code:payload_classifier'", "evaluate",
      "--classifier", "{ws}/evil-clf", "--data", "{ws}/ds", "--threat", "unconstrained", "--out", "{ws}/e.json"),
    C("evaluate: images of another size", "trained on 1x6x6 images, the data has 1x8x8", "evaluate",
      "--classifier", "{ws}/clf", "--data", "idx:{ws}/idx-8x8", "--threat", "unconstrained", "--attack", "pgd",
      "--out", "{ws}/e.json"),
    C("evaluate: factory classifier, images of another size", "mat1 and mat2 shapes cannot be multiplied",
      "evaluate", "--classifier", "_user_code:fixed_linear_classifier", "--data", "idx:{ws}/idx-8x8", "--threat",
      "unconstrained", "--attack", "pgd", "--out", "{ws}/e.json"),
    C("evaluate: IDX with a bad magic number", "bad magic number", "evaluate", "--classifier", "{ws}/clf", "--data",
      "idx:{ws}/idx-magic", "--threat", "unconstrained", "--out", "{ws}/e.json"),
    C("evaluate: manifest counts edited", "counts", "evaluate", "--classifier", "{ws}/clf", "--data",
      "{ws}/ds-edited", "--threat", "unconstrained", "--out", "{ws}/e.json"),
    C("evaluate: manifest naming os:system", "names code 'os:system'", "evaluate", "--classifier", "{ws}/clf",
      "--data", "{ws}/ds-evil", "--threat", "in-distribution", "--attack", "latent", "--out", "{ws}/e.json"),
    C("evaluate: --generator directory naming os:system", "names code 'os:system'", "evaluate", "--classifier",
      "{ws}/clf", "--data", "{ws}/ds", "--threat", "in-distribution", "--generator", "{ws}/evil-gen", "--out",
      "{ws}/e.json"),
    C("evaluate: --batch-size 0", "--batch-size", *EVA, "--out", "{ws}/e.json", "--batch-size", "0"),
    # run
    C("run: run.name escaping runs/", "run.name", *RUN, *S, 'run.name="../../escaped"'),
    C("run: --run-dir empty", "--run-dir ''", *RUN, "--run-dir", ""),
    C("run: --run-dir a file", "not a directory", *RUN, "--run-dir", "{ws}/afile"),
    C("run: --run-dir in a read-only directory", "permission denied", *RUN, "--run-dir", "{ws}/ro/r",
      unprivileged=True),
    C("run: priors of the wrong length", "dataset.priors: 2 values", *RUN_IN, *S, "dataset.priors=[0.5, 0.5]"),
    C("run: priors with NaN", "dataset.priors", *RUN_IN, *S, "dataset.priors=[nan, 0.5, 0.5]"),
    C("run: unknown classifier option", "classifiers.0.options.foo", *RUN_IN, *S, "classifiers.std.options={foo=1}"),
    C("run: classifier option of the wrong type", "options.holdout", *RUN_IN, *S,
      'classifiers.std.options={holdout="3"}'),
    C("run: holdout beyond the data", "holdout", *RUN_IN, *S, "classifiers.std.options={holdout=1000}"),
    C("run: classifier option set by its own key", "options.epochs", *RUN_IN, *S,
      "classifiers.std.options={epochs=3}"),
    C("run: unknown Lipschitz option", "foo", *RUN_IN, *S, "lipschitz.options={foo=1}"),
    C("run: unknown evaluation option", "options.foo", *RUN_IN, *S, "evaluation.options={foo=1}"),
    C("run: unknown inversion option", "options.inversion.foo", *RUN_IN, *S,
      "evaluation.options={inversion={foo=1}}"),
    C("run: unknown generator option", "options.foo", *RUN_IN, *S, 'generator.source="train"', *S,
      "generator.options={foo=1}"),
    C("run: generator option below its minimum", "options.width", *RUN_IN, *S, 'generator.source="train"', *S,
      "generator.options={width=0}"),
    C("run: unknown attack option", "attack_options.pgd.foo", *RUN_IN, *S, "evaluation.attack_options={pgd={foo=1}}"),
    C("run: bad attack option value", "num_steps", *RUN_IN, *S, "evaluation.attack_options={pgd={num_steps=-1}}"),
    C("run: unknown device", "run.device", *RUN_IN[:2], "--run-dir", "{ws}/runs/x", *S, 'run.device="gpu"'),
    C("run: unknown percentile", "lipschitz.percentile", *RUN_IN, *S, 'lipschitz.percentile="p9"'),
    C("run: eps 0", "evaluation.eps", *RUN_IN, *S, "evaluation.eps=[0.0]"),
    C("run: eps inf", "evaluation.eps", *RUN_IN, *S, "evaluation.eps=[inf]"),
    C("run: unknown attack names the key", "evaluation.attacks", *RUN_IN, *S,
      'evaluation.attacks={unconstrained=["fgsm"]}'),
    C("run: unknown compared attack", "evaluation.compare_attacks", *RUN_IN, *S, 'evaluation.compare_attacks=["nope"]'),
    C("run: unknown classifier arch", "classifiers.0.arch", *RUN_IN, *S, 'classifiers.std.arch="nope"'),
    C("run: unknown training method", "classifiers.0.method", *RUN_IN, *S, 'classifiers.std.method="bogus"'),
    C("run: generator spec missing", "generator.spec", *RUN_IN, *S, 'generator.spec="./nope"'),
    C("run: generator weights missing", "generator.weights", *RUN_IN, *S, 'generator.weights="nope.safetensors"'),
    C("run: config naming code without --trust-code", "names code '_user_code:raising_generator'", *RUN_IN, *S,
      'generator.spec="_user_code:raising_generator"'),
    C("run: factory raises (trusted)", "RuntimeError: weights server unreachable", *RUN_IN, "--trust-code", *S,
      'generator.spec="_user_code:raising_generator"'),
    C("run: classifier arch naming code", "classifiers.0.arch", *RUN_IN, *S,
      'classifiers.std.arch="_user_code:payload_classifier"'),
    C("run: unknown training data", "generator.data", *RUN_IN, *S, 'generator.source="train"', *S,
      'generator.data="cifar"'),
    C("run: missing IDX directory", "generator.data", *RUN_IN, *S, 'generator.source="train"', *S,
      'generator.data="idx:nope"'),
    C("run: dataset beyond the disk", "dataset.n_train", *RUN_IN, *S, "dataset.n_train=1000000000000"),
    C("run: anchors beyond memory", "lipschitz.anchors_per_class", *RUN_IN, *S,
      "lipschitz.anchors_per_class=10000000000000"),
    C("run: evaluation.n beyond the test split", "evaluation.n", *RUN_IN, *S, "evaluation.n=1000"),
    C("run: config file missing", "not found", "run", "{ws}/nope.toml"),
    C("run: config not TOML", "not valid TOML", "run", "{ws}/broken.toml"),
    C("run: misspelt key", "dataset.n_trian", "run", "{ws}/badkey.toml"),
    C("run: --set without a section", "--set", *RUN_IN, *S, "bogus"),
    C("run: --force of an unknown stage", "--force nosuch", *RUN_IN, "--force", "nosuch"),
    C("run: --n-train style float for an int key", "dataset.n_train", *RUN_IN, *S, "dataset.n_train=1e12"),
    # demo, report, config show
    C("demo: --run-dir empty", "--run-dir ''", "demo", "--run-dir", ""),
    C("demo: --run-dir a file", "not a directory", "demo", "--run-dir", "{ws}/afile"),
    C("demo: unknown device", "--device", "demo", "--run-dir", "{ws}/d", "--device", "gpu"),
    C("report: run directory missing", "nope", "report", "{ws}/nope"),
    C("report: run directory is a file", "afile", "report", "{ws}/afile"),
    C("report: not a run directory", "emptydir", "report", "{ws}/emptydir"),
    C("report: empty run directory argument", "argument ''", "report", ""),
    C("config show: file missing", "not found", "config", "show", "{ws}/nope.toml"),
    C("config show: misspelt key", "dataset.n_trian", "config", "show", "{ws}/badkey.toml"),
    C("config show: eps 0", "evaluation.eps", "config", "show", "{ws}/tiny.toml", *S, "evaluation.eps=[0]"),
    C("config show: unknown classifier option", "classifiers.0.options.foo", "config", "show", "{ws}/tiny.toml", *S,
      "classifiers.std.options={foo=1}"),
    C("config show: priors of the wrong length", "dataset.priors: 2 values", "config", "show", "{ws}/tiny.toml", *S,
      "dataset.priors=[0.5, 0.5]"),
    C("unknown command", "No such command", "bogus"),
]

RESULTS: dict[str, tuple[Case, str, float]] = {}
_WS: dict[str, Path] = {}


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_is_one_line_exit_2_and_leaves_nothing(case: Case, ws: Path, capsys, monkeypatch) -> None:
    _WS["root"] = ws
    monkeypatch.chdir(ws / "cwd")
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    monkeypatch.setenv("IROB_TEST_MARKER", str(ws / "MARKER"))
    args = [a.replace("{ws}", str(ws)) for a in case.args]
    before = _snapshot(ws)
    capsys.readouterr()
    start = time.perf_counter()
    with _as_nobody(case.unprivileged):
        code = main(args)
    seconds = time.perf_counter() - start
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    RESULTS[case.name] = (case, lines[0] if lines else "(nothing on stderr)", seconds)
    assert code == 2, f"exit {code}: {err}"
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err + out and "internal error" not in err
    assert case.needle in lines[0], lines[0]
    assert not (ws / "MARKER").exists(), "a file ran code"
    after = _snapshot(ws)
    assert after == before, f"left behind: {sorted(set(after) ^ set(before))} changed: " \
        f"{sorted(k for k in set(after) & set(before) if after[k] != before[k])}"


def test_enough_kinds() -> None:
    commands = {c.args[0] if c.args[0] != "config" else "config show" for c in CASES}
    assert len(CASES) >= 60
    assert {"bound", "generate", "lipschitz", "train-generator", "train-classifier", "evaluate", "run", "demo",
            "report", "config show"} <= commands


def teardown_module() -> None:
    """Write the table of cases and messages where ``IROB_BAD_INPUTS_TABLE`` asks for it."""
    target = os.environ.get("IROB_BAD_INPUTS_TABLE")
    if not target or not RESULTS:
        return
    rows = ["# Bad inputs tried by tests/test_bad_inputs.py", "",
            f"{len(RESULTS)} cases. Each exits 2 with exactly this one line on stderr, no traceback, no internal "
            "error, and leaves the workspace tree unchanged (no new files or directories, no .partial directories). "
            "`{ws}` is the test's workspace; read-only cases run as an unprivileged user.", "",
            "| # | bad input | command line | message (stderr, exit 2) |", "|---|---|---|---|"]
    for i, case in enumerate(CASES, 1):
        if case.name not in RESULTS:
            continue
        _, message, _ = RESULTS[case.name]
        line = " ".join(f"'{a}'" if a == "" or " " in a else a for a in case.args).replace("|", "\\|")
        shown = message.replace(str(_WS.get("root", "")), "{ws}").replace("|", chr(92) + "|")
        rows.append(f"| {i} | {case.name} | `irob {line}` | {shown} |")
    Path(target).write_text("\n".join(rows) + "\n")
