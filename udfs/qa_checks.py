"""Automatic evaluations of a question-answer pair generated from a paragraph.

Pure scorers first (`str -> value`, testable without Spark and used as they
are by the SQuAD calibration in `benchmarks/qa_calibration.py`), then the
decision (`check_results`, `drop_reason`: thresholds from `QaChecks`), then
the Spark wrapper (`with_qa_checks`).

The evaluations, in the order a drop reason is chosen:

| check | score | drop reasons |
|---|---|---|
| `question_length` | `question_chars` | `question_too_short`, `question_too_long` |
| `question_form` | `question_type_found`, `question_lead`, `question_mark` | `question_wrong_type`, `question_no_question_mark` |
| `question_grounded` | `question_grounding` | `question_not_grounded` |
| `answer_not_na` | `answer_is_na` | `answer_na` |
| `answer_not_copy` | `copy_overlap` | `answer_copies_question` |
| `answer_length` | `answer_chars` | `answer_too_short`, `answer_too_long` |
| `answer_kind` | `answer_kind_ok` | `answer_wrong_kind` |
| `grounding` | `grounding` | `answer_not_grounded` |
| `answer_location` | `answer_location` | `answer_off_target` |

The question form. Human questions do not all start with their question
word: SQuAD has "In what year ...", "On which day ...", "The Normans were
from which country?" (18% of its dev-set questions do not start with it). A
question passes when its first interrogative word belongs to its type (and,
when `max_lead_words` is set, at most that many words come before it), and it
ends with `?` (when required). The types' words: who (who, whom, whose),
what (what, which), where, when, why, how. A human question's type is that
of its first interrogative word (`question_type`).

Grounding. Text is normalized as SQuAD's own evaluation does (lower case, no
punctuation, no articles, single spaces). An answer whose normalized text is
a run of whole words of the normalized paragraph scores 1.0; otherwise the
share of its content words (not stop words; all its words when it has no
other) found among the paragraph's words.

Copy. The share of the answer's content words (crudely stemmed) that the
question already contains (1.0 when both normalize to the same text): "How
did the division move to the fronts?" answered "they moved to the fronts"
copies the question.

Kind. Obviously wrong answers for the questions whose answers have a known
shape (`asked_kind`): a time (`when`; "what year", "which century", ...) must
hold a digit or a time word (a month, "century", "during", ...), a quantity
("how many", "how much", "how old", "what percentage", ...) a digit or a
number word, and a `who` or `where` answer must not be only a date or a number.
"When did William die?" answered "Robert of Ghent" fails, and so does "Where
did it originate?" answered "in the early 20th century"; other questions are
not judged (`answer_kind_ok` null).

Question grounding. The share of the question's content words (stemmed, cut
to five letters, without stop words, interrogatives and light words such as
"take place") that the paragraph has: "When did the coronation take place?"
asked of a paragraph without a coronation scores 0.

Location. A wrong answer made of the paragraph's own words usually sits in
another sentence than the one the question is about. Each sentence scores the
question's content words it holds, weighted by their rarity among the
sentences; `answer_location` is the score of the sentence holding the answer
over the best sentence's (1.0: the answer is where the question points).

Calibration (`benchmarks/qa_calibration.py`, SQuAD v1.1 dev with planted
wrong answers): with the default thresholds all checks together accept 82%
of the human answers and 20% of the answers of another question on the same
paragraph (before the question grounding and location checks: 96% and 82%).
"""
from __future__ import annotations

import json
import math
import re
import string
from typing import Iterable, Iterator, Optional

import pandas as pd
from pyspark.sql import functions as F

TYPE_WORDS = {
    "who": ("who", "whom", "whose"),
    "what": ("what", "which"),
    "where": ("where",),
    "when": ("when",),
    "why": ("why",),
    "how": ("how",),
}
WORD_TYPE = {w: t for t, words in TYPE_WORDS.items() for w in words}

NA_ANSWERS = {
    "na", "n a", "none", "unknown", "no answer", "not mentioned", "not stated", "not given",
    "not specified", "not available", "i dont know", "i do not know", "cannot be determined",
    "the text does not say", "text does not say", "it does not say",
}

