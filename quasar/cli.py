"""The `quasar` command line: one Typer app; each package contributes its commands via `register(app)`.

This is the only layer that prints user errors and chooses exit codes: a `QuasarError` becomes one
line `error: ...` on stderr and exit status 2, with no traceback; so do a bad option value (click's
usage errors) and a full disk or read-only path met while working (OSError). An interrupt (Ctrl-C)
ends with one line `interrupted: ...` (what was kept, how to resume, when the command says so) and
exit status 130, like any Unix tool killed by SIGINT.
"""

from __future__ import annotations

import difflib
import errno
import importlib
import logging
import sys

import click
import typer

from quasar.errors import Interrupted, QuasarError

app = typer.Typer(
    name="quasar",
    help="QuaSAR: quantization bit width vs accuracy, RTL fault tolerance and hardware cost.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _options(verbose: bool = typer.Option(False, "--verbose", "-v", help="also print the tool command lines "
                                          "(Verilator, make) of simulator builds")) -> None:
    if verbose:
        logging.getLogger("testbenches.sim.tools").setLevel(logging.DEBUG)


# Failures of the machine rather than of QuaSAR (full disk, read-only or forbidden paths): one line too.
ENVIRONMENT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG}

# Each module defines `register(app: typer.Typer) -> None`.
COMMAND_MODULES = ("hdl_gen.cli", "hdl_gen.synth.cli", "hdl_gen.signoff.cli", "models.cli", "fault_campaigns.cli",
                   "fault_campaigns.sweep.cli", "fault_campaigns.bench.cli", "fault_campaigns.rates_cli",
                   "fault_campaigns.paper.cli")

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


INTERRUPTED = 130  # 128 + SIGINT: what a shell reports for a command stopped by Ctrl-C
EXTRA_ARGUMENT_HINT = ("; list options take comma-separated values or the option repeated, "
                       "e.g. --bits 2,4 or --bits 2 --bits 4")


def _usage_message(exc: BaseException) -> str:
    """click's message, with a better hint for an unknown option (only close names) or a stray argument."""
    msg = exc.format_message()
    ctx = getattr(exc, "ctx", None)
    if type(exc).__name__ == "NoSuchOption" and ctx is not None:
        name = exc.option_name
        known = [o for p in ctx.command.params for o in (*p.opts, *p.secondary_opts) if o.startswith("--")]
        close = difflib.get_close_matches(name.lstrip("-"), [o[2:] for o in known], n=3, cutoff=0.75)
        msg = f"no such option {name}" + (f"; did you mean {' or '.join('--' + c for c in close)}?" if close else "")
    elif "unexpected extra argument" in msg:
        msg += EXTRA_ARGUMENT_HINT
    return msg


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        rv = app(args=argv, standalone_mode=False)
    except Interrupted as exc:
        print(f"interrupted: {exc}", file=sys.stderr)
        return INTERRUPTED
    except KeyboardInterrupt:  # raised outside a command's own body (typer turns those into Exit(130))
        print("interrupted", file=sys.stderr)
        return INTERRUPTED
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
        print(f"error: {_usage_message(exc)}{hint}", file=sys.stderr)
        return exc.exit_code
    except CLICK_ERRORS as exc:
        exc.show()
        return exc.exit_code
    except ABORTS:
        print("interrupted", file=sys.stderr)
        return INTERRUPTED
    except OSError as exc:
        if exc.errno not in ENVIRONMENT_ERRNOS:
            raise
        where = f" {exc.filename}" if exc.filename else ""
        print(f"error: cannot write or read{where}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    # Without standalone mode typer returns, rather than raises, the status of a typer.Exit and of a
    # KeyboardInterrupt that no command turned into Interrupted (130).
    if rv == INTERRUPTED:
        print("interrupted", file=sys.stderr)
    return rv if isinstance(rv, int) and not isinstance(rv, bool) else 0


def entry() -> None:
    sys.exit(main())
