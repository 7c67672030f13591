"""Web text into paragraphs: pure parsers per file format, then Spark topics per paragraph.

The parsers take one file's text and yield `(row_index, raw, error)`: `raw` is
a paragraph record as a JSON object text (`doc_id`, `title`, `section`,
`paragraph_index`, `line`, `text`, `text_format`) when `error` is None, and the
offending input (a line, the start of the file) when it is not. `row_index`
counts the records of the file from 0, paragraphs and bad records alike, so
every input unit of a file has exactly one row.

Formats (`text_format`, chosen by `file_format(name)` from the file name):

- `wikitext`: WikiText raw files (`*.raw`). An article starts at a ` = Title = `
  line, a section at ` = = Heading = = ` (deeper levels add `=`); every other
  non-blank line is one paragraph. WikiText is tokenized (`@-@`, `@,@`, `@.@`,
  spaces before punctuation and inside quotes and brackets):
  `detokenize_wikitext` undoes it.
- `jsonl`: JSON lines with a `text` field (C4, OpenWebText; `*.jsonl`,
  `*.jsonl.gz`); one document a line, its paragraphs separated by blank lines
  (or by line breaks when the text has no blank line). `id` or `url` names
  the document when present, `title` titles it.
- `squad`: SQuAD v1.1 JSON (`*.json`): each `data[].paragraphs[].context` is a
  paragraph of the article `data[].title`.
- `plain`: any other file is plain text, paragraphs separated by blank lines
  (the lines of one paragraph are joined with a space); the file is the document.

`with_topics` computes TF-IDF keyphrases per paragraph with built-in DataFrame
operations (no Python per row): the topics the question prompts are about.
"""
from __future__ import annotations

import json
import re
from typing import Iterator, Optional

from pyspark.ml.feature import StopWordsRemover
from pyspark.sql import Window
from pyspark.sql import functions as F

from instructlake.udfs.records import RAW_PREVIEW_CHARS

FORMATS = ("wikitext", "jsonl", "squad", "plain")

Record = tuple[int, str, Optional[str]]


def file_format(name: str) -> str:
    """The text format of a file, from its name (a path or URI)."""
    base = name.rsplit("/", 1)[-1].lower()
    if base.endswith(".gz"):
        base = base[:-3]
    if base.endswith(".raw") or base.endswith(".tokens"):
        return "wikitext"
    if base.endswith(".jsonl") or base.endswith(".ndjson"):
        return "jsonl"
    if base.endswith(".json"):
        return "squad"
    return "plain"


def _base_name(name: str) -> str:
    return name.rstrip("/").rsplit("/", 1)[-1]


def _record(doc_id: str, title: Optional[str], section: Optional[str], index: int, line: Optional[int], text: str, fmt: str) -> str:
    return json.dumps(
        {"doc_id": doc_id, "title": title, "section": section, "paragraph_index": index, "line": line, "text": text, "text_format": fmt},
        ensure_ascii=False,
    )


# --- WikiText ---------------------------------------------------------------

_AT_SPLIT = re.compile(r" @([-,.])@ ")
_SPACE_BEFORE = re.compile(r" ([.,;:!?%)\]}])")
_SPACE_AFTER = re.compile(r"([(\[{]) ")
_CLITIC = re.compile(r"(?<=\w) (n't|'(?=[a-z]))")
_SINGLE_QUOTED = re.compile(r"(?<!\S)' ((?:[^\s'\"]+ ){0,3}[^\s'\"]+) '(?=[\s.,;:!?)\]]|$)")
_PLURAL_POSSESSIVE = re.compile(r"(?<=s) '(?= )")
_CURRENCY = re.compile(r"([$£€]) (?=\d)")
_SPACES = re.compile(r"\s+")


def detokenize_wikitext(text: Optional[str]) -> Optional[str]:
    """WikiText's tokenized text as ordinary text.

    `1 @,@ 000` -> `1,000`, `guest @-@ starring` -> `guest-starring`,
    `2 @.@ 5` -> `2.5`; no space before `. , ; : ! ? % ) ] }` nor after
    `( [ {`; `Teddy 's` -> `Teddy's`, `do n't` -> `don't`, `Chang 'an` -> `Chang'an`;
    `' perfect '` -> `'perfect'` (one to four words in single quotes), then
    `players ' union` -> `players' union`; `$ 5` -> `$5`; the text between a
    pair of double quotes loses its inner spaces (`" In Safe Hands "` ->
    `"In Safe Hands"`). Single quotes stay ambiguous: a plural possessive
    followed by a quoted phrase can come out wrong.
    """
    if text is None:
        return None
    s = _SPACES.sub(" ", text).strip()
    s = _AT_SPLIT.sub(r"\1", s)
    s = s.replace("@-@", "-").replace("@,@", ",").replace("@.@", ".")
    s = _SPACE_BEFORE.sub(r"\1", s)
    s = _SPACE_AFTER.sub(r"\1", s)
    s = _CLITIC.sub(r"\1", s)
    s = _SINGLE_QUOTED.sub(r"'\1'", s)
    s = _PLURAL_POSSESSIVE.sub("'", s)
    s = _CURRENCY.sub(r"\1", s)
    parts = s.split('"')
    if len(parts) % 2 == 1:  # an even number of quotes: pair them up
        parts = [p.strip() if i % 2 else p for i, p in enumerate(parts)]
        s = '"'.join(parts)
    return s


