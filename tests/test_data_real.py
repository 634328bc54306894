"""Real-image readers: IDX files written here (gzipped and plain), scikit-learn digits, named lookups."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import pytest
import torch

from intrinsic_robustness.data.real import load_real, read_idx, resize
from intrinsic_robustness.errors import UserInputError


def idx_bytes(array: torch.Tensor, type_code: int = 0x08) -> bytes:
    """Encode a tensor as IDX: zero bytes, type code, ndim, big-endian dims, big-endian data."""
    header = bytes([0, 0, type_code, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    if type_code == 0x08:
        body = array.to(torch.uint8).numpy().tobytes()
    else:
        body = array.to(torch.int32).numpy().astype(">i4").tobytes()
    return header + body


def write_idx_dir(directory: Path, n_train: int = 12, n_test: int = 6, gz: bool = True, side: int = 28,
                  dotted: bool = False) -> dict[str, torch.Tensor]:
    """Write the four standard IDX files with random content; returns what was written."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = torch.Generator().manual_seed(0)
    written = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = torch.randint(0, 256, (n, side, side), generator=rng)
        labels = torch.randint(0, 10, (n,), generator=rng)
        for kind, data in (("images-idx3", images), ("labels-idx1", labels)):
            name = f"{prefix}-{kind}-ubyte"
            if dotted:
                name = name.replace("-idx", ".idx")
            raw = idx_bytes(data)
            (directory / (name + (".gz" if gz else ""))).write_bytes(gzip.compress(raw) if gz else raw)
        written[prefix] = (images, labels)
    return written


@pytest.mark.parametrize("gz, dotted", [(True, False), (False, False), (False, True)])
def test_idx_directory_round_trip(tmp_path, gz, dotted):
    written = write_idx_dir(tmp_path / "d", gz=gz, dotted=dotted)
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images, labels = load_real(f"idx:{tmp_path / 'd'}", split)
        assert images.dtype == torch.float32 and labels.dtype == torch.int64
        assert images.shape == (len(written[prefix][1]), 1, 28, 28)
        torch.testing.assert_close(images[:, 0] * 255, written[prefix][0].float())
        assert torch.equal(labels, written[prefix][1])


def test_resize_keeps_range_and_shape(tmp_path):
    write_idx_dir(tmp_path / "d", gz=False)
    images, _ = load_real(f"idx:{tmp_path / 'd'}", "train", size=32)
    assert images.shape[-2:] == (32, 32) and images.min() >= 0 and images.max() <= 1
    small = resize(torch.ones(2, 1, 28, 28), 14)
    torch.testing.assert_close(small, torch.ones(2, 1, 14, 14))


def test_big_endian_int32_idx(tmp_path):
    data = torch.tensor([[1, -2, 70000], [3, 4, -5]])
    (tmp_path / "x.idx").write_bytes(idx_bytes(data, 0x0C))
    assert torch.equal(read_idx(tmp_path / "x.idx").long(), data)


def test_truncated_and_corrupt_files_are_one_line_errors(tmp_path):
    raw = idx_bytes(torch.zeros(4, 5, 5))
    (tmp_path / "short").write_bytes(raw[:-3])
    with pytest.raises(UserInputError, match="truncated or corrupt") as info:
        read_idx(tmp_path / "short")
    assert "\n" not in str(info.value)
    (tmp_path / "short.gz").write_bytes(gzip.compress(raw)[:-10])
    with pytest.raises(UserInputError, match="gzip"):
        read_idx(tmp_path / "short.gz")
    (tmp_path / "bad").write_bytes(b"\x12\x34\x08\x03" + raw[4:])
    with pytest.raises(UserInputError, match="magic"):
        read_idx(tmp_path / "bad")
    (tmp_path / "header").write_bytes(raw[:7])
    with pytest.raises(UserInputError, match="header"):
        read_idx(tmp_path / "header")


def test_missing_file_names_itself(tmp_path):
    write_idx_dir(tmp_path / "d")
    (tmp_path / "d" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(UserInputError, match="t10k-labels-idx1-ubyte"):
        load_real(f"idx:{tmp_path / 'd'}", "test")
    with pytest.raises(UserInputError, match="not a directory"):
        load_real(f"idx:{tmp_path / 'nowhere'}")


def test_mismatched_counts(tmp_path):
    write_idx_dir(tmp_path / "d", gz=False)
    (tmp_path / "d" / "train-labels-idx1-ubyte").write_bytes(idx_bytes(torch.zeros(3)))
    with pytest.raises(UserInputError, match="do not match"):
        load_real(f"idx:{tmp_path / 'd'}")


def test_named_datasets_use_irob_data(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("IROB_DATA", str(tmp_path / "store"))
    with pytest.raises(UserInputError, match=r"mnist.*\$IROB_DATA/mnist") as info:
        load_real("mnist")
    assert "\n" not in str(info.value)
    written = write_idx_dir(tmp_path / "store" / "mnist", n_train=5)
    images, labels = load_real("mnist")
    assert images.shape[0] == 5 and torch.equal(labels, written["train"][1])


def test_digits_split_is_deterministic_disjoint_and_stratified():
    train_x, train_y = load_real("digits", "train")
    test_x, test_y = load_real("digits", "test")
    assert train_x.shape[1:] == (1, 28, 28) and len(train_y) + len(test_y) == 1797
    assert train_x.min() >= 0 and train_x.max() <= 1
    assert set(train_y.tolist()) == set(range(10)) == set(test_y.tolist())
    small_train, _ = load_real("digits", "train", size=8)
    small_test, _ = load_real("digits", "test", size=8)
    rows_train = {tuple(r.tolist()) for r in small_train.flatten(1)}
    overlap = sum(tuple(r.tolist()) in rows_train for r in small_test.flatten(1))
    assert overlap <= 2  # sklearn digits has a couple of exact duplicates; the split itself is disjoint
    again, _ = load_real("digits", "train")
    assert torch.equal(again, train_x)
    counts = torch.bincount(test_y, minlength=10)
    assert counts.min() >= 30  # one fifth of every class (about 36 each)


@pytest.mark.slow
def test_debian_fashion_mnist_package():
    if not Path("/usr/share/datasets/fashion-mnist").is_dir():
        pytest.skip("dataset-fashion-mnist is not installed")
    images, labels = load_real("fashion-mnist", "test")
    assert images.shape == (10000, 1, 28, 28)
    assert torch.equal(torch.bincount(labels), torch.full((10,), 1000))


def test_unknown_name_and_split():
    with pytest.raises(UserInputError, match="expected digits"):
        load_real("cifar10")
    with pytest.raises(UserInputError, match="split"):
        load_real("digits", "valid")
