"""Mode changes for an inner computation, always undone: ``frozen`` (eval mode, no parameter gradients) and
``evaluating`` (eval mode only).

Attacks, adversarial training's inner steps, certification and Lipschitz estimation all need the same
guarantee: the caller's train/eval mode of every submodule and every parameter's ``requires_grad`` flag come
back exactly as they were, also when the inner computation raises.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from torch import nn


@contextlib.contextmanager
def frozen(*modules: nn.Module | None) -> Iterator[None]:
    """Eval mode and no parameter gradients inside; the exact previous mode and flags restored after."""
    saved = []
    for m in modules:
        if isinstance(m, nn.Module):
            modes = [(sub, sub.training) for sub in m.modules()]
            flags = [(p, p.requires_grad) for p in m.parameters()]
            saved.append((modes, flags))
            m.eval()
            for p, _ in flags:
                p.requires_grad_(False)
    try:
        yield
    finally:
        for modes, flags in saved:
            for sub, mode in modes:
                sub.training = mode
            for p, flag in flags:
                p.requires_grad_(flag)


@contextlib.contextmanager
def evaluating(*modules: object) -> Iterator[None]:
    """Eval mode inside (parameter flags untouched); every submodule's previous mode restored after."""
    saved = [[(sub, sub.training) for sub in m.modules()] for m in modules if isinstance(m, nn.Module)]
    for m in modules:
        if isinstance(m, nn.Module):
            m.eval()
    try:
        yield
    finally:
        for modes in saved:
            for sub, mode in modes:
                sub.training = mode
