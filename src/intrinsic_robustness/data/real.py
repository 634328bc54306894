"""Real image datasets without torchvision: scikit-learn's bundled digits and IDX files (MNIST family).

Every reader returns ``(images, labels)``: float32 ``[N, 1, size, size]`` in [0, 1] and int64 labels.
IDX directories hold the standard names (``train-images-idx3-ubyte`` etc.), gzipped or not.
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import torch
import torch.nn.functional as F

from intrinsic_robustness.errors import UserInputError
from intrinsic_robustness.runtime import make_generator

SPLITS = ("train", "test")
NAMED = ("digits", "fashion-mnist", "mnist")
MAX_DIMS = 4  # images are [N, H, W] (3), labels [N] (1); more is a corrupt or foreign file
_IDX_PREFIX = {"train": "train", "test": "t10k"}
_DTYPES = {0x08: (torch.uint8, 1), 0x09: (torch.int8, 1), 0x0B: (torch.int16, 2), 0x0C: (torch.int32, 4),
           0x0D: (torch.float32, 4), 0x0E: (torch.float64, 8)}
_HOW_TO_GET = {
    "fashion-mnist": "install Debian's 'dataset-fashion-mnist' package or put the four IDX files from "
                     "https://github.com/zalandoresearch/fashion-mnist in $IROB_DATA/fashion-mnist",
    "mnist": "put a copy of the four original IDX files (gzipped or not; '-' or '.' before 'idx') in "
             "$IROB_DATA/mnist or ./data/mnist, or pass idx:DIR",
}


def load_real(name: str, split: str = "train", size: int = 28) -> tuple[torch.Tensor, torch.Tensor]:
    """Images ``[N, 1, size, size]`` in [0, 1] and int64 labels of a named dataset or ``idx:DIR``."""
    if split not in SPLITS:
        raise UserInputError(f"split {split!r}: expected one of {', '.join(SPLITS)}")
    if int(size) < 1:
        raise UserInputError(f"size {size}: expected a positive image size")
    if name == "digits":
        images, labels = _digits(split)
    elif check_name(name).startswith("idx:"):
        images, labels = read_idx_split(Path(name[4:]).expanduser(), split)
    else:
        images, labels = read_idx_split(find_idx_dir(name), split)
    return resize(images, int(size)), labels


def check_name(name: str) -> str:
    """``name`` if it names a real dataset (digits, fashion-mnist, mnist or idx:DIR), else a one-line error."""
    if name in NAMED or (isinstance(name, str) and name.startswith("idx:") and len(name) > 4):
        return name
    raise UserInputError(f"dataset {name!r}: expected digits, fashion-mnist, mnist or idx:DIR")


def class_count(name: str) -> int:
    """Number of classes of a real dataset (max training label + 1), reading only the labels."""
    check_name(name)
    if name == "digits":
        return 10
    directory = Path(name[4:]).expanduser() if name.startswith("idx:") else find_idx_dir(name)
    if not directory.is_dir():
        raise UserInputError(f"{directory}: not a directory; pass idx:DIR with the four IDX files")
    path = _find_file(directory, "train-labels-idx1-ubyte")
    if path is None:
        raise UserInputError(f"{directory / 'train-labels-idx1-ubyte'}[.gz]: file not found; put the train labels "
                             "IDX file there (standard MNIST-style name, gzipped or not)")
    labels = read_idx(path)
    if labels.ndim != 1 or len(labels) == 0:
        raise UserInputError(f"{path}: expected a non-empty 1-d IDX label file, got shape {tuple(labels.shape)}")
    return int(labels.max()) + 1


def resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear resize of ``[N, C, H, W]`` images to ``size x size`` (antialiased when shrinking), kept in [0, 1]."""
    if tuple(images.shape[-2:]) == (size, size):
        return images
    shrink = size < min(images.shape[-2:])
    out = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=shrink)
    return out.clamp_(0.0, 1.0)


