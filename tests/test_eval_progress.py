"""Under torchrun each rank's evaluation progress counts its own share of the examples, so it ends at 100%."""

from __future__ import annotations

import torch
from torch import nn

from intrinsic_robustness import progress
from intrinsic_robustness.evaluation import run as eval_run


class _Record:
    def __init__(self) -> None:
        self.tasks: dict[int, list] = {}

    def start(self, description: str, total: int | None) -> object:
        key = len(self.tasks)
        self.tasks[key] = [description, total, 0]
        return key

    def advance(self, task: object, amount: int = 1) -> None:
        self.tasks[task][2] += amount

    def finish(self, task: object) -> None:
        return None


def test_rank_progress_counts_its_own_share(monkeypatch) -> None:
    torch.manual_seed(0)
    images, labels = torch.rand(10, 1, 4, 4), torch.arange(10) % 2
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
    # rank 0 of 2: batches 0-2 of 5 are its share (share() in rank order); the other ranks' batches come back
    # through collect without advancing this rank's progress
    monkeypatch.setattr(eval_run, "share", lambda n: range(0, (n + 1) // 2))

    def collect(n, compute):
        mine = list(compute(range(0, (n + 1) // 2)))
        previous = progress.set_progress_hook(None)
        try:
            return mine + list(compute(range((n + 1) // 2, n)))
        finally:
            progress.set_progress_hook(previous)

    monkeypatch.setattr(eval_run, "collect", collect)
    hook = _Record()
    previous = progress.set_progress_hook(hook)
    try:
        result = eval_run.evaluate(model, (images, labels), attacks="pgd", eps=(0.5,), batch_size=2,
                                   attack_options={"pgd": {"num_steps": 2}})
    finally:
        progress.set_progress_hook(previous)
    (description, total, done), = [t for t in hook.tasks.values() if t[0].startswith("evaluate")]
    assert (total, done) == (6, 6) and "this rank's 6 of 10" in description
    assert result.n == 10
