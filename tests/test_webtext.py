"""Web text into bronze paragraphs: the readers on the real WikiText and SQuAD files, JSON lines,
plain text, and the TF-IDF topics."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from conftest import SAMPLE, SHARED_DATA, local_conf
from instructlake.udfs.webtext import (
    detokenize_wikitext,
    file_format,
    paragraph_records,
    parse_jsonl,
    parse_plain,
    parse_squad,
    parse_wikitext,
    split_paragraphs,
    wikitext_heading,
)

WIKITEXT = SHARED_DATA / "wikitext" / "wikitext-2-raw" / "wiki.test.raw"
SQUAD_DEV = SHARED_DATA / "squad" / "v1.1-dev-halves" / "dev-v1.1.json"


def records(parse, text, name="f"):
    return [(i, json.loads(raw) if err is None else raw, err) for i, raw, err in parse(text, name)]


@pytest.fixture(scope="module")
def wikitext():
    if not WIKITEXT.is_file():
        pytest.skip(f"the shared real data is not at {SHARED_DATA}")
    return WIKITEXT.read_text(encoding="utf-8")


# --- WikiText -----------------------------------------------------------------

def test_wikitext_structure_on_the_real_file(wikitext):
    rows = records(parse_wikitext, wikitext, "file:/data/wiki.test.raw")
    lines = wikitext.splitlines()
    # An independent count: a title is "= X =" with one "=" a side, a heading has two or more.
    titles = [line for line in lines if re.fullmatch(r" = [^=].* = ", line.rstrip("\r"))]
    headings = [line for line in lines if re.fullmatch(r" (= ){2,}.*( =){2,} ", line.rstrip("\r"))]
    paragraphs = [line for line in lines if line.strip() and line not in titles and line not in headings]
    assert len(titles) == 62 and len(headings) == 644 and len(paragraphs) == 2185
    assert [r[2] for r in rows] == [None] * 2185  # no bad record in the real file
    assert [r[0] for r in rows] == list(range(2185))
    docs = {}
    for _, rec, _ in rows:
        docs.setdefault(rec["doc_id"], rec["title"])
    assert len(docs) == 62
    assert list(docs.values())[:3] == ["Robert Boulter", "Du Fu", "Kiss You (One Direction song)"]
    assert list(docs)[:2] == ["wiki.test.raw:0", "wiki.test.raw:1"]
    first, third = rows[0][1], rows[2][1]
    assert (first["paragraph_index"], first["line"], first["section"], first["text_format"]) == (0, 1, None, "wikitext")
    assert first["text"].startswith(
        "Robert Boulter is an English film, television and theatre actor. He had a guest-starring role on the "
        "television series The Bill in 2000. This was followed by a starring role in the play Herons written by "
        "Simon Stephens, which was performed in 2001 at the Royal Court Theatre."
    )
    assert (third["section"], third["line"]) == ("Career / 2000 – 2005", 5)
    assert third["text"].startswith(
        'In 2000 Boulter had a guest-starring role on the television series The Bill; he portrayed "Scott Parry" '
        'in the episode, "In Safe Hands".'
    )
    texts = [r[1]["text"] for r in rows]
    # Every WikiText escape and every space before punctuation is gone.
    assert not [t for t in texts if re.search(r"@[-,.]@| [,.;:!?)]|\( ", t)]
    assert any("208.18 metres (683 ft 0 in)" in t for t in texts)
    assert any("10.4 million views in a 24-hour period" in t for t in texts)
    assert any("group's sixth top-ten hit in Ireland" in t for t in texts)


@pytest.mark.parametrize(
    "raw,want",
    [
        ("1 @,@ 000 people", "1,000 people"),
        ("a 24 @-@ hour period , 2 @.@ 5 %", "a 24-hour period, 2.5%"),
        ("you do n't know Teddy 's Story ; Chang 'an", "you don't know Teddy's Story; Chang'an"),
        ('he said : " I loved it " ( really ) .', 'he said: "I loved it" (really).'),
        ("called the ' box-battery ' or the players ' union", "called the 'box-battery' or the players' union"),
        ("cost $ 5 , not £ 3", "cost $5, not £3"),
        ("  ", ""),
        ("", ""),
        ("ünïcödé 杜甫 , fine .", "ünïcödé 杜甫, fine."),
        (None, None),
    ],
)
def test_detokenize(raw, want):
    assert detokenize_wikitext(raw) == want


def test_wikitext_headings_and_blank_lines():
    text = " \n = Title = \n \n = = Part = = \n Some text , here . \n \n = = = Sub = = = \n More . \n = = Other = = \n Last . \n"
    rows = records(parse_wikitext, text, "x.raw")
    assert [(r[1]["section"], r[1]["text"], r[1]["paragraph_index"]) for r in rows] == [
        ("Part", "Some text, here.", 0), ("Part / Sub", "More.", 1), ("Other", "Last.", 2),
    ]
    assert wikitext_heading(" = A = ") == (1, "A") and wikitext_heading(" = = B = = ") == (2, "B")
    assert wikitext_heading(" = National record ") is None and wikitext_heading(" = = = ") is None


# --- plain text, JSON lines, SQuAD ---------------------------------------------

def test_plain_text_paragraphs():
    text = "First line\nof one paragraph.\n\n\n  Second paragraph.  \r\n\r\nThird.\n"
    rows = records(parse_plain, text, "file:/d/notes.txt")
    assert [(r[0], r[1]["text"], r[1]["line"], r[1]["doc_id"], r[1]["title"]) for r in rows] == [
        (0, "First line of one paragraph.", 0, "notes.txt", None),
        (1, "Second paragraph.", 4, "notes.txt", None),
        (2, "Third.", 6, "notes.txt", None),
    ]
    assert records(parse_plain, "\n \n") == []
    assert split_paragraphs(None) == [] and split_paragraphs("") == []
    assert split_paragraphs("no blank line\nso lines are paragraphs") == ["no blank line", "so lines are paragraphs"]


def test_jsonl_documents_and_bad_lines():
    lines = [
        json.dumps({"text": "Para one.\n\nPara two\nstill two.", "url": "https://example.com/a", "title": "A"}),
        "{broken",
        json.dumps(["not", "an", "object"]),
        json.dumps({"body": "no text"}),
        json.dumps({"text": 5}),
        "",
        json.dumps({"text": "   "}),
        json.dumps({"text": "C4 style\nlines are paragraphs", "timestamp": "2019"}),
    ]
    rows = records(parse_jsonl, "\n".join(lines) + "\n", "file:/d/c4.jsonl")
    got = [(i, err, rec["text"] if err is None else None, rec["doc_id"] if err is None else None) for i, rec, err in rows]
    assert got == [
        (0, None, "Para one.", "https://example.com/a"),
        (1, None, "Para two still two.", "https://example.com/a"),
        (2, "malformed_json", None, None),
        (3, "not_a_json_object", None, None),
        (4, "missing_field:text", None, None),
        (5, "wrong_type:text", None, None),
        (6, "blank_line", None, None),
        (7, "empty_text", None, None),
        (8, None, "C4 style", "c4.jsonl:7"),
        (9, None, "lines are paragraphs", "c4.jsonl:7"),
    ]
    assert rows[0][1]["title"] == "A" and rows[1][1]["paragraph_index"] == 1 and rows[8][1]["line"] == 7
    assert rows[2][1] == "{broken"  # the bad line itself, for the quarantine


def test_squad_contexts_on_the_real_file():
    if not SQUAD_DEV.is_file():
        pytest.skip(f"the shared real data is not at {SHARED_DATA}")
    text = SQUAD_DEV.read_text(encoding="utf-8")
    rows = records(parse_squad, text, "dev-v1.1.json")
    data = json.loads(text)["data"]
    assert len(rows) == sum(len(a["paragraphs"]) for a in data) == 913
    assert all(err is None for _, _, err in rows)
    first = rows[0][1]
    assert (first["title"], first["doc_id"], first["paragraph_index"], first["text_format"]) == ("Super Bowl 50", "dev-v1.1.json:0", 0, "squad")
    assert first["text"] == data[0]["paragraphs"][0]["context"].strip()
    assert records(parse_squad, "{not json") == [(0, "{not json", "malformed_json")]
    assert records(parse_squad, '{"version": "1.1"}')[0][2] == "not_squad_json"
    bad = records(parse_squad, json.dumps({"data": [{"title": "T", "paragraphs": [{"context": "ok"}, {"qas": []}]}]}))
    assert [(i, err) for i, _, err in bad] == [(0, None), (1, "missing_field:context")]


def test_format_by_file_name():
    assert [file_format(n) for n in ["wiki.test.raw", "s3a://b/c4-train.00001.jsonl.gz", "dev-v1.1.json", "notes.txt", "README"]] == [
        "wikitext", "jsonl", "squad", "plain", "plain"
    ]
    assert list(paragraph_records(None, "a.txt")) == [(0, "", "empty_file")]
    assert list(paragraph_records("", "a.txt")) == [(0, "", "empty_file")]


# --- through Spark: bronze and quarantine, topics -------------------------------

def test_ingest_web_text_sources(spark, tmp_path, wikitext):
    from pyspark.sql import functions as F

    from instructlake.jobs.stages.ingest import run_ingest
    from instructlake.core.lake import Lake, RunContext

    folder = tmp_path / "web"
    (folder / "plain").mkdir(parents=True)
    (folder / "plain" / "a.txt").write_text("Alpha paragraph.\n\nBeta paragraph.\n", encoding="utf-8")
    (folder / "plain" / "b.txt").write_text("Gamma.\n", encoding="utf-8")
    (folder / "docs.jsonl").write_text(json.dumps({"text": "One.\n\nTwo."}) + "\n{bad\n", encoding="utf-8")
    paths = [str(WIKITEXT), str(SQUAD_DEV), str(folder / "plain"), str(folder / "docs.jsonl")]
    conf = local_conf(
        tmp_path, "sources.helpful_online.enabled=false", "sources.helpful_rejection_sampled.enabled=false",
        "sources.red_team_attempts.enabled=false", "sources.wikitext.enabled=true", f"sources.wikitext.paths={json.dumps(paths)}",
    )
    result = run_ingest(spark, conf, RunContext())
    assert (result[0].rows, result[0].quarantined) == (2185 + 913 + 3 + 2, 1)
    lake = Lake.of(conf)
    bronze = spark.read.format("delta").load(lake.bronze("wikitext"))
    assert bronze.columns == [
        "doc_id", "title", "section", "paragraph_index", "line", "text", "text_format",
        "source", "source_name", "source_file", "row_index", "content_id", "ingest_run_id", "ingested_at",
    ]
    per_format = {r["text_format"]: r["count"] for r in bronze.groupBy("text_format").count().collect()}
    assert per_format == {"wikitext": 2185, "squad": 913, "plain": 3, "jsonl": 2}
    assert bronze.where(F.col("source") != "synthetic_qa").count() == 0
    plain = bronze.where(F.col("text_format") == "plain").orderBy("source_file", "row_index").collect()
    assert [(Path(r["source_file"]).name, r["row_index"], r["text"]) for r in plain] == [
        ("a.txt", 0, "Alpha paragraph."), ("a.txt", 1, "Beta paragraph."), ("b.txt", 0, "Gamma."),
    ]
    q = spark.read.format("delta").load(lake.quarantine).collect()
    assert [(Path(r["source_file"]).name, r["row_index"], r["reason"], r["raw"]) for r in q] == [("docs.jsonl", 2, "malformed_json", "{bad")]


def test_topics_are_tfidf_keyphrases(spark):
    from instructlake.udfs.webtext import with_topics

    text = (SAMPLE / "wikitext" / "wiki.sample.raw").read_text(encoding="utf-8")
    rows = [(json.loads(raw)["title"], i, json.loads(raw)["text"]) for i, raw, _ in parse_wikitext(text, "s.raw")]
    rows += [("Empty", 99, ""), ("None", 100, None), ("Stop words only", 101, "the of and it is was"), ("One word", 102, "Canterbury")]
    df = spark.createDataFrame(rows, "title string, row_index long, text string")
    topics = {r["row_index"]: (r["title"], r["topics"]) for r in with_topics(df, ["row_index"], top_k=5).collect()}
    assert len(topics) == len(rows)
    assert all(len(t) == 5 for title, t in topics.values() if title in ("Robert Boulter", "Dvorak technique"))
    assert topics[99][1] == [] and topics[100][1] == [] and topics[101][1] == [] and topics[102][1] == ["canterbury"]
    by_title = {}
    for title, t in topics.values():
        by_title.setdefault(title, set()).update(t)
    assert "boulter" in by_title["Robert Boulter"] and "dvorak" in by_title["Dvorak technique"]
    assert "osbert" in by_title["Osbert de Bayeux"] and "tatwine" in by_title["Tatwine"]
    assert any(" " in t for t in by_title["Dvorak technique"])  # bigrams, e.g. "tropical cyclones"
    stop = {"the", "and", "was", "his", "which"}
    assert not stop & set().union(*by_title.values())
