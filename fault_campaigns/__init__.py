"""Fault-injection campaigns on the generated RTL: planning, execution, classification, reporting."""
