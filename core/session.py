"""The one place a SparkSession is built.

- On Databricks, or wherever a session is already active, that session is
  reused as it is (its Delta Lake is the runtime's).
- Under `spark-submit` the JVM already exists with the submitter's settings
  (`--master`, `--packages io.delta:...` or `--jars`); the session is built
  on it, adding only the Delta SQL extension and catalog.
- Otherwise (plain `python`, `make run`, tests) it is local mode, with the
  Delta jars from the local jar cache (see `instructlake.core.jars`): no network needed.

Whatever the path, the session is checked for Delta Lake and a missing Delta
gives one clear error rather than a ClassNotFoundException later.
"""
from __future__ import annotations

import os
import re
import sys
import warnings

from pyspark.sql import SparkSession

from instructlake.core import jars
from instructlake.core.storage import is_connect
from instructlake.core.config import CONF_DIR, SparkSettings
from instructlake.core.errors import DeltaUnavailableError

DELTA_EXTENSION = "io.delta.sql.DeltaSparkSessionExtension"
DELTA_CATALOG = "org.apache.spark.sql.delta.catalog.DeltaCatalog"

# Local-mode defaults in the spirit of Delta's own test settings: no UI, no
# progress bars on the console, small state-reconstruction parallelism.
LOCAL_DEFAULTS = {
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.driver.memory": "2g",
}
# The JVM's options in local mode. NIO keeps, per thread, a direct buffer as large as the largest
# heap buffer that thread has read or written; Spark's task threads live on, so these caches grew
# with the data (to about 200 MiB at 10^6 dialogues, see docs/performance.md).
# Buffers above 256 KiB are freed after use instead.
LOCAL_JAVA_OPTIONS = ["-Djdk.nio.maxCachedBufferSize=262144"]
JAVA_OPTIONS_KEY = "spark.driver.extraJavaOptions"  # in local mode, added to these (`local_java_options`)
# Session-level SQL settings for any local master, however it was launched
# (also `spark-submit --master local[N]`): Delta's default of 50 partitions
# for reading its log is made for clusters, not for one machine.
LOCAL_SQL_DEFAULTS = {
    "spark.databricks.delta.snapshotPartitions": "2",
    "spark.sql.sources.parallelPartitionDiscovery.parallelism": "2",
}


def _under_spark_submit() -> bool:
    # spark-submit starts the JVM first and hands its gateway to the Python driver.
    return "PYSPARK_GATEWAY_PORT" in os.environ


def local_java_options(settings: SparkSettings) -> str:
    """The JVM's options in local mode: the log configuration, `LOCAL_JAVA_OPTIONS`, then the
    conf's own `spark.driver.extraJavaOptions` (last, so that they win where they repeat one: the
    last of a repeated option on the JVM's command line is the one it takes)."""
    log4j = CONF_DIR / "log4j2.properties"
    options = [f"-Dlog4j.configurationFile={log4j.as_uri()}"] if log4j.is_file() else []
    own = settings.options.get(JAVA_OPTIONS_KEY)
    return " ".join([*options, *LOCAL_JAVA_OPTIONS, *([own] if own else [])])


def get_spark(settings: SparkSettings | None = None):
    """Return the active SparkSession, or build one for `settings` (see module doc)."""
    settings = settings or SparkSettings()
    if settings.remote:
        return _connect(settings)
    active = SparkSession.getActiveSession()
    if active is not None:
        _check_delta(active)
        return active

    builder = SparkSession.builder.appName(settings.app_name)
    builder = builder.config("spark.sql.extensions", DELTA_EXTENSION).config(
        "spark.sql.catalog.spark_catalog", DELTA_CATALOG
    )
    builder = builder.config("spark.sql.shuffle.partitions", str(settings.shuffle_partitions))
    options = dict(settings.options)  # set after the local defaults, so that they win
    if not _under_spark_submit():
        # Python workers must run this interpreter (the project's virtualenv),
        # not whatever `python3` is first on PATH.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
        # Bind to loopback: a laptop's changing address is no business of local mode.
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        builder = builder.master(settings.master)
        options[JAVA_OPTIONS_KEY] = local_java_options(settings)  # the conf's own ones within
        for key, value in LOCAL_DEFAULTS.items():
            builder = builder.config(key, value)
        paths = jars.cached_jars(settings.jars_dir)
        builder = builder.config("spark.jars", ",".join(str(p) for p in paths))
    for key, value in options.items():
        builder = builder.config(key, value)
    builder = builder.config("spark.sql.session.timeZone", "UTC")
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(settings.log_level)
    if spark.sparkContext.master.startswith("local"):
        for key, value in LOCAL_SQL_DEFAULTS.items():
            if key not in settings.options:
                spark.conf.set(key, value)
    _check_delta(spark)
    return spark


