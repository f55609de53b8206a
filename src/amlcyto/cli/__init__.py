"""The command line: one module per command group; main.py only wires them together."""
