"""``irob run``, ``irob demo``, ``irob report``, ``irob config show``: the whole pipeline from one config."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from intrinsic_robustness.cli.app import TrustOpt, app

config_app = typer.Typer(help="Inspect pipeline configurations.", no_args_is_help=True)
app.add_typer(config_app, name="config")

ConfigArg = Annotated[Path, typer.Argument(help="Pipeline config (TOML), e.g. configs/demo.toml.")]
SetOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--set", help="Override a config value: section.key=value (value read as TOML); repeatable."
    ),
]
RunDeviceOpt = Annotated[
    str | None, typer.Option("--device", help="cpu, cuda or auto; overrides run.device of the config.")
]
RunSeedOpt = Annotated[
    int | None, typer.Option("--seed", help="Base seed; overrides run.seed of the config.")
]


def _printer():
    from intrinsic_robustness.cli.console import err

    def show(outcome) -> None:
        if outcome.action == "skipped":
            err.print(f"[dim]- {outcome.name}: done, unchanged (skipped)[/dim]")
        else:
            from rich.markup import escape

            why = f" ({escape(outcome.reason)})" if getattr(outcome, "reason", "") not in ("", "first run") else ""
            err.print(f"[green]+ {outcome.name}[/green]: {outcome.action} in {outcome.seconds:.1f} s{why}",
                      highlight=False, soft_wrap=True)

    return show


@app.command("run")
def run_command(
    config: ConfigArg,
    run_dir: Annotated[
        Path | None, typer.Option("--run-dir", help="Run directory (default runs/<run.name>).")
    ] = None,
    set_: SetOpt = None,
    force: Annotated[
        list[str] | None,
        typer.Option(
            "--force",
            help="Redo a stage even if done: all, generator, lipschitz, dataset, classifiers, evaluation, "
            "report, or one of classifiers/NAME, evaluation/NAME, lipschitz/METHOD; repeatable.",
        ),
    ] = None,
    device: RunDeviceOpt = None,
    seed: RunSeedOpt = None,
    trust_code: TrustOpt = False,
) -> None:
    """Run every stage of CONFIG (generator ... report); skips finished stages, resumes interrupted ones.

    A config naming Python code (generator.spec or a classifier arch 'package.module:factory') runs only with
    --trust-code, as do run-directory files that name code."""
    from intrinsic_robustness import api
    from intrinsic_robustness.cli.console import out

    directory = api.run(
        config,
        run_dir,
        force=force or [],
        overrides=set_ or [],
        device=device,
        seed=seed,
        on_event=_printer(),
        trust_code=trust_code,
    )
    out.print(f"report: {directory / 'report' / 'report.html'}")


@app.command("demo")
def demo_command(
    run_dir: Annotated[Path, typer.Option("--run-dir", help="Where the demo run goes.")] = Path("runs/demo"),
    device: RunDeviceOpt = None,
    seed: RunSeedOpt = None,
    trust_code: TrustOpt = False,
) -> None:
    """Run the packaged demo (scikit-learn digits, small ACGAN, four classifiers); print the report path."""
    from intrinsic_robustness import api
    from intrinsic_robustness.cli.console import out

    html = api.demo(run_dir, device=device, seed=seed, on_event=_printer(), trust_code=trust_code)
    out.print(f"report: {html}")


@app.command("report")
def report_command(
    run_dir: Annotated[Path, typer.Argument(help="A run directory written by 'irob run', or a report.json to "
                                                 "re-derive with the current code (clipping, intervals, tests).")],
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="Output directory (default RUN_DIR/report, or beside report.json).")
    ] = None,
) -> None:
    """Write report.json, report.md, report.html and figures from a run's files (no model is rerun)."""
    from intrinsic_robustness import api
    from intrinsic_robustness.cli.console import out

    paths = api.report(run_dir, out_dir)
    out.print(f"report: {paths['html']}")


@config_app.command("show")
def config_show(
    config: ConfigArg,
    set_: SetOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of TOML.")] = False,
) -> None:
    """Print the resolved configuration (defaults filled in, overrides applied), checked as 'irob run' checks it
    (short of running code the config names)."""
    from intrinsic_robustness import api
    from intrinsic_robustness.pipeline.config import config_to_dict
    from intrinsic_robustness.pipeline.configfile import to_toml
    from intrinsic_robustness.pipeline.preflight import check_before_run

    resolved = api.resolve_config(config, set_ or [])
    check_before_run(resolved, run_code=False)
    from intrinsic_robustness.cli.console import emit_json, out

    if as_json:
        emit_json(config_to_dict(resolved))
    else:
        out.print(to_toml(config_to_dict(resolved)), markup=False, highlight=False, soft_wrap=True)
