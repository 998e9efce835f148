"""`quasar signoff`: lint, formal proof, simulation checks and synthesis overhead of one protected
design, with a pass/fail report per item (docs/signoff.md)."""
