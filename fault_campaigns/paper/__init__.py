"""The reference study's conditions (ISQED 2024, arXiv 2401.09509) as a preset: `quasar paper` / `make paper`.

`run` configures and runs the sweep and computes the figures, `figures` computes them from the stores (pure),
`report` writes paper.md / paper.json, `cli` is the command. docs/paper.md reads the output.
"""
