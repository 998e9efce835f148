"""The `quasar` command line: one Typer app; each package contributes its commands via `register(app)`.

This is the only layer that prints user errors and chooses exit codes: a `QuasarError` becomes one
line `error: ...` on stderr and exit status 2, with no traceback; so do a bad option value (click's
usage errors) and a full disk or read-only path met while working (OSError).
"""

from __future__ import annotations

import errno
import importlib
import logging
import sys

import click
import typer

from quasar.errors import QuasarError

app = typer.Typer(
    name="quasar",
    help="QuaSAR: quantization bit width vs accuracy, RTL fault tolerance and hardware cost.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

# Failures of the machine rather than of QuaSAR (full disk, read-only or forbidden paths): one line too.
ENVIRONMENT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG}

# Each module defines `register(app: typer.Typer) -> None`.
COMMAND_MODULES = ("hdl_gen.cli", "hdl_gen.synth_cli", "hdl_gen.signoff.cli", "models.cli", "fault_campaigns.cli",
                   "fault_campaigns.sweep.cli", "fault_campaigns.bench.cli")

for _name in COMMAND_MODULES:
    importlib.import_module(_name).register(app)


def _click_errors(name: str) -> tuple[type[BaseException], ...]:
    """click's exception class `name`, and typer's own copy of it (typer 0.2x vendors click as typer._click)."""
    classes = [getattr(click.exceptions, name)]
    try:
        from typer._click import exceptions as vendored
    except ImportError:  # pragma: no cover - a typer that uses click itself
        return tuple(classes)
    return (*classes, *([getattr(vendored, name)] if hasattr(vendored, name) else []))


USAGE_ERRORS = _click_errors("UsageError")
CLICK_ERRORS = _click_errors("ClickException")
EXITS = (*_click_errors("Exit"), typer.Exit)
ABORTS = (*_click_errors("Abort"), typer.Abort)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        app(args=argv, standalone_mode=False)
    except QuasarError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except EXITS as exc:
        return exc.exit_code
    except USAGE_ERRORS as exc:  # a bad option value or an unknown option: one line, like QuasarError
        if type(exc).__name__ == "NoArgsIsHelpError":  # no arguments at all: the help is the answer
            exc.show()
            return exc.exit_code
        ctx = getattr(exc, "ctx", None)
        hint = f" (see `quasar {ctx.info_name} --help`)" if ctx is not None and ctx.parent is not None else ""
        print(f"error: {exc.format_message()}{hint}", file=sys.stderr)
        return exc.exit_code
    except CLICK_ERRORS as exc:
        exc.show()
        return exc.exit_code
    except ABORTS:
        print("aborted", file=sys.stderr)
        return 130
    except OSError as exc:
        if exc.errno not in ENVIRONMENT_ERRNOS:
            raise
        where = f" {exc.filename}" if exc.filename else ""
        print(f"error: cannot write or read{where}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    return 0


def entry() -> None:
    sys.exit(main())
