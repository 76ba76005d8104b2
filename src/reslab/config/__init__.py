"""Checking a composed config before any work starts."""