# Function words that say nothing about grounding (a short closed list; content words are the rest).
STOP_WORDS = frozenset(
    """a an the and or but if of at by for with about against between into through during before after
    above below to from up down in out on off over under again further then once here there all any both
    each few more most other some such no nor not only own same so than too very s t can will just don
    should now i me my we our you your he him his she her it its they them their what which who whom whose
    this that these those am is are was were be been being have has had having do does did doing would
    could shall may might must also as""".split()
)

TIME_WORDS = frozenset(
    """january february march april may june july august september october november december jan feb mar apr
    jun jul aug sep sept oct nov dec monday tuesday wednesday thursday friday saturday sunday century centuries
    year years decade decades season seasons spring summer autumn fall winter morning afternoon evening night
    nights midnight noon day days week weeks month months hour hours minute minutes second seconds ago during
    before after since until today yesterday tomorrow era age ages period dynasty reign war wars bc bce ad ce
    early late mid later earlier first last once never always now then when while time times modern ancient
    medieval millennium millennia weekend holiday christmas easter""".split()
)
NUMBER_WORDS = frozenset(
    """one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen
    eighteen nineteen twenty thirty forty fifty sixty seventy eighty ninety hundred hundreds thousand thousands
    million millions billion billions trillion dozen dozens half quarter several many few all none zero single
    double twice once majority most percent""".split()
)

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans({c: " " for c in string.punctuation + "\u2018\u2019\u201c\u201d\u2013\u2014"})
_WORD = re.compile(r"[\w']+")


def normalize(text: Optional[str]) -> str:
    """SQuAD's answer normalization: lower case, punctuation and articles removed, single spaces."""
    if not text:
        return ""
    text = text.lower().replace("'", "").translate(_PUNCT)
    return " ".join(_ARTICLES.sub(" ", text).split())


def tokens(text: Optional[str]) -> list[str]:
    return normalize(text).split()


def content_tokens(text: Optional[str]) -> list[str]:
    """The normalized words that are not stop words; all normalized words when none is."""
    words = tokens(text)
    content = [w for w in words if w not in STOP_WORDS]
    return content or words


# --- scorers ------------------------------------------------------------------

def question_type(question: Optional[str]) -> tuple[Optional[str], Optional[int]]:
    """(type, position) of the question's first interrogative word (position = words before it),
    or (None, None) when it has none."""
    if not question:
        return None, None
    for i, word in enumerate(_WORD.findall(question.lower())):
        if word in WORD_TYPE:
            return WORD_TYPE[word], i
    return None, None


def ends_with_question_mark(question: Optional[str]) -> bool:
    return bool(question) and question.rstrip().rstrip("\"'\u201d)").endswith("?")


_SAYS_NA = re.compile(r"^(?:answer is|answer|it is|this is)\s+(.*)$")


def is_na(answer: Optional[str]) -> bool:
    """True for an empty answer or one that says the text has no answer (NA, unknown, "The answer is NA", ...)."""
    norm = normalize(answer)
    said = _SAYS_NA.match(norm)
    return not norm or norm in NA_ANSWERS or bool(said and said.group(1) in NA_ANSWERS)


def stem(word: str) -> str:
    """A crude stem: "moved" and "move", "fronts" and "front" compare equal."""
    for suffix in ("ing", "ed", "es", "s"):
        if len(word) > len(suffix) + 2 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


def copy_overlap(question: Optional[str], answer: Optional[str]) -> float:
    """Share of the answer's content words (stemmed) already in the question (1.0 for the same normalized text)."""
    a = [stem(w) for w in content_tokens(answer)]
    if not a:
        return 0.0
    if normalize(answer) == normalize(question):
        return 1.0
    q = {stem(w) for w in tokens(question)}
    return sum(1 for w in a if w in q) / len(a)


def grounding(answer: Optional[str], paragraph: Optional[str]) -> float:
    """1.0 when the normalized answer is a run of whole words of the normalized paragraph, else the
    share of its content words found among the paragraph's words; 0.0 for an empty answer."""
    a = normalize(answer)
    if not a:
        return 0.0
    p = normalize(paragraph)
    if f" {a} " in f" {p} ":
        return 1.0
    words = content_tokens(answer)
    para = set(p.split())
    return sum(1 for w in words if w in para) / len(words)


