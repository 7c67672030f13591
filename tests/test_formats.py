"""The export's formats (JSONL, chat, Parquet), the train/validation split and the per-source selection.

The files are read back by Hugging Face `datasets`, pyarrow and Spark, and checked
against the pairs table and the manifest.
"""
from __future__ import annotations

import hashlib
import json
from collections import Counter

import pyarrow.parquet as pq
import pytest
from pyspark.sql import functions as F

from conftest import ALL_FORMATS, LOCAL, SMALL_LAKE, local_conf, release_dir
from instructlake.jobs.stages.export import run_export
from instructlake.jobs.stages.formats import source_quotas
from instructlake.core.lake import Lake, RunContext


def files_of(manifest: dict, fmt: str, split: str) -> list[dict]:
    return [f for f in manifest["files"] if f["product"] == "pairs" and f["format"] == fmt and f["split"] == split]


def kept_pairs(spark, conf) -> dict:
    """{content id: (source, instruction, response)} of the kept pairs, read from the table."""
    pairs = spark.read.format("delta").load(Lake.of(conf).pairs).where(F.col("drop_reason").isNull())
    return {r["content_id"]: (r["source"], r["instruction"], r["response"]) for r in pairs.collect()}


def test_every_file_is_listed_with_rows_and_sha256(all_formats_export):
    conf, result, release = all_formats_export
    listed = {f["file"] for f in result.manifest["files"]} | {p["file"] for p in result.manifest["parts"]}
    on_disk = {p.name for p in release.iterdir()} - {"manifest.json", "report.json", "report.html", "README.md"}
    assert listed == on_disk
    pair_files = [f for f in result.manifest["files"] if f["product"] == "pairs"]
    assert {f["format"] for f in pair_files} == {"jsonl", "chat", "parquet", "openai", "sharegpt", "alpaca"}
    assert {f["product"] for f in result.manifest["files"]} == {"pairs", "preference", "conversations"}
    for f in result.manifest["files"]:
        assert hashlib.sha256((release / f["file"]).read_bytes()).hexdigest() == f["sha256"]
        assert f["bytes"] == (release / f["file"]).stat().st_size
        assert 0 < f["rows"] <= 150  # export.rows_per_part
    for fmt in ("jsonl", "chat", "parquet", "openai", "sharegpt", "alpaca"):
        assert sum(f["rows"] for f in pair_files if f["format"] == fmt) == result.total_rows


def test_datasets_loads_jsonl_and_chat(spark, all_formats_export):
    datasets = pytest.importorskip("datasets")
    conf, result, release = all_formats_export
    truth = kept_pairs(spark, conf)
    seen = {}
    for split in ("train", "validation"):
        files = [str(release / f["file"]) for f in files_of(result.manifest, "jsonl", split)]
        ds = datasets.load_dataset("json", data_files=files, split="train")
        assert ds.num_rows == sum(f["rows"] for f in files_of(result.manifest, "jsonl", split)) == result.manifest["split"]["rows"][split]
        assert set(ds.column_names) == {"id", "source", "instruction", "response", "meta"}
        for row in ds:
            assert row["meta"]["split"] == split
            seen[row["id"]] = (row["source"], row["instruction"], row["response"])
        chat_files = [str(release / f["file"]) for f in files_of(result.manifest, "chat", split)]
        chat = datasets.load_dataset("json", data_files=chat_files, split="train")
        assert chat.column_names == ["id", "source", "messages", "meta"] and chat.num_rows == ds.num_rows
        # the same rows in the same order: the chat file is the jsonl file's pairs as two turns
        for row, turns, chat_id in zip(ds, chat["messages"], chat["id"]):
            assert turns == [{"role": "user", "content": row["instruction"]}, {"role": "assistant", "content": row["response"]}]
            assert chat_id == row["id"]
    assert seen == truth


def test_parquet_matches_the_jsonl(spark, all_formats_export):
    conf, result, release = all_formats_export
    for split in ("train", "validation"):
        paths = [str(release / f["file"]) for f in files_of(result.manifest, "parquet", split)]
        tables = [pq.read_table(p) for p in paths]
        assert [t.num_rows for t in tables] == [f["rows"] for f in files_of(result.manifest, "parquet", split)]
        by_arrow = [r for t in tables for r in t.select(["id", "source", "instruction", "response"]).to_pylist()]
        jsonl = [json.loads(line) for f in files_of(result.manifest, "jsonl", split)
                 for line in (release / f["file"]).read_text(encoding="utf-8").splitlines()]
        assert by_arrow == [{k: r[k] for k in ("id", "source", "instruction", "response")} for r in jsonl]
        by_spark = spark.read.parquet(*[f"file://{p}" for p in paths])
        assert by_spark.count() == len(by_arrow)
        assert by_spark.where(F.col("meta.split") != split).count() == 0


