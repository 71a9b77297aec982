"""outdial's store: the system of record (SQLAlchemy Core, Alembic, SQLite or
PostgreSQL), behind one async API run on one database thread."""

from engine.store.phones import InvalidNumber, PhoneNormalizer
from engine.store.store import Store
from engine.store.types import AttemptIntent, DialCandidate, ImportSummary, StoreClosed

__all__ = [
    "AttemptIntent",
    "DialCandidate",
    "ImportSummary",
    "InvalidNumber",
    "PhoneNormalizer",
    "Store",
    "StoreClosed",
]
