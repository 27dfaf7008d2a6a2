"""Plain-text renderings shared by the commands (no rich, so they cost nothing to import)."""

from __future__ import annotations

from typing import Any

MISSING = "n/a"


def figure(value: Any, unit: str = "") -> str:
    """A number for people: ``n/a`` when there is none (never ``None``), units spaced as in ``10 %``."""
    if value is None:
        return MISSING
    text = f"{value:g}" if isinstance(value, int | float) else str(value)
    return f"{text} {unit}" if unit == "%" else f"{text}{unit}"


def routing(alias: dict[str, Any] | None) -> str:
    """An alias's routing as ``v4 10 % / v1 90 %``: the weighted versions first, then the primary."""
    if not alias:
        return MISSING
    weights = {str(v): float(w) for v, w in (alias.get("weights") or {}).items() if w}
    primary = 100.0 - sum(weights.values()) * 100
    parts = [f"v{v} {round(w * 100, 2):g} %" for v, w in sorted(weights.items())]
    parts.append(f"v{alias.get('version')} {round(primary, 2):g} %")
    return " / ".join(parts)
