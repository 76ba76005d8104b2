"""Comparison reports for sweeps: a table, figures and McNemar's test from the run folders."""