_HEADING = re.compile(r"^((?:= )+)(.*?)((?: =)+)$")


def wikitext_heading(line: str) -> Optional[tuple[int, str]]:
    """(level, text) of a WikiText title (level 1) or section heading (level 2+) line, else None."""
    m = _HEADING.match(line.strip())
    if not m:
        return None
    level = m.group(1).count("=")
    if level != m.group(3).count("=") or not m.group(2).strip(" ="):
        return None
    return level, m.group(2).strip()


def parse_wikitext(text: str, name: str = "") -> Iterator[Record]:
    """Paragraph records of a WikiText raw file (see module doc)."""
    base = _base_name(name)
    doc, title, sections, index, row = -1, None, [], 0, 0
    for line_no, line in enumerate(text.splitlines()):
        if not line.strip():
            continue
        heading = wikitext_heading(line)
        if heading is not None:
            level, words = heading
            words = detokenize_wikitext(words)
            if level == 1:
                doc, title, sections, index = doc + 1, words, [], 0
            else:
                sections = sections[: level - 2] + [words]
            continue
        if doc < 0:  # text before the first title: a document of its own, untitled
            doc = 0
        paragraph = detokenize_wikitext(line)
        yield row, _record(f"{base}:{doc}", title, " / ".join(sections) or None, index, line_no, paragraph, "wikitext"), None
        index += 1
        row += 1


# --- plain text and JSON lines ----------------------------------------------

_BLANK_LINE = re.compile(r"\n[ \t\r\f\v]*\n")


def split_paragraphs(text: Optional[str]) -> list[str]:
    """Paragraphs of a text: blocks separated by blank lines, or its lines when it has no blank line.
    Whitespace inside a paragraph (line breaks included) collapses to one space."""
    if not text:
        return []
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    blocks = _BLANK_LINE.split(text) if _BLANK_LINE.search(text) else text.split("\n")
    return [p for p in (_SPACES.sub(" ", b).strip() for b in blocks) if p]


def parse_plain(text: str, name: str = "") -> Iterator[Record]:
    """Paragraph records of a plain text file: the file is the document, paragraphs split by blank lines."""
    base = _base_name(name)
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    row, block, first = 0, [], 0
    for line_no, line in enumerate([*lines, ""]):
        if line.strip():
            if not block:
                first = line_no
            block.append(line)
        elif block:
            paragraph = _SPACES.sub(" ", " ".join(block)).strip()
            yield row, _record(base, None, None, row, first, paragraph, "plain"), None
            row, block = row + 1, []


def parse_jsonl(text: str, name: str = "") -> Iterator[Record]:
    """Paragraph records of a JSON-lines file whose objects have a `text` string.

    A line that is blank, not JSON, not an object, or without a string `text`
    is one error record (`blank_line`, `malformed_json`, `not_a_json_object`,
    `missing_field:text`, `wrong_type:text`); a document whose text has no
    paragraph is one `empty_text` record.
    """
    base = _base_name(name)
    row = 0
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    for line_no, line in enumerate(lines):
        line = line.rstrip("\r")
        error = None
        if not line.strip():
            error = "blank_line"
        else:
            try:
                obj = json.loads(line)
            except ValueError:
                obj, error = None, "malformed_json"
            except RecursionError:
                obj, error = None, "too_deeply_nested"
            if error is None and not isinstance(obj, dict):
                error = "not_a_json_object"
            elif error is None and "text" not in obj:
                error = "missing_field:text"
            elif error is None and not isinstance(obj["text"], str):
                error = "wrong_type:text"
        if error is not None:
            yield row, line[:RAW_PREVIEW_CHARS], error
            row += 1
            continue
        paragraphs = split_paragraphs(obj["text"])
        if not paragraphs:
            yield row, line[:RAW_PREVIEW_CHARS], "empty_text"
            row += 1
            continue
        doc_id = next((str(obj[k]) for k in ("id", "url") if isinstance(obj.get(k), (str, int))), f"{base}:{line_no}")
        title = obj.get("title") if isinstance(obj.get("title"), str) else None
        for i, p in enumerate(paragraphs):
            yield row, _record(doc_id, title, None, i, line_no, p, "jsonl"), None
            row += 1


# --- SQuAD ------------------------------------------------------------------