def test_split_is_deterministic_and_near_the_fraction(spark, small_lake, all_formats_export, tmp_path):
    conf, result, release = all_formats_export
    ids = lambda rel, man: {json.loads(line)["id"] for f in files_of(man, "jsonl", "validation")  # noqa: E731
                            for line in (rel / f["file"]).read_text(encoding="utf-8").splitlines()}
    # another seed and order: other files, the same split
    again = local_conf(small_lake, *SMALL_LAKE, *ALL_FORMATS, "export.seed=7", "export.order=source",
                       f"paths.output={(tmp_path / 'out').as_uri()}", conf=LOCAL)
    rerun = run_export(spark, again, RunContext())
    assert ids(release_dir(tmp_path / "out"), rerun.manifest) == ids(release, result.manifest)
    share = result.manifest["split"]["rows"]["validation"] / result.total_rows
    assert abs(share - 0.2) < 0.06, share  # 0.2 configured; ~400 rows give a standard error of 0.02
    # the JSON parts of the seed keep every exported row, whatever the split
    assert sum(p["rows"] for p in result.manifest["parts"]) == result.total_rows


def test_source_quotas_caps_and_weights():
    assert source_quotas({"a": 100, "b": 50}, None, None) == {"a": 100, "b": 50}
    assert source_quotas({"a": 100, "b": 50}, {"a": 30}, None) == {"a": 30, "b": 50}
    # a 3:1 mix of a and b: b's 50 rows would ask for 150 of a, a has 100 -> 100 and 33
    assert source_quotas({"a": 100, "b": 50}, None, {"a": 3, "b": 1}) == {"a": 100, "b": 33}
    assert source_quotas({"a": 100, "b": 50, "c": 7}, {"b": 10}, {"a": 1, "b": 1}) == {"a": 10, "b": 10, "c": 7}
    assert source_quotas({"a": 100, "b": 50}, None, {"a": 1, "b": 0}) == {"a": 100, "b": 0}


def test_caps_and_weights_hold_in_the_export(spark, small_lake, tmp_path):
    def export(name, *overrides):
        conf = local_conf(small_lake, *SMALL_LAKE, "export.formats=[jsonl]", f"paths.output={(tmp_path / name).as_uri()}", *overrides, conf=LOCAL)
        result = run_export(spark, conf, RunContext())
        rows = [json.loads(line) for f in result.manifest["files"]
                for line in (release_dir(tmp_path / name) / f["file"]).read_text(encoding="utf-8").splitlines()]
        return result, rows

    capped, rows = export("capped", "export.max_rows_per_source={hh_helpful: 40, hh_harmless: 10}")
    assert Counter(r["source"] for r in rows) == {"hh_helpful": 40, "hh_harmless": 10}
    assert capped.manifest["selection"]["quotas"] == {"hh_harmless": 10, "hh_helpful": 40}
    again, rows_again = export("capped_again", "export.max_rows_per_source={hh_helpful: 40, hh_harmless: 10}")
    assert {r["id"] for r in rows_again} == {r["id"] for r in rows}  # the same rows, chosen by the seeded hash
    mixed, rows = export("mixed", "export.source_weights={hh_helpful: 2, hh_harmless: 1}")
    available = mixed.manifest["selection"]["available"]
    counts = Counter(r["source"] for r in rows)
    assert counts["hh_harmless"] == available["hh_harmless"] and counts["hh_helpful"] == 2 * available["hh_harmless"]
    assert mixed.report["funnel"]["hh_helpful"]["exported"] == counts["hh_helpful"] < mixed.report["funnel"]["hh_helpful"]["kept"]


def test_parts_only_export_writes_no_other_format(spark, small_lake, tmp_path):
    conf = local_conf(small_lake, *SMALL_LAKE, f"paths.output={(tmp_path / 'out').as_uri()}", conf=LOCAL)
    result = run_export(spark, conf, RunContext())
    names = {p.name for p in release_dir(tmp_path / "out").iterdir()}
    assert result.manifest["formats"] == ["json_parts"] and result.manifest["files"] == []
    assert names == {p["file"] for p in result.manifest["parts"]} | {"manifest.json", "report.json", "report.html", "README.md"}


@pytest.mark.parametrize("override, key, message", [
    ("export.formats=[jsonl, csv]", "export.formats[1]", "expected one of"),
    ("export.formats=[jsonl, jsonl]", "export.formats", "each format once"),
    ("export.validation_fraction=0.7", "export.validation_fraction", "must be <= 0.5"),
    ("export.max_rows_per_source={hh_helpful: -1}", "export.max_rows_per_source.hh_helpful", ">= 0"),
    ("export.max_rows_per_source={nope: 5}", "export.max_rows_per_source.nope", "unknown source label"),
    ("export.source_weights={hh_helpful: 0}", "export.source_weights", "above 0"),
])
def test_export_conf_errors_name_the_key(tmp_path, override, key, message):
    from instructlake.core.confload import ConfigError

    with pytest.raises(ConfigError) as err:
        local_conf(tmp_path, override)
    assert err.value.key == key and message in str(err.value)
