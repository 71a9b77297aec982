"""The one value the sans-IO adapters hand to an HTTP client."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["HttpRequest"]


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """One HTTP request to perform: ``url`` is absolute and already carries its
    query string; ``body`` is sent as is with the given headers."""

    method: str
    url: str
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""

    def header(self, name: str) -> str | None:
        """The first header called ``name`` (case-insensitive), or None."""
        wanted = name.lower()
        for key, value in self.headers:
            if key.lower() == wanted:
                return value
        return None
