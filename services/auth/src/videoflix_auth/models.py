"""Auth's tables (its own database). The outbox table comes from the shared library."""

from __future__ import annotations

from videoflix_shared.db import Base
from videoflix_shared.outbox import OutboxMessage

__all__ = ["Base", "OutboxMessage"]