# Sentence ends: ., ! or ? (and closing quotes or brackets), space, then what starts a sentence.
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"'\u201d)\]]*\s+(?=[\"'\u201c(\[]?[A-Z0-9])")
# Words that ask rather than say: a question's interrogatives and its auxiliaries.
QUESTION_WORDS = frozenset(WORD_TYPE) | {"many", "much", "did", "does", "do"}


def sentences(paragraph: Optional[str]) -> list[str]:
    """The paragraph's sentences (a light splitter: an end mark, space, then a capital or a digit)."""
    return [s for s in _SENTENCE_END.split(paragraph or "") if s.strip()]


# Verbs and nouns that carry a question's form rather than its subject ("When did the coronation
# take place?" is about a coronation): left out of the words a question must share with its paragraph.
LIGHT_WORDS = frozenset(
    """take took taken place happen happened occur occurred become became make made get got use used call called
    name named known know mean meant kind type part way thing things give given gave go went come came say said""".split()
)
# Words compare by their first letters (after the crude stem): "coronation" and "coronations",
# "elected" and "election" meet; five letters keep "state" and "statue" apart.
MATCH_PREFIX = 5


def stems(text: Optional[str]) -> list[str]:
    """The normalized words, crudely stemmed, cut to `MATCH_PREFIX` letters: the form words compare in."""
    return [stem(w)[:MATCH_PREFIX] for w in tokens(text)]


_SKIPPED = frozenset(w[:MATCH_PREFIX] for w in (*(stem(x) for x in STOP_WORDS | LIGHT_WORDS), *QUESTION_WORDS))


def question_terms(question: Optional[str], answer: Optional[str] = None) -> list[str]:
    """The question's content words (`stems`), once each, in order: no stop words, light words or
    interrogatives, none of the answer's words."""
    skip = _SKIPPED | set(stems(answer))
    return list(dict.fromkeys(w for w in stems(question) if w not in skip))


def question_grounding(question: Optional[str], paragraph: Optional[str]) -> float:
    """Share of the question's content words (`question_terms`) found among the paragraph's words;
    1.0 for a question with none. "When did the coronation take place?" asked of a paragraph that
    never names a coronation scores 0."""
    terms = question_terms(question)
    if not terms:
        return 1.0
    para = set(stems(paragraph))
    return sum(1 for w in terms if w in para) / len(terms)


def answer_location(question: Optional[str], answer: Optional[str], paragraph: Optional[str]) -> float:
    """How well the sentence holding the answer matches the question, against the best-matching sentence.

    Each sentence scores the question's content words it contains (the answer's own words left
    out), each weighted by its rarity among the paragraph's sentences (log(1 + (n + 1) / (df + 0.5))).
    The answer's sentences are those with the most of its words (the one holding the whole
    answer as a run of words where there is one). The score is the best answer sentence's over
    the best sentence's: 1.0 when the answer sits in the sentence the question points to, less
    the further it is; 1.0 when the question has no content word left or matches no sentence;
    0.0 for an empty answer.
    """
    answer_stems = stems(answer)
    if not answer_stems:
        return 0.0
    terms = question_terms(question, answer)
    sents = [stems(s) for s in sentences(paragraph)]
    if not terms or not sents:
        return 1.0
    sets = [set(s) for s in sents]
    n = len(sents)
    weight = {w: math.log(1 + (n + 1) / (sum(1 for s in sets if w in s) + 0.5)) for w in terms}
    scores = [sum(weight[w] for w in terms if w in s) for s in sets]
    best = max(scores)
    if best == 0:
        return 1.0
    span = len(answer_stems)
    holds = [any(s[i : i + span] == answer_stems for i in range(len(s) - span + 1)) for s in sents]
    if not any(holds):
        wanted = set(answer_stems)
        cover = [len(wanted & s) for s in sets]
        holds = [c == max(cover) and c > 0 for c in cover]
    return max((sc for sc, h in zip(scores, holds) if h), default=0.0) / best


# Words after "what"/"which" (or "how") that ask for a time or a quantity: "In what year ...",
# "What percentage ...", "How old ...".
TIME_NOUNS = frozenset("year years century centuries decade decades date dates month months day days era period season".split())
QUANTITY_NOUNS = frozenset("percentage percent number numbers amount proportion fraction share population size".split())
QUANTITY_HOW = frozenset("many much old long far large big tall high deep wide heavy fast".split())


