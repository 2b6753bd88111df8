"""Warnings of a run, grouped by kind and ordered most serious first.

A run collects one warning per evaluated set and problem ("val: 3 real and 4 fake videos
(< 5 per class) ...", "test: ..."), which reads as a dozen near-identical lines with the key
one last. :func:`grouped_lines` turns them into one line per kind, in the order of
:data:`KINDS` (most serious first), naming every set it concerns; consoles print these lines
and ``report.html`` lists them. ``metrics.json["warnings"]`` keeps every warning as it was.

>>> grouped_lines(["val: 2 real and 2 fake videos (< 5 per class): too few",
...                "test: 1 real and 3 fake videos (< 5 per class): too few",
...                "cross b: 1 real and 3 fake videos (< 5 per class): too few",
...                "test: AUC 0.300 is below chance (0.5): inverted"])
['worse than chance: test: AUC 0.300 is below chance (0.5): inverted', \
'too few videos: val: 2 real and 2 fake videos (< 5 per class); test, cross b: 1 real and 3 \
fake videos (< 5 per class) -- too few']
"""
from __future__ import annotations

import re

__all__ = ["KINDS", "kind_of", "group_warnings", "grouped_lines"]

#: ``(kind, pattern)`` from the most serious down; a warning takes the first kind whose
#: pattern it contains, else ``"note"`` (last).
KINDS = (
    ("worse than chance", re.compile(r"below chance")),
    ("confound", re.compile(r"metadata-only model")),
    ("non-finite features", re.compile(r"NaN or infinite")),
    ("one class only", re.compile(r"one class only")),
    ("threshold from train", re.compile(r"threshold taken from train")),
    ("too few videos", re.compile(r"\(< \d+ per (class|method)\)")),
    ("one video decides", re.compile(r"a single video decides it|per-method AUC of .* from")),
    ("unresolvable rate targets", re.compile(r"not resolvable")),
)
NOTE = "note"
#: A common ending shorter than this many words is not worth pulling out of a group.
MIN_SUFFIX_WORDS = 2


def kind_of(warning: str) -> str:
    """The :data:`KINDS` name of one warning (``"note"`` when none matches)."""
    return next((name for name, pattern in KINDS if pattern.search(warning)), NOTE)


def _severity(kind: str) -> int:
    names = [name for name, _ in KINDS]
    return names.index(kind) if kind in names else len(names)


def _common_suffix(texts: list[str]) -> str:
    """The clause every text ends with, after a colon (``"...: too few"``), leaving at least
    one word of each; else "". Cutting only after a colon keeps each fact whole: two texts
    that end alike inside a fact ("1/n_real = 1/10", "1/n_fake = 1/10") keep their ends."""
    words = [t.split() for t in texts]
    n = 0
    while all(len(w) > n + 1 for w in words) and len({w[-1 - n] for w in words}) == 1:
        n += 1
    while n and not all(w[-1 - n].endswith(":") for w in words):
        n -= 1
    return " ".join(words[0][len(words[0]) - n:]) if n >= MIN_SUFFIX_WORDS else ""


def _where(warning: str) -> tuple[str | None, str]:
    """``("val", "rest")`` for ``"val: rest"``; ``(None, warning)`` when it names no set."""
    head, sep, rest = warning.partition(": ")
    return (head, rest) if sep and len(head.split()) <= 2 else (None, warning)


def _line(kind: str, items: list[str]) -> str:
    """Items with the same text for several sets become ``"val, test: text"``; the ending
    that all texts share is written once, after ``--``."""
    places: dict[str, list[str]] = {}
    for w in items:
        where, body = _where(w)
        places.setdefault(body, [])
        if where is not None:
            places[body].append(where)
    bodies = list(places)
    suffix = _common_suffix(bodies) if len(bodies) > 1 else ""
    parts, last = [], None
    for body in bodies:
        text = (" ".join(body.split()[: len(body.split()) - len(suffix.split())]).rstrip(":")
                if suffix else body)
        label = ", ".join(places[body])
        parts.append(f"{label}: {text}" if label and label != last else text)  # a set named once in a row
        last = label
    return f"{kind}: " + "; ".join(parts) + (f" -- {suffix}" if suffix else "")


def group_warnings(warnings) -> list[dict]:
    """``[{"kind", "severity", "items", "line"}]``, one per kind present, most serious first.

    ``items`` are the warnings of that kind in their original order (duplicates dropped);
    ``line`` is ``"<kind>: <sets>: <text>; <sets>: <text> -- <ending the texts share>"``,
    the shared ending being the clause after a colon that every text ends with.
    """
    groups: dict[str, list[str]] = {}
    for w in warnings or []:
        if w and w not in groups.setdefault(kind_of(w), []):
            groups[kind_of(w)].append(w)
    out = []
    for kind, items in sorted((kv for kv in groups.items() if kv[1]), key=lambda kv: _severity(kv[0])):
        out.append({"kind": kind, "severity": _severity(kind), "items": items, "line": _line(kind, items)})
    return out


def grouped_lines(warnings) -> list[str]:
    """The ``line`` of each :func:`group_warnings` group: what a console prints."""
    return [g["line"] for g in group_warnings(warnings)]
