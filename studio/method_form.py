"""The Adapt page's widgets of a method's own options, drawn from their declarations on its registry entry
(``ueo_core.methods.options.Option``): a new method's option shows here with no line of page code."""
from __future__ import annotations

import streamlit as st

from ueo_core.methods import METHODS


def _help(o) -> str:
    extra = "; ".join(x for x in (f"empty: {o.unset}" if o.optional else "", f"allowed: {o.rule()}",
                                  o.official_text()) if x)
    return o.help[:1].upper() + o.help[1:] + "." + (f" ({extra})" if extra else "")


def option_widgets(method: str, own: dict, columns: int = 4) -> dict:
    """One widget per option of ``method`` (the value of this session's run of it when there is one, else the
    declared default), in rows of ``columns``; returns name -> value, for ``RunConfig.options``. A number box has
    no bounds of its own: Streamlit would silently keep the last value in range, so a value out of range reaches
    ``RunConfig.validate``, which refuses it naming the option (its label) and its range."""
    options = METHODS[method].options
    values = {}
    for start in range(0, len(options), columns):
        cols = st.columns(columns)
        for col, o in zip(cols, options[start:start + columns]):
            value = own.get(o.name, o.default)
            key, label, tip = f"option|{method}|{o.name}", o.label or o.name, _help(o)
            if o.kind is bool:
                values[o.name] = col.checkbox(label, bool(value), key=key, help=tip)
            elif o.kind is str:
                values[o.name] = col.selectbox(label, list(o.choices), index=list(o.choices).index(value), key=key,
                                               help=tip)
            else:
                cast = int if o.kind is int else float
                got = col.number_input(label, value=None if value is None else cast(value),
                                       step=1 if o.kind is int else None, key=key, help=tip,
                                       placeholder=f"unset: {o.unset}" if o.optional else None,
                                       format=None if o.kind is int else "%g")
                values[o.name] = None if got is None else cast(got)
    return values
