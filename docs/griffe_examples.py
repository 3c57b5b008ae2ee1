"""A griffe extension for the API pages: read ``Example:`` docstring sections as ``Examples:``.

The package's Google-style docstrings head their doctest snippets ``Example:``; griffe only knows
the plural, and would otherwise render the snippet as an admonition of plain text.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_EXAMPLE_HEADING = re.compile(r"^(\s*)Example:[ \t]*$", re.MULTILINE)


class ExampleSections(griffe.Extension):
    """Rename every ``Example:`` section heading to ``Examples:`` when an object is loaded."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = _EXAMPLE_HEADING.sub(r"\1Examples:", obj.docstring.value)
