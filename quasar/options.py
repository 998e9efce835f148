"""List-valued command-line options: one form for every command of `quasar`.

A list option takes comma-separated values, or is repeated; both can be mixed:
`--bits 2,4,8` = `--bits 2 --bits 4,8` = `--bits 2 --bits 4 --bits 8`. Space-separated values after one
option (`--bits 2 4`) are not accepted: a command line cannot tell them from the next positional
argument, and typer has no variadic options; quasar/cli.py answers that form with a hint naming this
one. An empty item (`--bits 2,,4`, `--bits ""`), a value holding spaces (`--bits "2 4"`) and a value given
twice (`--bits 4 --bits 4`) are refused with one error naming the option, never merged silently.

Commands declare such an option with `list_option` (type `list[str] | None`, default None = the
command's default list) and read it with `parse_list` or `parse_int_list`.
"""

from __future__ import annotations

from collections.abc import Iterable

import typer

from quasar.errors import ConfigError, check_choice, check_range

LIST_METAVAR = "A,B,..."
FORM = "comma-separated or repeated"


def list_option(flag: str, what: str, example: str, default: str | None = None) -> typer.models.OptionInfo:
    """A typer option for a list: `what` it holds, an `example` value list ("2,4,8"), the `default` in words."""
    tail = f"; default {default}" if default else ""
    return typer.Option(flag, help=f"{what}, {FORM} (e.g. {flag} {example}){tail}", metavar=LIST_METAVAR)


def parse_list(flag: str, values: Iterable[str] | str | None,
               allowed: tuple[str, ...] | None = None) -> tuple[str, ...] | None:
    """The items of a list option in the order given, or None when the option was not given.

    `values` is what typer passes (one string per occurrence; a plain string is one occurrence)."""
    if values is None:
        return None
    if isinstance(values, str):
        values = [values]
    out: list[str] = []
    for value in values:
        for part in str(value).split(","):
            item = part.strip()
            if not item:
                raise ConfigError(f"{flag} has an empty item in {value!r}; give {FORM}, e.g. {flag} a,b")
            if any(ch.isspace() for ch in item):
                raise ConfigError(f"{flag} value {item!r} holds spaces; separate values with commas, "
                                  f"e.g. {flag} {','.join(item.split())}")
            if allowed is not None:
                check_choice(flag, item, allowed)
            if item in out:
                raise ConfigError(f"{flag} lists {item!r} twice; give each value once")
            out.append(item)
    if not out:
        raise ConfigError(f"{flag} was given without a value; give {FORM}")
    return tuple(out)


def parse_int_list(flag: str, values: Iterable[str | int] | str | None, lo: int, hi: int) -> tuple[int, ...] | None:
    """The integers of a list option (each in lo..hi), in the order given; None when not given."""
    items = parse_list(flag, None if values is None else [str(v) for v in ([values] if isinstance(values, str)
                                                                          else values)])
    if items is None:
        return None
    out = tuple(check_range(flag, item, lo, hi) for item in items)
    dup = next((v for i, v in enumerate(out) if v in out[:i]), None)  # "8" and "08"
    if dup is not None:
        raise ConfigError(f"{flag} lists {dup} twice; give each value once")
    return out