def _digits(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's 1797 8x8 digits (0..16 -> [0, 1]); a fixed stratified 80/20 train/test split."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
    labels = torch.tensor(bunch.target, dtype=torch.int64)
    rng = make_generator(0)
    test_mask = torch.zeros(len(labels), dtype=torch.bool)
    for k in range(10):
        idx = (labels == k).nonzero().squeeze(1)
        idx = idx[torch.randperm(len(idx), generator=rng)]
        test_mask[idx[: len(idx) // 5]] = True
    keep = test_mask if split == "test" else ~test_mask
    return images[keep], labels[keep]


IDX_STEMS = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def find_idx_dir(name: str) -> Path:
    """Where the named IDX dataset lives: $IROB_DATA/<name>, ./data/<name>, then system locations.

    The first directory holding any of the four files is used; one that lacks some of them is an error
    naming the missing files, every directory searched and where to put a copy.
    """
    candidates = []
    if os.environ.get("IROB_DATA"):
        candidates.append(Path(os.environ["IROB_DATA"]) / name)
    candidates.append(Path("data") / name)
    if name == "fashion-mnist":
        candidates.append(Path("/usr/share/datasets/fashion-mnist"))
    tried = ", ".join(str(c) for c in candidates)
    for directory in candidates:
        found = {stem: _find_file(directory, stem) for stem in IDX_STEMS}
        missing = [stem for stem, path in found.items() if path is None]
        if len(missing) == len(IDX_STEMS):
            continue
        if missing:
            raise UserInputError(f"dataset {name!r}: {directory} lacks {', '.join(m + '[.gz]' for m in missing)} "
                                 f"(searched {tried}); {_HOW_TO_GET[name]}")
        return directory
    raise UserInputError(f"dataset {name!r}: none of {', '.join(s + '[.gz]' for s in IDX_STEMS)} found in {tried}; "
                         f"{_HOW_TO_GET[name]}")


def _find_file(directory: Path, stem: str) -> Path | None:
    dotted = stem.replace("-idx", ".idx")
    for candidate in (stem, stem + ".gz", dotted, dotted + ".gz"):
        if (directory / candidate).is_file():
            return directory / candidate
    return None


def read_idx_split(directory: Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Read ``{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]`` from ``directory``."""
    if not directory.is_dir():
        raise UserInputError(f"{directory}: not a directory; pass idx:DIR with the four IDX files "
                             "(train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], t10k-...)")
    prefix = _IDX_PREFIX[split]
    paths = {}
    for kind, stem in (("images", f"{prefix}-images-idx3-ubyte"), ("labels", f"{prefix}-labels-idx1-ubyte")):
        path = _find_file(directory, stem)
        if path is None:
            raise UserInputError(f"{directory / stem}[.gz]: file not found; put the {split} {kind} IDX file "
                                 "there (standard MNIST-style name, gzipped or not)")
        paths[kind] = path
    images, labels = read_idx(paths["images"]), read_idx(paths["labels"])
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise UserInputError(f"{directory}: {split} images {tuple(images.shape)} and labels "
                             f"{tuple(labels.shape)} do not match; expected [N, H, W] and [N]")
    scale = 255.0 if images.dtype == torch.uint8 else 1.0
    return (images.float() / scale).clamp_(0.0, 1.0).unsqueeze(1), labels.long()


def read_idx(path: str | os.PathLike[str]) -> torch.Tensor:
    """Parse one IDX file (gzipped or not) into a tensor; a truncated or corrupt file is a one-line error."""
    p = Path(path)
    if not p.is_file():
        raise UserInputError(f"{p}: file not found")
    data = p.read_bytes()
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise UserInputError(f"{p}: corrupt or truncated gzip data ({exc}); download the file again") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _DTYPES or not 1 <= data[3] <= MAX_DIMS:
        raise UserInputError(f"{p}: not an IDX file: bad magic number 0x{data[:4].hex() or '(empty)'} (expected "
                             f"0x0000TTDD: a data type code and 1 to {MAX_DIMS} dimensions); "
                             "expected MNIST-style IDX data")
    dtype, itemsize = _DTYPES[data[2]]
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise UserInputError(f"{p}: truncated IDX header; download the file again")
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    expected = header + itemsize * _prod(dims)
    if len(data) != expected:
        shape = "x".join(map(str, dims))
        raise UserInputError(f"{p}: IDX file has {len(data)} bytes, its header (shape {shape}) needs {expected}; "
                             "the file is truncated or corrupt, download it again")
    flat = torch.frombuffer(bytearray(data[header:]), dtype=torch.uint8)
    if itemsize > 1:  # IDX is big-endian
        flat = flat.view(-1, itemsize).flip(1).reshape(-1)
    return flat.view(dtype).reshape(dims).clone()


def _prod(values: list[int]) -> int:
    out = 1
    for v in values:
        out *= v
    return out


def load_real_native(name: str, split: str = "train", size: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """As :func:`load_real`, but at the files' own image size (digits 8x8, MNIST 28x28) unless ``size`` is given."""
    if size is not None:
        return load_real(name, split, int(size))
    if split not in SPLITS:
        raise UserInputError(f"split {split!r}: expected one of {', '.join(SPLITS)}")
    if name == "digits":
        return _digits(split)
    if check_name(name).startswith("idx:"):
        return read_idx_split(Path(name[4:]).expanduser(), split)
    return read_idx_split(find_idx_dir(name), split)


def is_real_name(name: object) -> bool:
    """True when ``name`` names a real dataset (digits, fashion-mnist, mnist or idx:DIR)."""
    return isinstance(name, str) and (name in NAMED or (name.startswith("idx:") and len(name) > 4))


class RealDataset:
    """Real images and labels of one split (no latents): what training and evaluation take from a name."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, name: str, num_classes: int | None = None) -> None:
        self.images, self.labels, self.name = images, labels.long(), name
        self.num_classes = int(num_classes) if num_classes else int(labels.max()) + 1 if len(labels) else 0

    @classmethod
    def load(cls, name: str, split: str = "train", size: int | None = None) -> RealDataset:
        """The ``split`` of a named real dataset at ``size`` (default: the files' own size)."""
        images, labels = load_real_native(name, split, size)
        return cls(images, labels, name)

    def head(self, n: int) -> RealDataset:
        """The first ``n`` examples (class count kept)."""
        return RealDataset(self.images[:n], self.labels[:n], self.name, self.num_classes)

    def __len__(self) -> int:
        return len(self.labels)
