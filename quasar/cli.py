"""The `quasar` command line: one Typer app; each package contributes its commands via `register(app)`.

This is the only layer that prints user errors and chooses exit codes: a `QuasarError` becomes one
line `error: ...` on stderr and exit status 2, with no traceback.
"""

from __future__ import annotations

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

# Each module defines `register(app: typer.Typer) -> None`.
COMMAND_MODULES = ("hdl_gen.cli", "hdl_gen.synth_cli", "models.cli", "fault_campaigns.cli")

for _name in COMMAND_MODULES:
    importlib.import_module(_name).register(app)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        app(args=argv, standalone_mode=False)
    except QuasarError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Abort:
        print("aborted", file=sys.stderr)
        return 130
    return 0


def entry() -> None:
    sys.exit(main())
