"""The ``irob`` command line: one module per area registers its commands on the shared app.

Errors from bad input print one line and exit 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import importlib
import sys

from intrinsic_robustness.cli.app import STATE, app

# Each area owns one module here; importing it registers its commands on ``app``.
COMMAND_MODULES = [
    "generators",
    "lipschitz",
    "bound",
    "pipeline",
    "evaluate",
    "train",
]

for _name in COMMAND_MODULES:
    importlib.import_module(f"intrinsic_robustness.cli.{_name}")


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip() or exc.__class__.__name__
    return " ".join(text.split())


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``irob``: runs the app, turning expected failures into one-line errors (exit 2)."""
    import typer  # typer >= 0.29 vendors click: catch its own exception types, never import click

    from intrinsic_robustness.cli.console import RichProgressHook, err
    from intrinsic_robustness.errors import UserInputError
    from intrinsic_robustness.progress import set_progress_hook

    args = list(sys.argv[1:] if argv is None else argv)
    STATE["debug"] = "--debug" in args
    previous = set_progress_hook(RichProgressHook())
    try:
        app(args=args, prog_name="irob", standalone_mode=False)
        return 0
    except typer.Exit as exc:
        return int(exc.exit_code)
    except typer.Abort:
        err.print("aborted", style="red")
        return 130
    except typer.TyperException as exc:  # usage errors: typer prints them with the usage line
        if STATE["debug"]:
            raise
        show = getattr(exc, "show", None)
        if callable(show):
            show()
        else:
            err.print(f"error: {_one_line(exc)}", style="red", markup=False, highlight=False)
        return 2
    except KeyboardInterrupt:
        err.print("interrupted: finished stages and checkpoints are kept; rerun to resume", style="red")
        return 130
    except (UserInputError, ValueError, FileNotFoundError, NotADirectoryError, ImportError) as exc:
        if STATE["debug"]:
            raise
        err.print(f"error: {_one_line(exc)}", style="red", markup=False, highlight=False, soft_wrap=True)
        return 2
    except Exception as exc:  # an internal fault: still one line, the traceback is one flag away
        if STATE["debug"]:
            raise
        err.print(f"internal error ({exc.__class__.__name__}): {_one_line(exc)}; rerun with --debug for the "
                  "traceback and please report it", style="red", markup=False, highlight=False, soft_wrap=True)
        return 1
    finally:
        set_progress_hook(previous)


def run() -> None:  # pragma: no cover - console script shim
    sys.exit(main())
