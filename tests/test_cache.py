"""The content-keyed, chunk-committed Delta cache that model calls and program runs share."""
from __future__ import annotations

from typing import Iterator

import pandas as pd
import pytest
from delta.tables import DeltaTable
from pyspark.sql import functions as F

from instructlake.core.cache import CachedStep, cached_results, run_cached
from instructlake.core.lake import RunContext

SCHEMA = "key string, value long"


def step(uri: str, **kw) -> CachedStep:
    def lengths(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:  # nested: shipped to the workers by value
        for batch in batches:
            if (batch["payload"] == "poison").any():
                raise ValueError("a poisoned request")
            yield pd.DataFrame({"key": batch["key"], "value": batch["payload"].str.len()})

    return CachedStep(name="lengths", uri=uri, inputs=("key", "payload"), input_schema="key string, payload string",
                      schema=SCHEMA, compute=lengths, chunk_size=2, parallelism=2, stamp=(("model", F.lit("len")),), **kw)


def requests(spark, payloads: list[str]):
    return spark.createDataFrame([(f"k{i}", p) for i, p in enumerate(payloads)], "key string, payload string")


def test_each_key_is_computed_once_in_chunk_commits(spark, tmp_path):
    uri = (tmp_path / "cache").as_uri()
    wanted = requests(spark, ["a", "bb", "ccc", "dddd", "eeeee"]).union(requests(spark, ["a"]))  # k0 twice
    first = run_cached(spark, step(uri), wanted, RunContext(), "test")
    assert (first.wanted, first.computed, first.hits) == (5, 5, 0)
    history = DeltaTable.forPath(spark, uri).history().orderBy("version").collect()
    assert [h["operation"] for h in history] == ["WRITE"] * 3  # 2 + 2 + 1 requests
    again = run_cached(spark, step(uri), requests(spark, ["a", "bb", "ccc", "dddd", "eeeee", "ffffff"]), RunContext(), "test")
    assert (again.wanted, again.computed, again.hits) == (6, 1, 5)
    got = {r["key"]: r["value"] for r in cached_results(spark, uri, ["value"]).collect()}
    assert got == {f"k{i}": i + 1 for i in range(6)}
    stamped = spark.read.format("delta").load(uri).select("model", "run_id", "created_at").distinct().count()
    assert stamped == 2  # two runs, each stamps its rows


def test_the_first_committed_result_of_a_key_wins(spark, tmp_path):
    uri = (tmp_path / "cache").as_uri()
    run_cached(spark, step(uri), requests(spark, ["a"]), RunContext(run_id="1"), "test")
    later = spark.createDataFrame([("k0", 99, "len", "2")], "key string, value long, model string, run_id string")
    later.withColumn("created_at", F.current_timestamp()).write.format("delta").mode("append").save(uri)
    assert cached_results(spark, uri, ["value"]).collect()[0]["value"] == 1


def test_a_failed_chunk_keeps_the_committed_ones_and_is_explained(spark, tmp_path):
    uri = (tmp_path / "cache").as_uri()
    seen = []

    def explain(error, done, wanted):
        seen.append((done, wanted))
        return RuntimeError(f"lengths: {done} of {wanted} done") if "poisoned" in str(error) else None

    with pytest.raises(RuntimeError, match=r"^lengths: 2 of 3 done$"):
        run_cached(spark, step(uri, on_error=explain), requests(spark, ["a", "bb", "poison"]), RunContext(), "test")
    assert seen == [(2, 3)]
    assert {r["key"] for r in cached_results(spark, uri, ["value"]).collect()} == {"k0", "k1"}
