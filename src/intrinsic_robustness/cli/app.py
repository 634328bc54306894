"""The typer application and the options every computing command shares."""

from __future__ import annotations

from typing import Annotated

import typer

app = typer.Typer(
    name="irob",
    help="Intrinsic robustness of image distributions via conditional generative models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

STATE = {"debug": False}

DeviceOpt = Annotated[str, typer.Option("--device", help="cpu, cuda or auto (CUDA when available).")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Base seed; every random stage derives from it.")]
TrustOpt = Annotated[bool, typer.Option("--trust-code", help="Let files (saved generators and classifiers, dataset "
                                        "manifests, configs) name Python code (package.module:factory) and run it. "
                                        "Only for files you trust.")]


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks instead of one-line errors.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log library messages to stderr.")] = False,
) -> None:
    """irob: bound, generate, estimate, train, attack and report."""
    import logging

    STATE["debug"] = debug
    if verbose or debug:
        logging.basicConfig(level=logging.DEBUG if debug else logging.INFO, format="%(name)s: %(message)s")
