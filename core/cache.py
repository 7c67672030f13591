"""The content-keyed, chunk-committed Delta cache that makes expensive calls exactly-once.

Model calls (the generate stage's questions, answers and functions) and
program runs (the code verification) are both work that is slow, must not be
repeated, and whose result depends only on its inputs. Each request carries a
`key` (a hash of everything the result depends on); the cache table holds one
row per result, keyed by it. `run_cached` computes only the keys the table
does not hold yet, in chunks of `chunk_size` requests, each chunk appended in
one Delta commit: a re-run computes nothing already done, and a crash loses at
most the chunk in flight. `cached_results` reads the results back; should two
runs have raced on a key, the first result committed wins.

The work itself runs in Spark tasks (`compute`: a `mapInPandas` function
from the request columns to the table's columns), over contiguous slices of
the requests in their `_group`, `_order` order, so that related requests (one
paragraph's prompts) run together on one worker.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Callable, Iterator, Optional

import pandas as pd
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from instructlake.core.faults import checkpoint
from instructlake.core.lake import RunContext, is_delta, read_table, read_version, save
from instructlake.core.storage import is_connect

log = logging.getLogger("instructlake.cache")

Compute = Callable[[Iterator[pd.DataFrame]], Iterator[pd.DataFrame]]


@dataclass
class CacheStats:
    wanted: int = 0       # distinct keys requested
    computed: int = 0     # ... computed by this run
    seconds: float = 0.0  # wall time of the chunks computed

    @property
    def hits(self) -> int:
        return self.wanted - self.computed


@dataclass(frozen=True)
class CachedStep:
    """One kind of cached work: where its results go and how they are computed.

    `inputs` are the request columns handed to `compute` (with `key` first),
    `schema` the DDL of what `compute` returns, `stamp` constant columns added
    to every result (run id, model, sandbox ...). `prepare` runs once on the
    driver before the first chunk (a check that the work can run at all).
    `on_error` turns a failed chunk's exception into the error to raise (None:
    raise it as it is); it gets the exception, the requests done and the
    requests wanted.
    """

    name: str
    uri: str
    inputs: tuple[str, ...]
    input_schema: str
    schema: str
    compute: Compute
    chunk_size: int
    parallelism: int
    stamp: tuple[tuple[str, Column], ...] = ()
    checkpoint: Optional[str] = None
    prepare: Optional[Callable[[], None]] = None
    on_error: Optional[Callable[[Exception, int, int], Optional[Exception]]] = None


def run_cached(spark, step: CachedStep, requests: DataFrame, run: RunContext, stage: str) -> CacheStats:
    """Compute the results of `requests` (columns `key`, the step's inputs, and optionally `_group`
    and `_order`) that the cache does not hold yet, chunk by chunk, one commit each."""
    order = [c for c in ("_group", "_order") if c in requests.columns] + ["key"]
    wanted = requests.select(*dict.fromkeys(["key", *step.inputs, *order])).dropDuplicates(["key"])
    todo_df = wanted.join(read_table(spark, step.uri).select("key"), "key", "left_anti") if is_delta(spark, step.uri) else wanted
    todo = todo_df.orderBy(*order).select(*step.inputs).collect()
    stats = CacheStats(wanted=wanted.count())
    log.info("%s: %d wanted, %d in the cache, %d to compute", step.name, stats.wanted, stats.wanted - len(todo), len(todo))
    started = time.monotonic()
    if todo and step.prepare:
        step.prepare()
    for start in range(0, len(todo), step.chunk_size):
        chunk = [tuple(r) for r in todo[start : start + step.chunk_size]]
        # Contiguous slices keep the requests of one group together, in order, on one worker.
        out = chunk_frame(spark, chunk, min(step.parallelism, len(chunk)), step.input_schema).mapInPandas(step.compute, step.schema)
        out = out.withColumns({name: value for name, value in step.stamp} | {
            "run_id": F.lit(run.run_id), "created_at": F.lit(run.started_at).cast("timestamp")})
        meta = json.dumps({"stage": stage, "run_id": run.run_id, "step": step.name, "calls": len(chunk)}, sort_keys=True)
        try:
            save(spark, out.write.format("delta").mode("append").option("userMetadata", meta), step.uri, meta)
        except Exception as e:  # noqa: BLE001 - the step decides which failures it can explain
            clear = step.on_error(e, start, len(todo)) if step.on_error else None
            if clear is None:
                raise
            raise clear from None
        stats.computed += len(chunk)
        log.info("%s: %d of %d computed and committed", step.name, stats.computed, len(todo))
        if step.checkpoint:
            checkpoint(step.checkpoint)
    stats.seconds = time.monotonic() - started if todo else 0.0
    return stats


def cached_results(spark, uri: str, columns: list[str], version: Optional[int] = None,
                   keys: Optional[DataFrame] = None) -> DataFrame:
    """(key, *columns): the first committed result of each key at `version` (default: the latest),
    of the keys in `keys` when given."""
    if not is_delta(spark, uri):
        raise ValueError(f"no cache table at {uri}")
    table, _ = read_version(spark, uri, version)
    if keys is not None:
        table = table.join(keys.select("key"), "key", "left_semi")
    first = F.min_by(F.struct(*columns), F.struct("created_at", "run_id"))
    return table.groupBy("key").agg(first.alias("_r")).select("key", *[F.col(f"_r.{c}").alias(c) for c in columns])


def chunk_frame(spark, chunk: list[tuple], slices: int, schema: str):
    """The rows of `chunk` in `slices` partitions of contiguous rows, in order (as
    `SparkContext.parallelize` cuts them; a Spark Connect session, which has no SparkContext,
    gets the same cut by a repartition on each row's slice, sorted back into order)."""
    if not is_connect(spark):
        return spark.createDataFrame(spark.sparkContext.parallelize(chunk, slices), schema)
    rows = [(i * slices // len(chunk), i, *row) for i, row in enumerate(chunk)]
    df = spark.createDataFrame(rows, f"_slice int, _i int, {schema}")
    return df.repartition(slices, "_slice").sortWithinPartitions("_slice", "_i").drop("_slice", "_i")
