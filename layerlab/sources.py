"""The documents that layerlab's demo, examples, studies and reports refer
to by short names ("the seed post", "slides 44-45"), one sentence each.

The command line's ``--help``, the demo and the README print these same
sentences; a report can add :func:`glossary` (or one entry) to say which
source a figure beside its own comes from.

Examples:
    >>> from layerlab.sources import SOURCES
    >>> print(SOURCES["seed post"])     # doctest: +ELLIPSIS
    "Defining Your Own Network Layer", ...
"""

from __future__ import annotations

import textwrap

__all__ = ["SOURCES", "glossary"]

#: short name -> one sentence naming the source and what layerlab takes from it
SOURCES: dict[str, str] = {
    "seed post": (
        '"Defining Your Own Network Layer", Steve Eddins\'s post on MathWorks\' Deep Learning '
        "blog (MATLAB R2017b): an ELU layer with one learnable alpha per channel, written as a "
        "custom layer, trained on MATLAB's digits to a test accuracy of 0.9872; "
        "`layerlab demo` repeats it on layerlab's synthetic digits."),
    "Revisited post": (
        'its follow-up on the same blog, "Defining Your Own Network Layer (Revisited)": the '
        "same network without batch normalization, and an ELU with a fixed alpha."),
    "going deeper lectures": (
        'François Fleuret\'s EPFL course EE-559 "Deep learning", lecture 6 "Going deeper" '
        "(2018): rectifiers, maxout, dropout, batch normalization and residual networks."),
    "slides 44-45": (
        "the slides of that lecture where a deep MLP learns a 2-d disc, its test error "
        "plotted against the standard deviation of the initial weights, with and without "
        "batch normalization; the study disc-init repeats it."),
}


def glossary(names: list[str] | None = None, indent: str = "  ", width: int | None = 79) -> str:
    """The named sources (all by default), one ``name: sentence`` entry
    each, wrapped to ``width`` columns (``None``: one line each)."""
    entries = [f"{indent}{name}: {SOURCES[name]}" for name in (names or SOURCES)]
    if width is None:
        return "\n".join(entries)
    return "\n".join(textwrap.fill(e, width, subsequent_indent=indent + "    ") for e in entries)
