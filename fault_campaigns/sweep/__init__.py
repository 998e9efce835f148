"""The design-space sweep: every bit width's accuracy, campaigns and synthesis, one table and report."""
