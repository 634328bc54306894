"""Every content hash the toolkit computes: files, JSON-able data, tensors and state dicts (SHA-256, hex).

Stage keys, resume fingerprints, dataset shard checksums and generator weight checksums all come from here,
so two places never disagree on how the same content hashes.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from typing import Any


def file_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def canonical_hash(data: Any) -> str:
    """SHA-256 of canonical JSON (sorted keys, no spaces, str() for other types): equal data, equal hash."""
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _update(h: Any, t: Any, prefix: str = "", flat: bool = False) -> None:
    """Feed dtype, shape (of the flattened tensor when ``flat``) and raw bytes of ``t`` into ``h``."""
    import torch

    t = t.detach().to("cpu").contiguous()
    if flat:
        t = t.reshape(-1)
    h.update(f"{prefix}{t.dtype}|{tuple(t.shape)}|".encode())
    if t.numel():
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())


def tensor_digest(*tensors: Any) -> str:
    """SHA-256 over tensors' dtypes, shapes and bytes, in order (fingerprints data and models for resume)."""
    h = hashlib.sha256()
    for t in tensors:
        _update(h, t)
    return h.hexdigest()


def state_checksum(state: Mapping[str, Any]) -> str:
    """SHA-256 over the names, dtypes, shapes and bytes of a state dict (independent of key order)."""
    h = hashlib.sha256()
    for name in sorted(state):
        _update(h, state[name], prefix=f"{name}|", flat=True)
    return h.hexdigest()
