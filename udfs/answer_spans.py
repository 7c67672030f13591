"""Candidate answers of a paragraph, by question type: the first step of answer-first generation.

Answer-first generation (`qa.mode: answer_first`) picks a span of the
paragraph, then asks the model for the question it answers: the answer is the
paragraph's own words by construction, and the question is asked about a
place the paragraph has an answer for. The candidates are found by shape, with
no model (`candidates`):

| type | span |
|---|---|
| `when` | a date: "February 7, 2016", "7 February 2016", "May 2008", "the 19th century", "1990s", a year of 3-4 digits |
| `who` | a name: two to four capitalized words ("Simon Stephens", "John of Gaunt"), none a month or a sentence's opening word |
| `where` | a place: a capitalized phrase after "in", "at", "from" or "near" ("London", "the Royal Court Theatre") |
| `what` | a keyphrase of the paragraph's topics (TF-IDF) as the paragraph writes it, else a capitalized phrase |
| `how` | a quantity with its noun ("two films", "24 points"), else "by ..." up to a punctuation mark |
| `why` | the clause after "because", "since", "due to", "in order to", "so that", "as a result of" |

Of a type's candidates (in order of appearance, each once), generation `k` of
a paragraph takes the one its seeded hash ranks `k`-th (`pick`), so a re-run
asks the same questions and another seed others. A paragraph with no span of a
type gets no question of that type (`no_answer_candidate`).
"""
from __future__ import annotations

import hashlib
import re
from typing import Iterator, Optional

import pandas as pd
from pyspark.sql import functions as F

_MONTHS = "January|February|March|April|May|June|July|August|September|October|November|December"
_DAYS = "Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday"
_CAP = r"[A-Z][\w'\-]*[a-z][\w'\-]*"  # a capitalized word with a lower-case letter (not "NFL", not "I")
_LINK = r"(?:of|de|da|di|van|von|der|la|le|du|the)"

PATTERNS = {
    "when": re.compile(
        rf"\b(?:(?:{_MONTHS}) \d{{1,2}}, \d{{3,4}}|\d{{1,2}} (?:{_MONTHS}) \d{{3,4}}|(?:{_MONTHS}) \d{{3,4}}"
        r"|the (?:early |late |mid-)?\d{1,2}(?:st|nd|rd|th) century|\d{3,4}s|(?<![\d,.])[12]\d{3}(?!\d|[,.]\d))\b"
    ),
    "who": re.compile(rf"\b{_CAP}(?: (?:{_LINK} )?{_CAP}){{1,3}}\b"),
    "where": re.compile(rf"\b(?:in|at|from|near) ((?:the )?{_CAP}(?: (?:{_LINK} )?{_CAP}){{0,3}})\b"),
    "how": re.compile(
        r"\b(?:\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d{1,3}(?:\.\d+)?|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|twenty|thirty|forty|fifty|hundred)"
        r" (?:[a-z]+ )?[a-z]+s\b"
    ),
    "how_by": re.compile(r"\bby ([a-z]+ing\b[^.,;:!?()]{3,80})"),
    "why": re.compile(r"\b(?:because(?: of)?|since|due to|in order to|so that|as a result of) ([^.,;:!?()]{3,100})"),
    "what": re.compile(rf"\b(?:the )?{_CAP}(?: (?:{_LINK} )?{_CAP}){{0,3}}\b"),
}
_NOT_NAMES = re.compile(rf"^(?:{_MONTHS}|{_DAYS}|The|A|An|In|On|At|He|She|It|They|This|That|These|His|Her|Their)\b")
_SENTENCE_START = re.compile(r"(?:^|[.!?]\s+)([A-Z][\w'\-]*)")
MAX_WORDS = 12
# Words ending in "s" that are not plural nouns: "11 was", "two of his" are no quantities.
NOT_NOUNS = frozenset("was has is as his its this does us yes thus plus always perhaps across less unless whereas".split())


def _spans(pattern: re.Pattern, text: str) -> Iterator[tuple[int, str]]:
    for m in pattern.finditer(text):
        group = m.lastindex or 0
        yield m.start(group), m.group(group).strip()


def candidates(paragraph: Optional[str], qa_type: str, topics: Optional[list[str]] = None) -> list[str]:
    """The candidate answers of `qa_type` in the paragraph, in order of appearance, each once."""
    text = paragraph or ""
    found: list[tuple[int, str]] = []
    if qa_type == "who":
        openers = {m.start(1) for m in _SENTENCE_START.finditer(text)}
        found = [(i, s) for i, s in _spans(PATTERNS["who"], text) if i not in openers and not _NOT_NAMES.match(s)]
    elif qa_type == "where":
        found = [(i, s) for i, s in _spans(PATTERNS["where"], text) if not re.match(rf"^(?:the )?(?:{_MONTHS}|{_DAYS})\b", s)]
    elif qa_type == "how":
        quantities = [(i, q) for i, q in _spans(PATTERNS["how"], text) if not set(q.split()[1:]) & NOT_NOUNS]
        found = quantities or list(_spans(PATTERNS["how_by"], text))
    elif qa_type == "what":
        lower = text.lower()
        for term in topics or []:
            at = lower.find(term.lower())
            if at >= 0 and re.match(r"\b", text[at:]) and len(term.split()) <= MAX_WORDS:
                found.append((at, text[at : at + len(term)]))
        if not found:
            found = [(i, s) for i, s in _spans(PATTERNS["what"], text) if not _NOT_NAMES.match(s)]
    elif qa_type in PATTERNS:
        found = list(_spans(PATTERNS[qa_type], text))
    spans = [s.rstrip(" ,;:") for _, s in sorted(found) if 0 < len(s.split()) <= MAX_WORDS]
    return list(dict.fromkeys(s for s in spans if s))


def pick(spans: list[str], seed: str, k: int) -> Optional[str]:
    """The `k`-th span (0-based) in the order of sha256(seed, span); None when there are not k + 1."""
    ranked = sorted(spans, key=lambda s: hashlib.sha256(f"{seed}\u0000{s}".encode("utf-8")).hexdigest())
    return ranked[k] if k < len(ranked) else None


def answer_span_udf():
    """`pandas_udf(paragraph, qa_type, topics, seed, k) -> string`: `pick(candidates(...), seed, k)`."""
    @F.pandas_udf("string")
    def span(paragraph: pd.Series, qa_type: pd.Series, topics: pd.Series, seed: pd.Series, k: pd.Series) -> pd.Series:
        return pd.Series([
            pick(candidates(p, t, list(tp) if tp is not None else None), s, int(i))
            for p, t, tp, s, i in zip(paragraph, qa_type, topics, seed, k)
        ])

    return span
