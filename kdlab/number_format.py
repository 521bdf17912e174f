"""Numbers as people read them, one function for each use: ``num`` for a metric value in a table, a metric card
or a report line (0.0018, not 1.7763e-03), ``plain`` for a value a user types back (``--set alpha=0.00123``).
Imports nothing: the dashboard's first page and the CLI's light commands use it."""
from __future__ import annotations

import math
from decimal import Decimal


def num(x) -> str:
    """A metric value: fixed-point with four decimals, a value below 0.01 with three significant digits (0.00178, not
    1.7763e-03), thousands with separators (12,346); nan and inf as themselves, a value below 1e-9 in scientific
    notation (it is noise, and says so)."""
    x = float(x)
    if not math.isfinite(x) or x == 0:
        return f"{x:g}"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    if abs(x) >= 0.01:
        return f"{x:.4f}"
    if abs(x) < 1e-9:
        return f"{x:.2e}"
    return f"{x:.{2 - math.floor(math.log10(abs(x)))}f}"


def plain(x, digits: int = 3) -> str:
    """``digits`` significant digits in positional notation, never scientific, no separators: a value a user can
    type back as an option (124, 0.00123, 0.000012)."""
    x = float(x)
    if not math.isfinite(x):
        return f"{x:g}"
    return format(Decimal(f"{x:.{digits}g}"), "f")
