"""Real MNIST: the four original IDX files in ../shared/datasets/mnist (skipped with a reason when absent),
and how ``mnist`` / ``idx:DIR`` resolve file names and report what is missing."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import pytest

from intrinsic_robustness.data.real import IDX_STEMS, load_real
from intrinsic_robustness.errors import UserInputError

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"
MNIST = SHARED / "mnist"
needs_mnist = pytest.mark.skipif(not (MNIST / "train-labels-idx1-ubyte.gz").is_file(),
                                 reason=f"real MNIST not found at {MNIST} (a user's clone has no ../shared)")
TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@needs_mnist
def test_mnist_resolves_under_irob_data(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IROB_DATA", str(SHARED))
    x, y = load_real("mnist", "train")
    assert tuple(x.shape) == (60000, 1, 28, 28) and x.dtype.is_floating_point
    assert float(x.min()) == 0.0 and float(x.max()) == 1.0
    assert y[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert y.bincount().tolist() == TRAIN_COUNTS
    xt, yt = load_real("mnist", "test")
    assert tuple(xt.shape) == (10000, 1, 28, 28) and yt.bincount().tolist() == TEST_COUNTS


@needs_mnist
def test_idx_dir_accepts_plain_gzipped_and_dotted_names(tmp_path: Path) -> None:
    """The same labels whether the files are gzipped or not, with '-' or '.' before 'idx'."""
    for stem in IDX_STEMS:
        dotted = stem.replace("-idx", ".idx")
        if "labels" in stem:  # uncompressed, dotted
            (tmp_path / dotted).write_bytes(gzip.decompress((MNIST / f"{stem}.gz").read_bytes()))
        else:
            shutil.copy(MNIST / f"{stem}.gz", tmp_path / f"{dotted}.gz")
    _, y = load_real(f"idx:{tmp_path}", "test")
    assert y.bincount().tolist() == TEST_COUNTS


@needs_mnist
def test_a_missing_file_names_itself_the_directories_and_the_fix(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "mnist").mkdir()
    for stem in IDX_STEMS[:3]:
        shutil.copy(MNIST / f"{stem}.gz", tmp_path / "mnist" / f"{stem}.gz")
    monkeypatch.setenv("IROB_DATA", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserInputError) as info:
        load_real("mnist", "train")
    message = str(info.value)
    assert "t10k-labels-idx1-ubyte" in message and str(tmp_path / "mnist") in message
    assert "data/mnist" in message and "IROB_DATA" in message and "\n" not in message


def test_no_mnist_anywhere_says_where_to_put_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IROB_DATA", str(tmp_path / "nowhere"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserInputError) as info:
        load_real("mnist", "train")
    message = str(info.value)
    assert all(stem in message for stem in IDX_STEMS)
    assert str(tmp_path / "nowhere" / "mnist") in message and "data/mnist" in message and "idx:DIR" in message


@needs_mnist
def test_files_match_the_published_checksums() -> None:
    """The uncompressed bytes hash to the SHA-256 values listed in ../shared/datasets/README.md."""
    import hashlib
    import re

    table = dict(re.findall(r"\|\s*([a-z0-9-]+-ubyte)\s*\|\s*([0-9a-f]{64})\s*\|", (SHARED / "README.md").read_text()))
    assert set(table) == set(IDX_STEMS)
    for stem, digest in table.items():
        assert hashlib.sha256(gzip.decompress((MNIST / f"{stem}.gz").read_bytes())).hexdigest() == digest, stem
