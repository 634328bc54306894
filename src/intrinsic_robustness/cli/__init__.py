"""The ``irob`` command line: one module per area registers its commands on the shared app.

Errors from bad input print one line and exit 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import contextlib
import importlib
import os
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
    "concentration",
]

for _name in COMMAND_MODULES:
    importlib.import_module(f"intrinsic_robustness.cli.{_name}")


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip() or exc.__class__.__name__
    return " ".join(text.split())


def _refuse_empty(args: list[str]) -> None:
    """An empty argument (``--out ""``, ``--attack=``) is never meant: refuse it instead of reading it as '.'."""
    from intrinsic_robustness.errors import UserInputError

    for i, arg in enumerate(args):
        if arg.startswith("--") and arg.endswith("=") or not arg.strip():
            flag = arg[:-1] if arg.endswith("=") else (args[i - 1] if i and args[i - 1].startswith("-") else "argument")
            raise UserInputError(f"{flag} '': empty value; give a path, name or number (see --help)")


def _usage_line(exc: BaseException) -> str:
    """A usage error (bad flag, value or command) as one line pointing at the command's --help."""
    message = exc.format_message() if callable(getattr(exc, "format_message", None)) else str(exc)  # type: ignore[attr-defined]
    ctx = getattr(exc, "ctx", None)
    hint = f"; see '{ctx.command_path} --help'" if ctx is not None else ""
    return f"error: {' '.join(message.split()).rstrip('.')}{hint}"


def _out_of_memory(exc: BaseException) -> bool:
    return isinstance(exc, MemoryError) or (isinstance(exc, RuntimeError) and "can't allocate memory" in str(exc))


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``irob``: runs the app, turning expected failures into one-line errors (exit 2)."""
    import typer  # typer >= 0.29 vendors click: catch its own exception types, never import click

    from intrinsic_robustness.cli.console import err, interrupted_line, progress_hook, stop_on_signals
    from intrinsic_robustness.distributed import is_main
    from intrinsic_robustness.errors import Interrupted, UserInputError
    from intrinsic_robustness.progress import get_progress_hook, set_progress_hook

    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["--version"]:  # the installed package's version, before any command is parsed
        from intrinsic_robustness import __version__

        print(f"irob {__version__}")
        return 0
    STATE["debug"] = "--debug" in args
    from intrinsic_robustness.runtime import configure_threads

    configure_threads()  # before torch starts: threads this process may use, sleeping (not spinning) when idle
    speaks = is_main()  # in a torchrun job only rank 0 shows progress and prints results (errors: every rank)
    previous = get_progress_hook()
    try:
        set_progress_hook(progress_hook() if speaks else None)
        _refuse_empty(args)
        with stop_on_signals(), (contextlib.nullcontext() if speaks  # noqa: SIM115
                                 else contextlib.redirect_stdout(open(os.devnull, "w"))):
            code = app(args=args, prog_name="irob", standalone_mode=False)
        if code == 130:  # typer turned a KeyboardInterrupt into exit 130, silently
            raise KeyboardInterrupt
        return code if isinstance(code, int) and not isinstance(code, bool) else 0
    except typer.Exit as exc:
        return int(exc.exit_code)
    except typer.Abort:
        err.print("aborted", style="red")
        return 130
    except typer.TyperException as exc:  # usage errors: one line naming the flag, like every other error
        if STATE["debug"]:
            raise
        show = getattr(exc, "show", None)
        if type(exc).__name__ == "NoArgsIsHelpError" and callable(show):
            show()  # a bare command: its help
        else:
            err.print(_usage_line(exc), style="red", markup=False, highlight=False, soft_wrap=True)
        return 2
    except (Interrupted, KeyboardInterrupt) as exc:  # a signal: say what was kept and how to resume
        line, status = interrupted_line(exc, args)
        err.print(line, style="red", markup=False, highlight=False, soft_wrap=True)
        return status
    except (UserInputError, ValueError, FileNotFoundError, NotADirectoryError, IsADirectoryError, FileExistsError,
            PermissionError, ImportError) as exc:
        if STATE["debug"]:
            raise
        err.print(f"error: {_one_line(exc)}", style="red", markup=False, highlight=False, soft_wrap=True)
        return 2
    except Exception as exc:  # an internal fault: still one line, the traceback is one flag away
        if STATE["debug"]:
            raise
        if _out_of_memory(exc):  # a size the machine cannot hold: the input's fault, said in one line
            err.print(f"error: not enough memory ({_one_line(exc)}); choose smaller sizes", style="red",
                      markup=False, highlight=False, soft_wrap=True)
            return 2
        err.print(f"internal error ({exc.__class__.__name__}): {_one_line(exc)}; rerun with --debug for the "
                  "traceback and please report it", style="red", markup=False, highlight=False, soft_wrap=True)
        return 1
    finally:
        set_progress_hook(previous)


def run() -> None:  # pragma: no cover - console script shim
    sys.exit(main())
