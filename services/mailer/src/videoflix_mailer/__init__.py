"""Videoflix mailer service."""
