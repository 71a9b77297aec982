"""Message templates: `{column}` placeholders filled from a contact's columns.

Rendered by Jinja2's sandbox with `{` and `}` as the variable delimiters, so
an operator writes `Hi {first_name}` and can still use Jinja2's filters
(`{first_name|title}`, `{balance|default('0')}`); block tags are `{% ... %}`.
The sandbox keeps a template from reaching Python internals, and strict
undefined makes a column the contact lacks an error naming it, never an empty
string in a message that goes to a customer.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

import jinja2
from jinja2 import meta
from jinja2.sandbox import SandboxedEnvironment

_ENV = SandboxedEnvironment(
    variable_start_string="{",
    variable_end_string="}",
    comment_start_string="{#",
    comment_end_string="#}",
    undefined=jinja2.StrictUndefined,
    autoescape=False,  # SMS is plain text; the email channel autoescapes its HTML
    keep_trailing_newline=True,
)


class TemplateError(ValueError):
    """A template that does not parse, or a contact it cannot be filled for."""


class MissingColumn(TemplateError):
    def __init__(self, column: str) -> None:
        super().__init__(f"missing column {column!r}")
        self.column = column


@dataclass(frozen=True, slots=True)
class Template:
    source: str
    columns: frozenset[str]
    _compiled: jinja2.Template

    def render(self, data: Mapping[str, str]) -> str:
        """The text for one contact (see `render_strict`)."""
        return render_strict(self._compiled, data)


def render_strict(compiled: jinja2.Template, data: Mapping[str, str]) -> str:
    """`compiled` filled from a contact's columns. A column it lacks, or has
    empty, is a MissingColumn naming it (an empty name in a message to a
    customer is as wrong as a missing one), unless the template gives a
    default; any other failure is a TemplateError. The email channel's parts
    render through this too."""
    present = {k: v for k, v in data.items() if v is not None and str(v).strip()}
    try:
        return compiled.render(**present)
    except jinja2.UndefinedError as exc:
        match = _UNDEFINED.search(str(exc))
        if match is not None:
            raise MissingColumn(match.group(1)) from None
        raise TemplateError(str(exc)) from None
    except (jinja2.TemplateError, TypeError, ValueError) as exc:
        raise TemplateError(f"cannot fill the template: {exc}") from None


_UNDEFINED = re.compile(r"'([^']+)' is undefined")


@lru_cache(maxsize=256)
def compile_template(source: str) -> Template:
    """Parse a template; TemplateError says what is wrong and on which line."""
    try:
        tree = _ENV.parse(source)
        compiled = _ENV.from_string(source)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"template line {exc.lineno}: {exc.message}") from None
    return Template(source, frozenset(meta.find_undeclared_variables(tree)), compiled)
