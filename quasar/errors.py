"""User-facing errors.

Every error a user can cause (a bad width, a missing directory, a corrupt file) is a `QuasarError`
whose message names the bad value and what is allowed. The CLI prints the message alone and exits
with status 2; library code raises, it never prints or exits.
"""


class QuasarError(ValueError):
    """An error caused by the user's input or environment, reported without a traceback."""


class ConfigError(QuasarError):
    """A configuration value is outside what is allowed."""


def check_range(name: str, value: object, lo: int, hi: int) -> int:
    """Return `value` as an int if it is an integer in [lo, hi], else raise a ConfigError naming it."""
    if isinstance(value, bool) or not isinstance(value, int):
        try:
            as_int = int(str(value), 10)
        except ValueError:
            raise ConfigError(f"{name} must be an integer in {lo}..{hi}, got {value!r}") from None
        value = as_int
    if not lo <= value <= hi:
        raise ConfigError(f"{name} must be in {lo}..{hi}, got {value!r}")
    return value


def check_choice(name: str, value: object, allowed: tuple[str, ...]) -> str:
    """Return `value` if it is one of `allowed`, else raise a ConfigError listing the choices."""
    if value not in allowed:
        raise ConfigError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")
    return str(value)


class Interrupted(Exception):  # noqa: N818 - named for what the user did, like KeyboardInterrupt
    """The user interrupted a command (Ctrl-C, SIGINT). The message says what was kept and how to go on;
    the CLI prints it as one `interrupted: ...` line and exits with status 130 (128 + SIGINT), so `make`
    and `&&` chains stop. Library code raises it from a KeyboardInterrupt once its files are consistent."""
