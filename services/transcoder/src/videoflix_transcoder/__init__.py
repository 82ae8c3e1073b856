"""Videoflix transcoder service."""
