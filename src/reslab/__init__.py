"""reslab: config-driven depth studies of plain and residual networks."""

__version__ = "0.1.0"
