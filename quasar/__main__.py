"""`python -m quasar` runs the `quasar` command line."""

from quasar.cli import entry

entry()
