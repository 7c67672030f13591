"""The PII filter: what the scorer finds (and does not), redaction and drops in Spark, and a
redacting build end to end: the exported text holds placeholders, silver the originals."""
from __future__ import annotations

import gzip
import json

import pytest
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from conftest import LOCAL, local_conf, release_dir
from instructlake.core.confload import build
from instructlake.core.errors import ConfigError
from instructlake.core.lake import Lake, RunContext
from instructlake.jobs.runner import REGISTRIES, run_pipeline
from instructlake.udfs.filters.pii import PiiFilter, filter_pii, find_pii, redact, score_pii

PLANTED = (
    "Mail jane.doe+news@mail.example.co.uk or call (415) 555-2671, +44 20 7946 0958 or 1-800-474-6836 ext. 4676. "
    "Card 4111 1111 1111 1111, Amex 3782-822463-10005, IBAN DE89 3704 0044 0532 0130 00. "
    "Server 203.0.113.7 and 2001:db8:85a3::8a2e:370:7334."
)
NOT_PII = [
    "print(my_list[0::2], my_list[1::2], s[::2])",                       # Python slices are no IPv6 address
    "(5.0, 2.5358983848622456), 0.2255859375",                           # digits after a decimal point
    "28980 - 18480 = 10500, then 2147483648 and 12345654321",            # arithmetic and bare digit runs
    "at 10:30:45 on 2021-06-01, version 3.11, 4111 1111 1111 1112",      # a time, a date, a card failing Luhn
    "user@localhost, the @handle, DE89 3704 0044 0532 0130 01",          # no dotted domain; an IBAN failing its check
]


def spec(**kw) -> PiiFilter:
    return build(PiiFilter, {"rule": "pii", **kw}, registries=REGISTRIES)


def test_finds_each_kind_with_its_check():
    found = [(f.kind, f.text) for f in find_pii(PLANTED)]
    assert found == [
        ("email", "jane.doe+news@mail.example.co.uk"), ("phone", "(415) 555-2671"), ("phone", "+44 20 7946 0958"),
        ("phone", "1-800-474-6836 ext. 4676"), ("credit_card", "4111 1111 1111 1111"), ("credit_card", "3782-822463-10005"),
        ("iban", "DE89 3704 0044 0532 0130 00"), ("ip_address", "203.0.113.7"), ("ip_address", "2001:db8:85a3::8a2e:370:7334"),
    ]


@pytest.mark.parametrize("text", NOT_PII)
def test_no_false_hit_on_code_numbers_and_failed_checks(text):
    assert find_pii(text) == []


def test_redaction_and_kinds_in_conf_order():
    text = "Write to a@b.io or call (415) 555-2671 (a card number is 4111111111111111)."
    assert redact(text, find_pii(text)) == "Write to <EMAIL> or call <PHONE> (a card number is <CREDIT_CARD>)."
    assert find_pii(text, ("phone",)) == [find_pii(text)[1]]
    kinds, i, r = score_pii(text, "nothing here", spec(kinds=["phone", "email"]))
    assert (kinds, i, r) == (["phone", "email"], "Write to <EMAIL> or call <PHONE> (a card number is 4111111111111111).", None)
    assert score_pii(None, "", spec()) == ([], None, None)
    # an unclosed bracket before a number stays in the text
    assert redact("Poison Control (1-800-222-1222).", find_pii("Poison Control (1-800-222-1222).")) == "Poison Control (<PHONE>)."


def test_conf_checks_kinds_and_region():
    with pytest.raises(ConfigError, match="kinds: list each kind once"):
        spec(kinds=["email", "email"])
    with pytest.raises(ConfigError, match="phone_region: not a region libphonenumber knows: 'XX'"):
        spec(phone_region="XX")
    with pytest.raises(ConfigError, match="kinds\\[0\\]: expected one of"):
        spec(kinds=["ssn"])


ROWS = [
    (0, "hh", "Email me at a@b.io", "Sure.", None),
    (1, "hh", "What is 2 + 2?", "Call 415-555-2671 for help.", None),
    (2, "hh", "Nothing personal", "Nothing here either", None),
    (3, "hh", "Already dropped: x@y.org", "", "response_too_short"),
    (4, "other", "Skipped source: x@y.org", "ok", None),
    (5, "hh", None, None, "no_assistant_reply"),
]
SCHEMA = "id int, source string, instruction string, response string, drop_reason string"


def test_drop_sets_the_first_kind_and_its_stage(spark):
    df = spark.createDataFrame(ROWS, SCHEMA)
    out = filter_pii(df, spec(action="drop", sources=["hh"])).select("id", "drop_reason", "drop_stage", "pii_kinds")
    assertDataFrameEqual(out, [
        (0, "pii:email", "pii", ["email"]), (1, "pii:phone", "pii", ["phone"]), (2, None, None, []),
        (3, "response_too_short", None, None), (4, None, None, None), (5, "no_assistant_reply", None, None),
    ], checkRowOrder=False)


def test_redact_keeps_the_pair_and_writes_the_new_texts(spark):
    df = spark.createDataFrame(ROWS, SCHEMA)
    out = filter_pii(df, spec(sources=["hh"])).select("id", "drop_reason", "pii_instruction", "pii_response")
    assertDataFrameEqual(out, [
        (0, None, "Email me at <EMAIL>", None), (1, None, None, "Call <PHONE> for help."), (2, None, None, None),
        (3, "response_too_short", None, None), (4, None, None, None), (5, "no_assistant_reply", None, None),
    ], checkRowOrder=False)


def test_a_redacting_build_exports_placeholders_and_counts_them(spark, tmp_path):
    dialogue = "\n\nHuman: My email is jane@example.org, can you check it?\n\nAssistant: " + "I cannot read your inbox. " * 5
    other = "\n\nHuman: What is a good name for a cat?\n\nAssistant: " + "Whiskers is a classic choice for a cat. " * 4
    raw = tmp_path / "raw" / "hh.jsonl.gz"
    raw.parent.mkdir()
    with gzip.open(raw, "wt") as f:
        for text in (dialogue, other):
            f.write(json.dumps({"chosen": text, "rejected": text}) + "\n")
    conf = local_conf(tmp_path, "sources.helpful_rejection_sampled.enabled=false", "sources.red_team_attempts.enabled=false",
                      f"sources.helpful_online.paths=[{raw}]", "filters.language.enabled=false", conf=LOCAL)
    result = run_pipeline(spark, conf, RunContext())
    part = json.loads(next(release_dir(tmp_path / "out").glob("*_part1.json")).read_text())
    texts = sorted(text for _, text in part)
    assert len(texts) == 2 and "jane@example.org" not in "".join(texts)
    assert texts[0].startswith("User: My email is <EMAIL>, can you check it?\n\nAssistant: I cannot read")
    # silver keeps the original, beside the redacted text and what was found
    row = spark.read.format("delta").load(Lake.of(conf).pairs).where(F.array_contains("pii_kinds", "email")).collect()[0]
    assert "jane@example.org" in row["instruction"] and row["pii_instruction"].startswith("My email is <EMAIL>")
    manifest = result.export.manifest
    assert manifest["rewrites"] == {"pii": {"hh_helpful": {"rows": 1, "tags": {"email": 1}}}}
    assert result.export.report["rewrites"] == manifest["rewrites"]
    card = (release_dir(tmp_path / "out") / "README.md").read_text()
    assert "## Rewritten texts" in card and "| `pii` | hh_helpful | 1 | email 1 |" in card
    assert "Texts rewritten by pii" in (release_dir(tmp_path / "out") / "report.html").read_text()
