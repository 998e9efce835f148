"""cocotb testbenches of the generated array and the Verilator build/launch helpers (testbenches.sim)."""
