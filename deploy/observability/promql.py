"""The metric names a PromQL expression reads, for checking dashboards and rules against what
the services export.

Enough of PromQL for the expressions written here, not a parser: string literals, label
matchers (`{...}`), range and subquery brackets (`[5m]`), offsets, Grafana's variables
(`$__rate_interval`) and numbers are removed, then the label lists of `by`/`without`/`on`/`ignoring`/
`group_left`/`group_right`; what remains is names, and a name followed by `(` is a function
or an aggregation, a keyword is a keyword, every other one a metric.
"""

from __future__ import annotations

import re

STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
MATCHERS = re.compile(r"\{[^{}]*\}")
BRACKETS = re.compile(r"\[[^\[\]]*\]")
GRAFANA_VARIABLE = re.compile(r"\$\{?\w+\}?")
NUMBER = re.compile(r"(?<![\w:])(?:0x[0-9a-fA-F]+|\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|\.\d+|Inf|NaN)\b")
OFFSET = re.compile(r"\boffset\s+-?[\w$]+")
LABEL_LIST = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
KEYWORDS = frozenset(
    [
        "and",
        "or",
        "unless",
        "bool",
        "offset",
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "atan2",
        "start",
        "end",
    ]
)


def metric_names(expression: str) -> set[str]:
    """Every metric (or recording rule) name `expression` selects."""
    text = STRING.sub(" ", expression)
    text = MATCHERS.sub(" ", text)
    text = BRACKETS.sub(" ", text)
    text = OFFSET.sub(" ", text)
    text = GRAFANA_VARIABLE.sub(" ", text)
    text = LABEL_LIST.sub(" ", text)
    text = NUMBER.sub(" ", text)
    names: set[str] = set()
    for match in NAME.finditer(text):
        name = match.group()
        if name in KEYWORDS or text[match.end() :].lstrip().startswith("("):
            continue
        names.add(name)
    return names
