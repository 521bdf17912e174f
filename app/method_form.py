"""A method's options as form widgets, built from the method's own declaration (``Method.option_specs``).

Numbers become number inputs (an optional one left empty means "automatic", as its help says), true/false a
checkbox, a fixed set of values a select box. Layer lists, matrices and the schedules (``X_end``,
``X_schedule``) stay in the page's "Advanced" JSON box. Ranges are not enforced by the widgets: the values go
through ``Method.check_options``, so a bad value is refused with the method's own message.
"""
from __future__ import annotations

import streamlit as st

FORM_KINDS = ("float", "int", "bool", "choice")


def form_options(method_cls) -> dict:
    """``{option: Option}`` of the options the form shows (the method's defaults of a form kind)."""
    specs = method_cls.option_specs()
    return {k: specs[k] for k in method_cls.all_defaults() if k in specs and specs[k].kind in FORM_KINDS}


def widget_key(method: str, option: str) -> str:
    return f"train_opt_{method}_{option}"


def _help(spec) -> str:
    rng = spec.range_text() if spec.kind in ("float", "int") and (spec.lo is not None or spec.hi is not None) else ""
    return spec.help + (f" (allowed: {rng})" if rng else "")


def render(method_cls, columns: int = 4) -> dict:
    """Draw one widget per form option of ``method_cls`` (keys ``widget_key``); returns the values that differ
    from the method's defaults (the ``method_args`` a run needs)."""
    specs, defaults = form_options(method_cls), method_cls.all_defaults()
    if not specs:
        st.caption(f"`{method_cls.name}` has no options to set")
        return {}
    cols = st.columns(columns)
    out = {}
    for i, (key, spec) in enumerate(specs.items()):
        d, col, wk = defaults[key], cols[i % columns], widget_key(method_cls.name, key)
        if spec.kind == "bool":
            v = col.checkbox(key, value=bool(d), key=wk, help=_help(spec))
        elif spec.kind == "choice":
            values = list(spec.values)
            if d not in values:
                values.insert(0, d)
            v = col.selectbox(key, values, index=values.index(d), key=wk, help=_help(spec))
        elif spec.kind == "int":
            v = col.number_input(key, value=None if d is None else int(d), step=1, key=wk, help=_help(spec),
                                 placeholder="automatic" if spec.optional else None)
            v = None if v is None else int(v)
        else:
            v = col.number_input(key, value=None if d is None else float(d), key=wk, help=_help(spec),
                                 step=0.1 if d is None or abs(float(d)) < 10 else 1.0, format="%g",
                                 placeholder="automatic" if spec.optional else None)
            v = None if v is None else float(v)
        same = v == d if not (isinstance(d, float) and isinstance(v, float)) else abs(v - d) <= 1e-9 * max(1, abs(d))
        if not same:
            out[key] = v
    return out
