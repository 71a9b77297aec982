"""Hot-path statements run straight on the driver's cursor.

SQLAlchemy Core builds and caches a compiled statement well, but executing it
still costs ~25 us of Python per statement (execution context, parameter
processing, result wrapping) where the DBAPI call itself costs ~8 us. The SMS
and email senders make a dozen statements a message, so at a thousand messages
a second that overhead alone would fill the store thread.

`Prepared` keeps the statement a SQLAlchemy construct (so it is written once,
in Core, for every dialect the store runs on) and compiles it once per
dialect into the SQL text, the order its parameters go in, their fixed values
(literals the construct bound, such as a LIMIT) and the type processors
SQLAlchemy would apply (our UTC datetimes): `run` then makes one cursor call.
Rows come back as the driver's tuples, without result processing, so a
prepared statement returns only columns of plain types (ids, text, numbers);
a statement whose execution needs more of SQLAlchemy (Python-side column
defaults, expanding IN lists, post-compile parameters) is refused when it is
first compiled.

Transactions stay SQLAlchemy's: `run` begins the connection's transaction if
none is open, so the writer's commit or rollback covers these statements with
every other statement of the group.

`defer` is for rows that nothing reads back in the same transaction (a
message's status history): they are kept on the connection and inserted with
one `executemany` just before the transaction commits, and dropped if it rolls
back (`install` hooks both into the engine's commit and rollback events).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, event
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.expression import ClauseElement

__all__ = ["Prepared", "flush_deferred", "install"]

_DEFERRED = "outdial.prepared.deferred"

_Processor = Callable[[Any], Any] | None


@dataclass(frozen=True, slots=True)
class _Compiled:
    sql: str
    positional: bool
    names: tuple[str, ...]
    fixed: tuple[Any, ...]  # a bound literal's value, or _GIVEN: the caller supplies it
    processors: tuple[_Processor, ...]


_GIVEN = object()


class Prepared:
    """A Core statement, compiled once per dialect, executed on the DBAPI cursor.

    ``statement`` is the construct, or a function of the dialect that builds it
    (for dialect-specific constructs such as ``INSERT ... ON CONFLICT``).
    ``given`` names the parameters every call supplies; any other bound
    parameter must carry its value in the construct.
    """

    __slots__ = ("_build", "_compiled", "given")

    def __init__(
        self, statement: ClauseElement | Callable[[Dialect], ClauseElement], given: Sequence[str]
    ) -> None:
        self._build = statement
        self.given = frozenset(given)
        self._compiled: dict[str, _Compiled] = {}

    def _compile(self, dialect: Dialect) -> _Compiled:
        statement = self._build if isinstance(self._build, ClauseElement) else self._build(dialect)
        compiled: Any = statement.compile(dialect=dialect)
        if compiled.insert_prefetch or compiled.update_prefetch:
            raise TypeError(f"prepared statement needs SQLAlchemy's column defaults: {compiled}")
        if getattr(compiled, "literal_execute_params", None) or getattr(
            compiled, "post_compile_params", None
        ):
            raise TypeError(f"prepared statement needs post-compile parameters: {compiled}")
        binds: Mapping[str, Any] = compiled.binds
        names = tuple(compiled.positiontup) if compiled.positional else tuple(binds)
        fixed: list[Any] = []
        processors: list[_Processor] = []
        for name in names:
            bind = binds[name]
            if bind.expanding:
                raise TypeError(f"prepared statement has an expanding parameter {name!r}")
            if name in self.given:
                fixed.append(_GIVEN)
            elif bind.callable is not None:
                raise TypeError(f"parameter {name!r} has a callable value")
            else:
                fixed.append(bind.value)
            processors.append(bind.type.dialect_impl(dialect).bind_processor(dialect))
        missing = self.given - set(names)
        if missing:
            raise TypeError(f"prepared statement has no parameter {sorted(missing)}")
        return _Compiled(compiled.string, compiled.positional, names, tuple(fixed),
                         tuple(processors))  # fmt: skip

    def _for(self, conn: Connection) -> _Compiled:
        dialect = conn.dialect
        compiled = self._compiled.get(dialect.name)
        if compiled is None:
            compiled = self._compiled[dialect.name] = self._compile(dialect)
        return compiled

    @staticmethod
    def _values(compiled: _Compiled, params: Mapping[str, Any]) -> Any:
        values = [
            params[name] if value is _GIVEN else value
            for name, value in zip(compiled.names, compiled.fixed, strict=True)
        ]
        for index, process in enumerate(compiled.processors):
            if process is not None and values[index] is not None:
                values[index] = process(values[index])
        if compiled.positional:
            return values
        return dict(zip(compiled.names, values, strict=True))

    def run(self, conn: Connection, params: Mapping[str, Any]) -> Any:
        """Execute with ``params`` (the `given` names); returns the DBAPI cursor."""
        compiled = self._for(conn)
        values = self._values(compiled, params)
        if not conn.in_transaction():
            conn.begin()
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        cursor.execute(compiled.sql, values)
        return cursor

    def defer(self, conn: Connection, params: Mapping[str, Any]) -> None:
        """Execute just before the transaction commits, with the other deferred
        rows of this statement (one executemany); nothing if it rolls back.
        Needs `install` on the connection's engine."""
        values = self._values(self._for(conn), params)  # bad values fail here, at the caller
        if not conn.in_transaction():
            conn.begin()
        batches: dict[Prepared, list[Any]] = conn.info.setdefault(_DEFERRED, {})
        batches.setdefault(self, []).append(values)

    def first(self, conn: Connection, params: Mapping[str, Any]) -> tuple[Any, ...] | None:
        """The first row (a tuple), or None."""
        rows = self.run(conn, params).fetchall()  # read to the end: the statement is done
        return tuple(rows[0]) if rows else None

    def all(self, conn: Connection, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        rows: list[tuple[Any, ...]] = self.run(conn, params).fetchall()
        return rows


def flush_deferred(conn: Connection) -> None:
    """Run the deferred rows now (the commit hook; callable before reading them back)."""
    batches: dict[Prepared, list[Any]] | None = conn.info.pop(_DEFERRED, None)
    if not batches:
        return
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    for prepared, rows in batches.items():
        cursor.executemany(prepared._for(conn).sql, rows)


def _discard_deferred(conn: Connection) -> None:
    conn.info.pop(_DEFERRED, None)


def install(engine: Engine) -> None:
    """Deferred rows are written at each commit of `engine`'s connections and
    dropped at each rollback."""
    if not event.contains(engine, "commit", flush_deferred):
        event.listen(engine, "commit", flush_deferred)
        event.listen(engine, "rollback", _discard_deferred)
