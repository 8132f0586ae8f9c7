"""Where the words of a search are inside a message's text: the spans the views highlight.

The full-text index decides which messages match (unicode61 tokens, case and diacritics
ignored, the last word typed as a prefix: see ``store.messages.fts_query``). This module finds the
same words again in the text a result carries, so highlighting needs no offsets from the index and
works the same in the search panel, the find bar and the message view.
"""

from __future__ import annotations

import re
import unicodedata
from typing import NamedTuple

# unicode61 keeps letters, digits and private-use characters together and splits on the rest
# (underscore included, which \w would keep).
_TOKEN = re.compile(r"[^\W_]+")
SNIPPET_CHARS = 90


class Terms(NamedTuple):
    exact: frozenset[str]  # folded tokens that must match a whole word
    prefix: str  # the last token typed, matched as the start of a word ("" if none)


def fold(word: str) -> str:
    """Lower case without diacritics, as the index compares words."""
    decomposed = unicodedata.normalize("NFKD", word.lower())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def query_terms(query: str) -> Terms:
    tokens = [fold(token) for token in _TOKEN.findall(query.replace("\x00", " "))]
    if not tokens:
        return Terms(frozenset(), "")
    return Terms(frozenset(tokens[:-1]), tokens[-1])


def match_spans(text: str, query: str | Terms) -> list[tuple[int, int]]:
    """(start, end) character offsets of the words in ``text`` that the query matches."""
    terms = query_terms(query) if isinstance(query, str) else query
    if not terms.prefix:
        return []
    spans = []
    for found in _TOKEN.finditer(text):
        word = fold(found.group())
        if word in terms.exact or word.startswith(terms.prefix):
            spans.append(found.span())
    return spans


def snippet(text: str, query: str, width: int = SNIPPET_CHARS) -> list[tuple[str, bool]]:
    """A one-line excerpt of ``text`` around its first match, as (piece, is_match) pieces."""
    flat = " ".join(text.split())
    spans = match_spans(flat, query)
    start = 0
    if spans and spans[0][0] > width // 3:
        start = flat.rfind(" ", 0, spans[0][0] - width // 3) + 1
    end = len(flat)
    if end - start > width:
        end = flat.find(" ", start + width)
        end = len(flat) if end < 0 else end
    pieces: list[tuple[str, bool]] = [("…", False)] if start > 0 else []
    position = start
    for span_start, span_end in spans:
        if span_end <= start or span_start >= end:
            continue
        if span_start > position:
            pieces.append((flat[position:span_start], False))
        pieces.append((flat[span_start:span_end], True))
        position = span_end
    if position < end:
        pieces.append((flat[position:end], False))
    if end < len(flat):
        pieces.append(("…", False))
    return pieces


def highlight_colours(theme: str) -> tuple[str, str]:
    """(background of a matched word, background of the message a jump landed on)."""
    return ("#806600", "#3d3520") if theme == "dark" else ("#ffd95a", "#fff3c4")