def parse_squad(text: str, name: str = "") -> Iterator[Record]:
    """Paragraph records of a SQuAD v1.1 file: every `context`, titled by its article.

    The whole file is one error record when it is not JSON (`malformed_json`)
    or has no `data` list (`not_squad_json`); a paragraph without a string
    `context` is one `missing_field:context` record.
    """
    base = _base_name(name)
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as e:
        yield 0, text[:RAW_PREVIEW_CHARS], "too_deeply_nested" if isinstance(e, RecursionError) else "malformed_json"
        return
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        yield 0, text[:RAW_PREVIEW_CHARS], "not_squad_json"
        return
    row = 0
    for a, article in enumerate(data["data"]):
        paragraphs = article.get("paragraphs") if isinstance(article, dict) else None
        if not isinstance(paragraphs, list):
            yield row, json.dumps(article, ensure_ascii=False)[:RAW_PREVIEW_CHARS], "missing_field:paragraphs"
            row += 1
            continue
        title = article.get("title")
        title = title.replace("_", " ") if isinstance(title, str) else None
        for p, para in enumerate(paragraphs):
            context = para.get("context") if isinstance(para, dict) else None
            if not isinstance(context, str) or not context.strip():
                yield row, json.dumps(para, ensure_ascii=False)[:RAW_PREVIEW_CHARS], "missing_field:context"
            else:
                yield row, _record(f"{base}:{a}", title, None, p, None, _SPACES.sub(" ", context).strip(), "squad"), None
            row += 1


def squad_qas(text: str) -> Iterator[dict]:
    """The human question-answer pairs of a SQuAD v1.1 file: {title, context, id, question, answers}."""
    for article in json.loads(text)["data"]:
        for para in article["paragraphs"]:
            for qa in para["qas"]:
                yield {
                    "title": article["title"].replace("_", " "),
                    "context": para["context"],
                    "id": qa["id"],
                    "question": qa["question"],
                    "answers": [a["text"] for a in qa["answers"]],
                }


PARSERS = {"wikitext": parse_wikitext, "jsonl": parse_jsonl, "squad": parse_squad, "plain": parse_plain}


def paragraph_records(text: Optional[str], name: str) -> Iterator[Record]:
    """The records of one file, by the format its name says (see `file_format`)."""
    if text is None or not text.strip():
        yield 0, "", "empty_file"
        return
    text = text.lstrip("\ufeff")
    yield from PARSERS[file_format(name)](text, name)


# --- topics (Spark) ---------------------------------------------------------

def with_topics(df, key: list[str], top_k: int = 5, min_term_chars: int = 3, bigrams: bool = True,
                max_doc_share: float = 0.5, text: str = "text", out: str = "topics"):
    """Adds `topics`: the paragraph's `top_k` keyphrases by TF-IDF over all rows of `df`.

    Terms are lower-cased words of at least `min_term_chars` letters or digits
    that are not English stop words (Spark ML's list) nor numbers, and, with
    `bigrams`, pairs of such words next to each other in the text. A term's
    weight in a paragraph is its count there times `ln((N + 1) / (df + 1)) + 1`
    (N paragraphs, df of them holding the term); terms in more than
    `max_doc_share` of the paragraphs (when there are at least 20) are too
    common to be a topic. Ties go to the shorter, then alphabetically first
    term. Built-in expressions only; `key` columns identify a row.
    """
    stop = StopWordsRemover.loadDefaultStopWords("english")
    words = F.filter(F.split(F.lower(F.col(text)), r"[^\p{L}\p{N}]+"), lambda w: w != "")

    def content(w):
        return (F.length(w) >= min_term_chars) & ~w.isin(stop) & ~w.rlike(r"^\p{N}+$")

    terms = F.filter(F.col("_w"), content)
    if bigrams:
        pairs = F.transform(
            F.sequence(F.lit(1), F.greatest(F.size("_w") - 1, F.lit(1))),
            lambda i: F.when(
                (F.size("_w") > 1) & content(F.element_at("_w", i)) & content(F.element_at("_w", i + 1)),
                F.concat_ws(" ", F.element_at("_w", i), F.element_at("_w", i + 1)),
            ),
        )
        terms = F.concat(terms, F.filter(pairs, lambda t: t.isNotNull()))
    exploded = df.select(*key, words.alias("_w")).select(*key, F.explode(terms).alias("term"))
    tf = exploded.groupBy(*key, "term").agg(F.count(F.lit(1)).alias("tf"))
    n = df.agg(F.count(F.lit(1)).alias("n"))
    dfreq = tf.groupBy("term").agg(F.count(F.lit(1)).alias("df")).crossJoin(F.broadcast(n))
    dfreq = dfreq.where((F.col("n") < 20) | (F.col("df") <= F.col("n") * max_doc_share))
    weighted = tf.join(dfreq, "term").withColumn("w", F.col("tf") * (F.log((F.col("n") + 1) / (F.col("df") + 1)) + 1))
    rank = Window.partitionBy(*key).orderBy(F.col("w").desc(), F.length("term"), F.col("term"))
    top = (
        weighted.withColumn("_r", F.row_number().over(rank)).where(F.col("_r") <= top_k)
        .groupBy(*key).agg(F.sort_array(F.collect_list(F.struct("_r", "term"))).alias("_t"))
        .select(*key, F.transform("_t", lambda s: s["term"]).alias(out))
    )
    return df.join(top, key, "left").withColumn(out, F.coalesce(F.col(out), F.array().cast("array<string>")))
