"""Text from messages and the database, as the command line prints it: literally.

A package id, a reason, a header or a carrier's description is printed as a Rich ``Text``
(never read as markup such as ``[bold]`` or ``[link=…]``, nor as emoji codes), with every
control character written out (shared/printable.py), so that no escape sequence a message
holds reaches the operator's terminal. Lines are put together with ``Text.assemble``.
"""

from __future__ import annotations

from rich.text import Text

from shared.printable import visible


def shown(value) -> str:
    """``value`` (any type; None or empty as "-") as a plain string safe to print."""
    return visible("-" if value is None or value == "" else str(value))


def literal(value, style: str = "") -> Text:
    """``value`` as text that Rich prints exactly as it reads."""
    return Text(shown(value), style=style)