def master_of(spark) -> str:
    """The session's master (`local[2]`, `spark://...`), also of a Spark Connect session."""
    return (spark.conf.get("spark.master", "") or "") if is_connect(spark) else spark.sparkContext.master


def default_parallelism(spark) -> int:
    """Tasks that keep every core busy: the SparkContext's default parallelism; for a Spark
    Connect session (no SparkContext here), that of a local master's `local[N]`, else
    `spark.default.parallelism` (default 2)."""
    if not is_connect(spark):
        return spark.sparkContext.defaultParallelism
    local = re.match(r"local\[(\d+)", master_of(spark))
    return int(local.group(1)) if local else int(spark.conf.get("spark.default.parallelism", "2") or 2)


def application_id(spark) -> str:
    return spark.conf.get("spark.app.id", "") if is_connect(spark) else spark.sparkContext.applicationId


def _connect(settings: SparkSettings):
    """A Spark Connect session: to the server at `settings.remote` (`sc://host:port`), or to a
    local one it starts (`local[N]`) with the Delta jars, extension and catalog."""
    builder = SparkSession.builder.remote(settings.remote).appName(settings.app_name)
    if settings.remote.startswith("local"):
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        builder = builder.config("spark.jars", ",".join(str(p) for p in jars.cached_jars(settings.jars_dir)))
        builder = builder.config("spark.sql.extensions", DELTA_EXTENSION).config("spark.sql.catalog.spark_catalog", DELTA_CATALOG)
        for key, value in {**LOCAL_DEFAULTS, JAVA_OPTIONS_KEY: local_java_options(settings)}.items():
            builder = builder.config(key, value)
    for key, value in {**settings.options, "spark.sql.shuffle.partitions": str(settings.shuffle_partitions),
                       "spark.sql.session.timeZone": "UTC"}.items():
        builder = builder.config(key, value)
    with warnings.catch_warnings():  # the static settings above apply at the local server's start; the
        warnings.simplefilter("ignore")  # client warns that it cannot set them again on the running one
        spark = builder.getOrCreate()
    if settings.remote.startswith("local"):
        for key, value in LOCAL_SQL_DEFAULTS.items():
            if key not in settings.options:
                spark.conf.set(key, value)
    _check_delta(spark)
    return spark


def _check_delta(spark) -> None:
    if is_connect(spark):  # the server's classpath is not visible from here; its settings are
        if DELTA_EXTENSION not in (spark.conf.get("spark.sql.extensions", "") or "") and not _is_databricks():
            raise DeltaUnavailableError(f"the Spark Connect server runs without Delta Lake: start it with the delta-spark "
                                        f"and delta-storage jars and spark.sql.extensions={DELTA_EXTENSION}")
        return
    try:
        loader = spark._jvm.java.lang.Thread.currentThread().getContextClassLoader()
        spark._jvm.java.lang.Class.forName(DELTA_EXTENSION, False, loader)
    except Exception:
        raise DeltaUnavailableError(
            "Delta Lake is not on this Spark session's classpath. With spark-submit, add "
            f"`--packages {jars.delta_package_coordinates()}` (or `--jars` with the delta-spark and "
            "delta-storage jars); on Databricks use a runtime with Delta Lake."
        ) from None
    extensions = spark.conf.get("spark.sql.extensions", "") or ""
    if DELTA_EXTENSION not in extensions and not _is_databricks():
        raise DeltaUnavailableError(
            f"this Spark session was built without the Delta SQL extension; set "
            f"spark.sql.extensions={DELTA_EXTENSION} and "
            f"spark.sql.catalog.spark_catalog={DELTA_CATALOG}"
        )


def _is_databricks() -> bool:
    return "DATABRICKS_RUNTIME_VERSION" in os.environ


def jvm_off_heap(spark) -> dict:
    """Bytes the JVM holds beyond its heap, from its own memory beans: the peak use of the
    metaspace and of the compiled code since it started, the direct buffers in use now."""
    beans = spark._jvm.java.lang.management.ManagementFactory
    out = {"metaspace": 0, "code": 0, "direct": 0}
    for pool in beans.getMemoryPoolMXBeans():
        name = pool.getName()
        kind = "code" if name.startswith("CodeHeap") else "metaspace" if name in ("Metaspace", "Compressed Class Space") else None
        if kind:
            out[kind] += pool.getPeakUsage().getUsed()
    buffers = spark._jvm.java.lang.Class.forName("java.lang.management.BufferPoolMXBean")
    out["direct"] = sum(b.getMemoryUsed() for b in beans.getPlatformMXBeans(buffers) if b.getName() == "direct")
    return out
