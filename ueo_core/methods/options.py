"""A method's own settings, declared once on its registry entry (``Method.options``).

Everything else is generated from the declaration, with no hand copy: ``RunConfig.validate`` checks each value
against it, the CLI adds one flag per option with its help and default (``cli_parser.py``), the Adapt page draws
one widget per option (``studio/method_form.py``), and the docs' table of methods and options is written from it
at build time (``docs/hooks.py``). A method reads its values from its context (``ctx.options.<name>``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Optional

UNSET = object()  # an option without an official value to cite


@dataclass(frozen=True)
class Option:
    name: str                        # the RunConfig.options key and the CLI flag (--name-with-dashes)
    default: Any                     # the studio's value when the user sets none (None: ``unset`` says what then)
    help: str                        # one sentence for the CLI's help, the widget's tooltip and the docs
    kind: type = float               # float, int, str (with ``choices``) or bool
    lo: Optional[float] = None       # the allowed range (numbers): lo <= value <= hi (lo < value with lo_open)
    hi: Optional[float] = None
    lo_open: bool = False
    choices: tuple = ()              # str options: the allowed values
    unset: str = ""                  # what None means, for an option that may stay unset (default None)
    label: str = ""                  # the Adapt page's label (default: the name)
    official: Any = UNSET            # the official code's value ...
    source: str = ""                 # ... and where it is set ("tim-learn/UEO demo.py --trade")

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def optional(self) -> bool:
        return bool(self.unset)

    def rule(self) -> str:
        """The allowed values in words (the validation message's and the docs')."""
        if self.kind is bool:
            text = "true or false"
        elif self.kind is str:
            text = "one of " + ", ".join(self.choices)
        else:
            what = "a whole number" if self.kind is int else "a finite number"
            parts = []
            if self.lo is not None:
                parts.append(f"{'above' if self.lo_open else 'at least'} {_number(self.lo)}")
            if self.hi is not None:
                parts.append(f"at most {_number(self.hi)}")
            text = what + (" " + " and ".join(parts) if parts else "")
        return text + (" (or unset)" if self.optional else "")

    def check(self, value: Any, method: str) -> Any:
        """``value`` if allowed, else a ValueError naming the option as the Adapt page does (its label), the method
        (as a sentence names it), the rule, the value, and the option's name and flag (config, command line)."""
        if value is None and self.optional:
            return value
        ok = value is not None
        if ok and self.kind is bool:
            ok = isinstance(value, bool)
        elif ok and self.kind is str:
            ok = value in self.choices
        elif ok:
            number = isinstance(value, (int, float)) and not isinstance(value, bool)
            ok = number and math.isfinite(value) and (self.kind is not int or float(value).is_integer())
            ok = ok and (self.lo is None or (value > self.lo if self.lo_open else value >= self.lo))
            ok = ok and (self.hi is None or value <= self.hi)
        if not ok:
            raise ValueError(f"'{self.label or self.name}' of {method} must be {self.rule()} (got {value!r}; "
                             f"option {self.name}, {self.flag}).")
        return int(value) if self.kind is int else value

    def official_text(self) -> str:
        """The official value and its source, for the help and the docs ("" when there is none)."""
        if self.official is UNSET:
            return ""
        return f"official {self.official}" + (f", {self.source}" if self.source else "")


def _number(x: float) -> str:
    return f"{int(x):,}" if float(x).is_integer() else f"{x:g}"


def namespace(options: tuple, values: dict) -> SimpleNamespace:
    """A method's option values as attributes (``ctx.options.trade``), each its declared default when unset."""
    return SimpleNamespace(**{o.name: values.get(o.name, o.default) for o in options})


def markdown_table(methods: dict) -> str:
    """The docs' table of every registered method and its options (``docs/hooks.py`` puts it into docs/methods.md
    at build time): nothing in it is written by hand."""
    rows = ["| method | what it does | option (flag) | default | allowed | official value (source) | meaning |",
            "|---|---|---|---|---|---|---|"]
    for name, m in methods.items():
        first = f"`{name}`: {m.label}"
        what = m.description.replace("|", "\\|")
        if not m.options:
            rows.append(f"| {first} | {what} | – | | | | |")
        for i, o in enumerate(m.options):
            official = "–" if o.official is UNSET else f"{o.official} ({o.source})" if o.source else f"{o.official}"
            default = f"unset: {o.unset}" if o.optional else f"{o.default}"
            rows.append(f"| {first if i == 0 else ''} | {what if i == 0 else ''} | `{o.flag}` | {default} | {o.rule()} "
                        f"| {official} | {o.help} |".replace("\n", " "))
    return "\n".join(rows)
