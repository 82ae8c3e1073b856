"""Videoflix catalog service."""
