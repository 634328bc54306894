"""Training: schedules, inner attacks that leave the model untouched, each method's loss, robustness, resume."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from intrinsic_robustness.data.synthetic import SyntheticDataset
from intrinsic_robustness.errors import UserInputError
from intrinsic_robustness.models import build_architecture, load_classifier
from intrinsic_robustness.modes import frozen
from intrinsic_robustness.progress import set_progress_hook
from intrinsic_robustness.threat import l2_norm
from intrinsic_robustness.training import METHODS, eps_at, fit, held_out_errors, lr_at, paper_recipe, pgd_l2
from intrinsic_robustness.training.objectives import trades_perturb


def blobs(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two classes in 1x4x4: a tiny, exactly separating pixel (non-robust) and 15 noisy, robust pixels."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    s = (2 * y - 1).float()[:, None]
    x = 0.5 + 0.15 * s + 0.2 * torch.randn(n, 16, generator=g)
    x[:, 0] = 0.5 + 0.05 * s[:, 0]
    return x.clamp(0, 1).reshape(n, 1, 4, 4), y


def blob_dataset(n: int = 400, seed: int = 0) -> SyntheticDataset:
    x, y = blobs(n, seed)
    return SyntheticDataset(x, y, torch.zeros(n, 1), {"num_classes": 2})


FAST = {"arch": "mlp-tiny", "eps": 0.3, "batch_size": 32, "lr": 0.1, "num_steps": 5, "step_size": 0.15}


def test_lr_schedule_steps_at_50_75_90_percent_without_compounding():
    lrs = [lr_at(e, 100, 0.05) for e in range(100)]
    assert lrs[49] == 0.05 and lrs[50] == pytest.approx(0.005) and lrs[74] == pytest.approx(0.005)
    assert lrs[75] == pytest.approx(0.0005) and lrs[89] == pytest.approx(0.0005)
    assert lrs[90] == pytest.approx(0.00005) and lrs[99] == pytest.approx(0.00005)
    assert [lr_at(e, 4, 1.0) for e in range(4)] == pytest.approx([1.0, 1.0, 0.1, 0.01])


def test_paper_recipes_and_eps_ramp():
    pgd = paper_recipe("pgd", (1, 28, 28))
    assert (pgd.arch, pgd.optimizer, pgd.lr, pgd.epochs, pgd.batch_size) == ("small-cnn", "sgd", 0.05, 100, 128)
    assert (pgd.eps, pgd.num_steps, pgd.step_size) == (3.0, 40, 0.5)
    assert paper_recipe("trades", (3, 32, 32)).num_steps == 10 and paper_recipe("trades", (1, 28, 28)).beta == 6.0
    cert = paper_recipe("certified", (1, 28, 28))
    assert (cert.arch, cert.optimizer, cert.eps, cert.batch_size, cert.proj) == ("wk-small", "adam", 2.0, 50, 50)
    assert eps_at(0, cert) == pytest.approx(0.05) and eps_at(20, cert) == 2.0 and eps_at(59, cert) == 2.0
    assert eps_at(5, cert) < eps_at(6, cert) < eps_at(19, cert) < 2.0
    with pytest.raises(UserInputError, match="training method"):
        paper_recipe("fgsm", (1, 28, 28))


def test_inner_attacks_restore_modes_and_touch_no_weights():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout(0.5), nn.Flatten(),
                          nn.Linear(4 * 2 * 2, 3))
    model.train()
    model[3].eval()  # a mixed state must come back exactly
    model[5].weight.requires_grad_(False)
    modes = [m.training for m in model.modules()]
    flags = [p.requires_grad for p in model.parameters()]
    stats = model[1].running_mean.clone(), model[1].running_var.clone(), int(model[1].num_batches_tracked)
    x, y = torch.rand(6, 1, 4, 4), torch.tensor([0, 1, 2, 0, 1, 2])
    g = torch.Generator().manual_seed(0)
    x_pgd = pgd_l2(model, x, y, 0.5, 4, 0.2, g)
    x_trades = trades_perturb(model, x, 0.5, 4, 0.2, g)
    assert [m.training for m in model.modules()] == modes
    assert [p.requires_grad for p in model.parameters()] == flags
    assert all(p.grad is None for p in model.parameters())
    assert torch.equal(model[1].running_mean, stats[0]) and torch.equal(model[1].running_var, stats[1])
    assert int(model[1].num_batches_tracked) == stats[2]
    for x_adv in (x_pgd, x_trades):
        assert not x_adv.requires_grad
        assert (l2_norm(x_adv - x) <= 0.5 + 1e-5).all() and x_adv.min() >= 0 and x_adv.max() <= 1
    with pytest.raises(RuntimeError), frozen(model):
        raise RuntimeError("restored even on error")
    assert [m.training for m in model.modules()] == modes


def test_pgd_finds_the_closed_form_attack_on_a_linear_model():
    torch.manual_seed(1)
    model = build_architecture("linear", 2, (1, 4, 4))
    x = torch.full((8, 1, 4, 4), 0.5) + 0.05 * torch.randn(8, 1, 4, 4)
    with torch.no_grad():
        y = model(x).argmax(1)
        w = model[1].weight
        dist = (model(x)[:, 0] - model(x)[:, 1]).abs() / (w[0] - w[1]).norm()
    eps = float(dist.max()) * 1.05  # beyond every example's boundary distance, still well inside the box
    x_adv = pgd_l2(model, x, y, eps, 30, eps / 4, torch.Generator().manual_seed(0))
    assert (model(x_adv).argmax(1) != y).all()


@pytest.mark.parametrize("method", ["standard", "pgd", "trades", "certified"])
def test_each_method_lowers_its_own_loss(method):
    x, y = blobs(64, 3)
    model = build_architecture("mlp-tiny", 2, (1, 4, 4))
    recipe = paper_recipe(method, (1, 4, 4))
    from dataclasses import replace

    recipe = replace(recipe, num_steps=5, step_size=0.1, proj=None)
    objective = METHODS.get(method)
    opt = torch.optim.Adam(model.parameters(), lr=0.02)

    def loss_now() -> float:
        return float(objective(model, x, y, recipe, 0.2, torch.Generator().manual_seed(0)).detach())

    before = loss_now()
    for _ in range(40):
        opt.zero_grad()
        objective(model, x, y, recipe, 0.2, torch.Generator().manual_seed(1)).backward()
        opt.step()
    assert loss_now() < 0.7 * before


def test_adversarial_training_is_more_robust_than_standard(tmp_path):
    data = blob_dataset(400, 0)
    xt, yt = blobs(400, 1)
    adv = {}
    for method in ("standard", "pgd", "trades"):
        out = fit(data, method, epochs=3, holdout=0, out=tmp_path / method, **FAST)
        clean, adv[method] = held_out_errors(load_classifier(out), xt, yt, 0.3, 20)
        assert clean < 0.05
    assert adv["pgd"] < adv["standard"] - 0.05
    assert adv["trades"] < adv["standard"] - 0.05


def test_fit_writes_history_and_refuses_to_overwrite(tmp_path):
    data = blob_dataset(200, 0)
    out = fit(data, "standard", epochs=2, holdout=20, out=tmp_path / "m", **FAST)
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == [1, 2]
    assert {"loss", "clean_error", "adv_error", "lr"} <= set(history[0])
    assert all(0.0 <= h["clean_error"] <= 1.0 and 0.0 <= h["adv_error"] <= 1.0 for h in history)
    assert not (out / "checkpoint.safetensors").exists()
    config = json.loads((out / "config.json").read_text())
    assert config["arch"] == "mlp-tiny" and config["method"] == "standard" and config["n_train"] == 180
    with pytest.raises(UserInputError, match="already holds a finished classifier") as info:
        fit(data, "standard", epochs=2, holdout=20, out=out, **FAST)
    assert "\n" not in str(info.value)
    fit(data, "standard", epochs=1, holdout=20, out=out, force=True, **FAST)
    assert len((out / "history.jsonl").read_text().splitlines()) == 1


class _StopAfter:
    """A progress hook that interrupts training after ``n`` batches, like Ctrl-C would."""

    def __init__(self, n: int) -> None:
        self.left = n

    def start(self, description, total):
        return None

    def advance(self, handle, amount=1):
        self.left -= amount
        if self.left < 0:
            raise KeyboardInterrupt

    def finish(self, handle):
        return None


@pytest.mark.parametrize("method", ["pgd", "certified"])
def test_resume_after_interruption_matches_an_uninterrupted_run(tmp_path, method):
    data = blob_dataset(160, 0)
    kwargs = {**FAST, "epochs": 3, "holdout": 16, "batch_size": 48}
    if method == "certified":
        kwargs["arch"] = "mlp-tiny"
    whole = load_classifier(fit(data, method, out=tmp_path / "whole", **kwargs))
    previous = set_progress_hook(_StopAfter(3 + 2 + 1))  # batches per epoch: 3; stop inside epoch 3
    try:
        with pytest.raises(KeyboardInterrupt):
            fit(data, method, out=tmp_path / "cut", **kwargs)
    finally:
        set_progress_hook(previous)
    assert (tmp_path / "cut" / "checkpoint.safetensors").exists() and not (tmp_path / "cut" / "config.json").exists()
    assert len((tmp_path / "cut" / "history.jsonl").read_text().splitlines()) == 2
    with pytest.raises(UserInputError, match="other settings"):
        fit(data, method, out=tmp_path / "cut", **{**kwargs, "lr": 0.05})
    resumed = load_classifier(fit(data, method, out=tmp_path / "cut", **kwargs))
    for a, b in zip(whole.state_dict().values(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert len((tmp_path / "cut" / "history.jsonl").read_text().splitlines()) == 3


@pytest.mark.parametrize("write", ["_append_history", "save_checkpoint"])
@pytest.mark.parametrize("when", ["before", "after"])
def test_a_stop_around_any_end_of_epoch_write_keeps_one_history_line_per_epoch(tmp_path, monkeypatch, write, when):
    from intrinsic_robustness.training import loop

    data, kwargs = blob_dataset(96, 1), {**FAST, "epochs": 3, "holdout": 16, "batch_size": 40}
    whole = load_classifier(fit(data, "standard", out=tmp_path / "whole", **kwargs))
    real, calls = getattr(loop, write), []

    def stop_at_second(*args, **kw):  # Ctrl-C landing just before or just after epoch 2's write
        calls.append(1)
        if len(calls) == 2 and when == "before":
            raise KeyboardInterrupt
        result = real(*args, **kw)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return result

    monkeypatch.setattr(loop, write, stop_at_second)
    with pytest.raises(KeyboardInterrupt):
        fit(data, "standard", out=tmp_path / "cut", **kwargs)
    monkeypatch.setattr(loop, write, real)
    resumed = load_classifier(fit(data, "standard", out=tmp_path / "cut", **kwargs))
    epochs = [json.loads(ln)["epoch"] for ln in (tmp_path / "cut" / "history.jsonl").read_text().splitlines()]
    assert epochs == [1, 2, 3]
    for a, b in zip(whole.state_dict().values(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_certified_training_needs_a_certifiable_network(tmp_path):
    with pytest.raises(UserInputError, match="not an nn.Sequential"):
        fit(blob_dataset(40), "certified", arch="tests.test_training:_boxed", epochs=1, out=tmp_path / "c")
    with pytest.raises(UserInputError, match="holdout"):
        fit(blob_dataset(40), "standard", arch="mlp-tiny", epochs=1, holdout=40, out=tmp_path / "h")


class _Boxed(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(16, 2))

    def forward(self, x):
        return self.net(x)


def _boxed(num_classes: int = 2) -> nn.Module:
    return _Boxed()


def test_fit_accepts_any_dataset_of_pairs_and_checks_pixels(tmp_path):
    from torch.utils.data import TensorDataset

    x, y = blobs(60, 0)
    out = fit(TensorDataset(x, y), "standard", arch="mlp-tiny", epochs=1, holdout=6, out=tmp_path / "pairs")
    assert json.loads((out / "config.json").read_text())["num_classes"] == 2
    with pytest.raises(UserInputError, match=r"outside \[0, 1\]"):
        fit(TensorDataset(x * 255, y), "standard", arch="mlp-tiny", epochs=1, out=tmp_path / "bytes")
    with pytest.raises(UserInputError, match="--epochs 0"):
        fit(TensorDataset(x, y), "standard", arch="mlp-tiny", epochs=0, out=tmp_path / "zero")
