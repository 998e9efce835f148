"""The benchmark: RTL vs software-level injection speed, agreement and fast-path fidelity."""
