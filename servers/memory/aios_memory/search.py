"""Query tokenization, in-process scoring of working memories, and rank fusion (spec 3.3).

User text never reaches FTS5 or Lucene as syntax: it is cut into tokens here and each backend
quotes every token.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from typing import Final

__all__ = ["STOP_WORDS", "reciprocal_rank_fusion", "term_frequency_score", "tokenize"]

# Lucene's English stop words (EnglishAnalyzer.ENGLISH_STOP_WORDS_SET), removed on both backends.
STOP_WORDS: Final = frozenset(
    "a an and are as at be but by for if in into is it no not of on or such that the their "
    "then there these they this to was will with".split()
)
_TOKEN: Final = re.compile(r"[^\W_]+", re.UNICODE)


def tokenize(text: str, tokens_max: int = 32) -> tuple[list[str], bool]:
    """Tokens of a query: split on non-alphanumerics, lower-cased, NFC, stop words removed, at
    most ``tokens_max``. Also says whether there was any token before stop-word removal."""
    words = [word.lower() for word in _TOKEN.findall(unicodedata.normalize("NFC", text))]
    kept: list[str] = []
    for word in words:
        if word not in STOP_WORDS and word not in kept:
            kept.append(word)
    return kept[:tokens_max], bool(words)


def term_frequency_score(terms: Sequence[str], text: str, match_all: bool) -> float:
    """Working-tier relevance: summed term frequencies; 0 when the match rule fails."""
    words = [word.lower() for word in _TOKEN.findall(unicodedata.normalize("NFC", text))]
    counts = [sum(1 for word in words if word == term or word.startswith(term)) for term in terms]
    matched = [count > 0 for count in counts]
    if not any(matched) or (match_all and not all(matched)):
        return 0.0
    return float(sum(counts)) / (1.0 + len(words) / 100.0)


def reciprocal_rank_fusion(lists: Sequence[Sequence[str]], k: int = 60) -> list[tuple[str, float]]:
    """RRF over ranked id lists: score = sum of 1 / (k + rank); ties by id."""
    scores: dict[str, float] = {}
    for ranked in lists:
        for rank, item in enumerate(ranked, start=1):
            scores[item] = scores.get(item, 0.0) + 1.0 / (k + rank)
    return sorted(scores.items(), key=lambda pair: (-pair[1], pair[0]))
