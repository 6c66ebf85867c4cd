"""Telling a poisoned row from an unreachable database.

A writer that batches rows (the call journal, the security log) must retry a batch when
the database is unreachable or busy (nothing is lost), but must not retry forever a row
that the database refuses for what it holds (a NUL on PostgreSQL, a broken foreign key):
that row is put aside and the rest written.
"""

from __future__ import annotations

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError, StatementError

# SQLSTATE classes that say "try again later": connection, transaction rollback
# (serialization, deadlock), insufficient resources, operator intervention, system error.
TRANSIENT_SQLSTATE_CLASSES = frozenset({"08", "40", "53", "57", "58"})


def is_poison(exc: BaseException) -> bool:
    """Whether the database refused the rows themselves (retrying cannot help)."""
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated or isinstance(exc, (OperationalError, InterfaceError)):
            return False
        orig = exc.orig
        state = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
        if isinstance(state, str) and state[:2] in TRANSIENT_SQLSTATE_CLASSES:
            return False
        return True
    if isinstance(exc, StatementError):  # a parameter could not be bound (encoding...)
        return True
    return isinstance(exc, (ValueError, TypeError, UnicodeError))
