"""Raw records: JSON arrays cut into elements, and typed fields with a reason for every misfit."""
from __future__ import annotations

import pytest

from instructlake.udfs.records import Field, split_json_array, with_typed_fields


def test_split_array_exact_slices():
    text = ' [ {"a": 1},\n {"a": "x, ]"} , [1,2] ]\n'
    assert list(split_json_array(text)) == [(0, '{"a": 1}', None), (1, '{"a": "x, ]"}', None), (2, "[1,2]", None)]


@pytest.mark.parametrize(
    "text,expected",
    [
        ("[]", []),
        ("", [(0, "", "empty_file")]),
        (None, [(0, "", "empty_file")]),
        ('{"a": 1}\n{"a": 2}\n', [(0, '{"a": 1}\n{"a": 2}\n', "not_a_json_array")]),
        ('[{"a": 1}, {"a": ', [(0, '{"a": 1}', None), (1, '{"a": ', "malformed_json")]),
        ('[{"a": 1} {"a": 2}]', [(0, '{"a": 1}', None), (1, '{"a": 2}]', "truncated_json_array")]),
        ('[{"a": 1}] trailing', [(0, '{"a": 1}', None), (1, "trailing", "trailing_data_after_array")]),
    ],
)
def test_split_array_bad_input(text, expected):
    assert list(split_json_array(text)) == expected


def test_typed_fields_reasons(spark):
    fields = [Field("text", "string", required=True), Field("score", "double"), Field("tags", "array<string>")]
    raws = [
        '{"text": "ok", "score": 1, "tags": ["a"]}',
        '{"text": "ok", "score": 0.5, "tags": null}',
        '{"text": "ok"}',
        "",
        None,
        "{not json",
        "[1, 2]",
        '{"score": 1}',
        '{"text": null}',
        '{"text": 5}',
        '{"text": "ok", "score": "high"}',
        '{"text": "ok", "tags": "a"}',
        '{"text": "ünïcödé ✓", "extra": {"nested": true}}',
        # keys in another order, decimals, keys that are not fields among the fields
        '{"text": "ok", "score": 2.5, "tags": [], "b": 1, "t": [1]}',
        '{"score": 2.5, "tags": "a", "text": "ok"}',
        # one key whose name holds the field names is none of the fields
        '{"tags: ARRAY<STRING>, text": "ok"}',
        '{"text": "ok", "score": 12.345}',
    ]
    df = spark.createDataFrame(list(enumerate(raws)), "i long, raw string")
    rows = with_typed_fields(df, fields).orderBy("i").collect()
    got = [(r["_error"], r["text"], r["score"], r["tags"]) for r in rows]
    assert got == [
        (None, "ok", 1.0, ["a"]),
        (None, "ok", 0.5, None),
        (None, "ok", None, None),
        ("blank_line", None, None, None),
        ("blank_line", None, None, None),
        ("malformed_json", None, None, None),
        ("not_a_json_object", None, None, None),
        ("missing_field:text", None, None, None),
        ("missing_field:text", None, None, None),
        ("wrong_type:text", None, None, None),
        ("wrong_type:score", None, None, None),
        ("wrong_type:tags", None, None, None),
        (None, "ünïcödé ✓", None, None),
        (None, "ok", 2.5, []),
        ("wrong_type:tags", None, None, None),
        ("missing_field:text", None, None, None),
        (None, "ok", 12.345, None),
    ]


def test_content_id_tells_apart_what_json_would(spark):
    from instructlake.udfs.records import canonical_text, content_id

    fields = [Field("a", "string"), Field("b", "string"), Field("n", "double"), Field("tags", "array<string>")]
    rows = [
        ("ab", "c", 1.0, ["x"]),
        ("a", "bc", 1.0, ["x"]),      # the same characters, cut elsewhere
        (None, "c", 1.0, ["x"]),      # a null is not a string "-"
        ("-", "c", 1.0, ["x"]),
        ("ab", "c", None, ["x"]),
        ("ab", "c", 1.0, ["x", ""]),
        ("ab", "c", 1.0, ["x"]),      # the first row again
        ("ünï,:", "", 2.5, []),
    ]
    df = spark.createDataFrame(rows, "a string, b string, n double, tags array<string>")
    got = df.select(canonical_text(fields).alias("t"), content_id(fields).alias("id")).collect()
    assert got[0]["t"] == '2:ab,1:c,3:1.0,5:["x"]' and got[2]["t"] == '-,1:c,3:1.0,5:["x"]'
    assert got[7]["t"] == "7:ünï,:,0:,3:2.5,2:[]"  # lengths in UTF-8 bytes
    ids = [r["id"] for r in got]
    assert ids[0] == ids[6] and len(set(ids)) == 7 and all(len(i) == 64 for i in ids)
