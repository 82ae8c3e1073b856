"""Videoflix streaming service."""