def asked_kind(qa_type: Optional[str], question: Optional[str]) -> Optional[str]:
    """The kind of answer a question asks for: `time` (when; what/which year, century, date, ...),
    `quantity` (how many, much, old, long, ...; what percentage, number, amount, ...), `who`,
    `where`, or None. `qa_type` None means the question's own type."""
    found, lead = question_type(question)
    kind = qa_type or found
    if kind in ("when", "who", "where"):
        return "time" if kind == "when" else kind
    words = _WORD.findall((question or "").lower())
    following = words[lead + 1] if found == kind and lead is not None and lead + 1 < len(words) else None
    if kind == "how" and following in QUANTITY_HOW:
        return "quantity"
    if kind == "what" and following in TIME_NOUNS:
        return "time"
    if kind == "what" and following in QUANTITY_NOUNS:
        return "quantity"
    return None


def answer_kind_ok(qa_type: Optional[str], question: Optional[str], answer: Optional[str]) -> Optional[bool]:
    """Whether the answer has the shape its question asks for (`asked_kind`): a time holds a digit or
    a time word, a quantity a digit or a number word (or, for "how long", a time word), and a
    person or a place is not only a date or a number; None where nothing is judged."""
    kind = asked_kind(qa_type, question)
    if not answer or kind is None:
        return None
    words = set(tokens(answer))
    has_digit = any(ch.isdigit() for ch in answer)
    if kind in ("who", "where"):  # a person or a place is not only a date or a number
        content = content_tokens(answer)
        numeric = [any(ch.isdigit() for ch in w) or w in TIME_WORDS for w in content]  # "1969", "20th", "century"
        return False if content and all(numeric) else None
    if kind == "time":
        return has_digit or bool(words & TIME_WORDS)
    return has_digit or bool(words & NUMBER_WORDS) or ("long" in _WORD.findall(question.lower()) and bool(words & TIME_WORDS))


def score_qa(qa_type: Optional[str], question: Optional[str], answer: Optional[str], paragraph: Optional[str]) -> dict:
    """Every score column of one question-answer pair."""
    found, lead = question_type(question)
    return {
        "question_chars": len(question) if question is not None else None,
        "answer_chars": len(answer) if answer is not None else None,
        "question_type_found": found,
        "question_lead": lead,
        "question_mark": ends_with_question_mark(question),
        "answer_is_na": is_na(answer),
        "copy_overlap": copy_overlap(question, answer),
        "answer_kind_ok": answer_kind_ok(qa_type, question, answer),
        "grounding": grounding(answer, paragraph),
        "question_grounding": question_grounding(question, paragraph),
        "answer_location": answer_location(question, answer, paragraph),
    }


SCORE_SCHEMA = (
    "question_chars int, answer_chars int, question_type_found string, question_lead int, question_mark boolean, "
    "answer_is_na boolean, copy_overlap double, answer_kind_ok boolean, grounding double, question_grounding double, answer_location double, "
    "qa_drop_reason string"
)
SCORE_COLUMNS = [c.split()[0] for c in SCORE_SCHEMA.split(", ")]

# --- decisions ----------------------------------------------------------------

CHECKS = (
    "question_length", "question_form", "question_grounded", "answer_not_na", "answer_not_copy", "answer_length",
    "answer_kind", "grounding", "answer_location",
)
REASONS = {
    "question_length": ("question_too_short", "question_too_long"),
    "question_form": ("question_wrong_type", "question_no_question_mark"),
    "question_grounded": ("question_not_grounded",),
    "answer_not_na": ("answer_na",),
    "answer_not_copy": ("answer_copies_question",),
    "answer_length": ("answer_too_short", "answer_too_long"),
    "answer_kind": ("answer_wrong_kind",),
    "grounding": ("answer_not_grounded",),
    "answer_location": ("answer_off_target",),
}


