"""Videoflix auth service."""
