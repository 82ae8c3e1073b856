"""Videoflix shared library."""