def check_results(scores: dict, qa_type: Optional[str], checks) -> dict[str, Optional[str]]:
    """{check: None when it passes, else its drop reason} for the thresholds in `checks` (a QaChecks).

    `qa_type` is the type asked for; None means the question's own (a human question).
    """
    out: dict[str, Optional[str]] = {}
    qc = scores["question_chars"] or 0
    out["question_length"] = (
        "question_too_short" if qc < checks.question_min_chars else "question_too_long" if qc > checks.question_max_chars else None
    )
    found, lead = scores["question_type_found"], scores["question_lead"]
    wanted = qa_type or found
    too_late = checks.max_lead_words is not None and lead is not None and lead > checks.max_lead_words
    if found is None or found != wanted or too_late:
        out["question_form"] = "question_wrong_type"
    elif checks.require_question_mark and not scores["question_mark"]:
        out["question_form"] = "question_no_question_mark"
    else:
        out["question_form"] = None
    out["question_grounded"] = (
        "question_not_grounded" if scores["question_grounding"] < checks.min_question_grounding else None
    )
    out["answer_not_na"] = "answer_na" if scores["answer_is_na"] else None
    out["answer_not_copy"] = "answer_copies_question" if scores["copy_overlap"] > checks.max_copy_overlap else None
    ac = scores["answer_chars"] or 0
    out["answer_length"] = (
        "answer_too_short" if ac < checks.answer_min_chars else "answer_too_long" if ac > checks.answer_max_chars else None
    )
    out["answer_kind"] = "answer_wrong_kind" if scores["answer_kind_ok"] is False else None
    out["grounding"] = "answer_not_grounded" if scores["grounding"] < checks.min_grounding else None
    out["answer_location"] = "answer_off_target" if scores["answer_location"] < checks.min_answer_location else None
    return out


def failed_checks(scores: dict, qa_type: Optional[str], checks) -> list[str]:
    """The checks (in `CHECKS` order) that a scored pair fails."""
    results = check_results(scores, qa_type, checks)
    return [c for c in CHECKS if results[c] is not None]


def acceptance(failed: Iterable[list[str]]) -> dict[str, float]:
    """{check: share of the pairs it accepts, "all checks": share that fail none} from each pair's
    `failed_checks`; {} for no pair."""
    rows = list(failed)
    if not rows:
        return {}
    out = {c: sum(c not in f for f in rows) / len(rows) for c in CHECKS}
    out["all checks"] = sum(not f for f in rows) / len(rows)
    return out


def drop_reason(scores: dict, qa_type: Optional[str], checks) -> Optional[str]:
    """The first failing check's reason (in `CHECKS` order), or None when the pair passes them all."""
    results = check_results(scores, qa_type, checks)
    return next((results[c] for c in CHECKS if results[c] is not None), None)


def score_and_decide(qa_type, question, answer, paragraph, checks) -> dict:
    scores = score_qa(qa_type, question, answer, paragraph)
    return {**scores, "qa_drop_reason": drop_reason(scores, qa_type, checks)}


# --- Spark --------------------------------------------------------------------

def qa_checks_udf(checks):
    """A `pandas_udf(qa_type, question, answer, paragraph) -> struct<scores..., qa_drop_reason>`.

    Rows without a question or an answer (a failed generation) get null scores and no reason:
    the caller gives them theirs. Python runs here rather than built-in expressions
    because the rows are few (bounded by the model calls) and the SQuAD calibration must
    measure exactly these functions.
    """
    @F.pandas_udf(SCORE_SCHEMA)
    def score(batches: Iterator[tuple[pd.Series, pd.Series, pd.Series, pd.Series]]) -> Iterator[pd.DataFrame]:
        for qa_type, question, answer, paragraph in batches:
            rows = [
                score_and_decide(t, q, a, p, checks) if q is not None and a is not None else dict.fromkeys(SCORE_COLUMNS)
                for t, q, a, p in zip(qa_type, question, answer, paragraph)
            ]
            yield pd.DataFrame(rows, columns=SCORE_COLUMNS).astype(
                {"question_chars": "Int32", "answer_chars": "Int32", "question_lead": "Int32"}
            )

    return score


