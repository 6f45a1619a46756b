"""Database access: engines, sessions, the declarative base and migrations."""

from callerid.db.base import Base, UtcDateTime
from callerid.db.engine import Database

__all__ = ["Base", "Database", "UtcDateTime"]
