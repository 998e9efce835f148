"""QuaSAR shared layer: the arithmetic contract, user-facing errors and tool environment.

This package holds what every other package needs and must never import them back.
"""

__version__ = "0.1.0"