def _python(value):
    """A pandas cell as plain Python: None for null and NaN, Python numbers and booleans."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    return value.item() if hasattr(value, "item") else value


def check_acceptance(df, checks, qa_type: str = "qa_type") -> dict[str, float]:
    """`acceptance` over the scored rows of `df` (those with `question_chars`), as one Spark
    aggregation: only the counts reach the driver."""
    columns = SCORE_COLUMNS[:-1]

    @F.pandas_udf("array<string>")
    def failed(scores: pd.DataFrame, types: pd.Series) -> pd.Series:
        return pd.Series([
            failed_checks({k: _python(v) for k, v in row.items()}, t, checks)
            for row, t in zip(scores.to_dict("records"), types)
        ])

    scored = df.where(F.col("question_chars").isNotNull()).select(failed(F.struct(*columns), F.col(qa_type)).alias("_f"))
    counts = scored.agg(
        F.count(F.lit(1)).alias("n"), F.sum((F.size("_f") == 0).cast("int")).alias("all checks"),
        *[F.sum((~F.array_contains("_f", c)).cast("int")).alias(c) for c in CHECKS],
    ).first()
    n = counts["n"]
    return {c: counts[c] / n for c in (*CHECKS, "all checks")} if n else {}


def with_qa_checks(df, checks, qa_type="qa_type", question="question", answer="answer", paragraph="text"):
    """Adds every score column of `SCORE_SCHEMA` (and `qa_drop_reason`) to a DataFrame of generated pairs."""
    scored = qa_checks_udf(checks)(F.col(qa_type), F.col(question), F.col(answer), F.col(paragraph))
    return df.withColumn("_qa", scored).select("*", *[F.col(f"_qa.{c}").alias(c) for c in SCORE_COLUMNS]).drop("_qa")


# --- a QA data set of one's own (`instructlake qa-check`) ------------------------

PARAGRAPH_FIELDS = ("context", "paragraph")
RECORD_SCHEMA = "context string, question string, answer string, qa_type string, input_reason string"
RECORD_COLUMNS = [c.split()[0] for c in RECORD_SCHEMA.split(", ")]


def parse_record(line: Optional[str]) -> dict:
    """The fields of one JSON line `{context|paragraph, question, answer[, type]}`, or its `input_reason`:
    `not_json`, `not_an_object`, `missing_field:<name>` (`context` for a missing paragraph),
    `not_text:<name>` (a field that is not a string). A SQuAD-style `answers` list gives its first
    answer (its `text` when it is an object); `type` (or `qa_type`) names the question's type,
    else its first interrogative word does."""
    out = dict.fromkeys(RECORD_COLUMNS)
    try:
        record = json.loads(line or "")
    except ValueError:
        return {**out, "input_reason": "not_json"}
    if not isinstance(record, dict):
        return {**out, "input_reason": "not_an_object"}
    answer = record.get("answer")
    if answer is None and isinstance(record.get("answers"), list) and record["answers"]:
        answer = record["answers"][0]
        answer = answer.get("text") if isinstance(answer, dict) else answer
    values = {
        "context": next((record[f] for f in PARAGRAPH_FIELDS if record.get(f) is not None), None),
        "question": record.get("question"),
        "answer": answer,
    }
    for name, value in values.items():
        if value is None:
            return {**out, "input_reason": f"missing_field:{name}"}
        if not isinstance(value, str):
            return {**out, "input_reason": f"not_text:{name}"}
    qa_type = record.get("type", record.get("qa_type"))
    qa_type = qa_type.lower() if isinstance(qa_type, str) and qa_type.lower() in TYPE_WORDS else None
    return {**out, **values, "qa_type": qa_type}


def verdict_line(line: Optional[str], verdict: dict) -> str:
    """One output line: the input object's own fields, then `verdict`'s (which win a clash); for a
    line that is not a JSON object, `{"input": <the line>}` then `verdict`."""
    try:
        record = json.loads(line or "")
    except ValueError:
        record = None
    base = record if isinstance(record, dict) else {"input": line}
    return json.dumps({**base, **verdict}, ensure_ascii=False)


def parse_records_udf():
    """`pandas_udf(line) -> struct<RECORD_SCHEMA>` of `parse_record`."""
    @F.pandas_udf(RECORD_SCHEMA)
    def parse(lines: pd.Series) -> pd.DataFrame:
        return pd.DataFrame([parse_record(x) for x in lines], columns=RECORD_COLUMNS)

    return parse


def verdict_lines_udf():
    """`pandas_udf(line, verdict JSON) -> string` of `verdict_line` (the verdict as Spark's `to_json`
    of the verdict's columns writes it, nulls kept)."""
    @F.pandas_udf("string")
    def lines(line: pd.Series, verdict: pd.Series) -> pd.Series:
        return pd.Series([verdict_line(raw, json.loads(v)) for raw, v in zip(line, verdict)])

    return lines
