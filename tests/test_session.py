"""The local-mode JVM's options (`instructlake.core.session.LOCAL_JAVA_OPTIONS`), on the tests' own session."""
from __future__ import annotations

from instructlake.core.session import jvm_off_heap


def _direct_bytes(spark) -> int:
    return jvm_off_heap(spark)["direct"]


def test_large_nio_writes_leave_no_cached_direct_buffer(spark, tmp_path):
    jvm = spark._jvm
    assert jvm.java.lang.System.getProperty("jdk.nio.maxCachedBufferSize") == "262144"
    assert (jvm.java.lang.System.getProperty("log4j.configurationFile") or "").endswith("log4j2.properties")
    # A write of a 4 MiB heap buffer through a file channel needs a temporary direct buffer of that
    # size; NIO would keep it for the thread (and Spark's task threads live on): it must be freed.
    data = bytes(range(256)) * (4 * 4096)
    before = _direct_bytes(spark)
    target = jvm.java.io.RandomAccessFile(str(tmp_path / "big.bin"), "rw")
    try:
        channel = target.getChannel()
        for _ in range(3):
            buffer = jvm.java.nio.ByteBuffer.wrap(data)
            while buffer.hasRemaining():
                channel.write(buffer)
    finally:
        target.close()
    assert (tmp_path / "big.bin").stat().st_size == 3 * len(data)
    assert _direct_bytes(spark) - before < len(data) // 2


def test_a_confs_own_jvm_options_come_after_the_local_ones():
    from instructlake.core.config import SparkSettings
    from instructlake.core.session import JAVA_OPTIONS_KEY, LOCAL_JAVA_OPTIONS, local_java_options

    plain = local_java_options(SparkSettings()).split()
    assert plain[0].startswith("-Dlog4j.configurationFile=") and plain[1:] == LOCAL_JAVA_OPTIONS
    # The conf's options are kept, not put in the local ones' place; the last one wins on a repeat.
    own = "-XX:NativeMemoryTracking=summary -Djdk.nio.maxCachedBufferSize=0"
    merged = local_java_options(SparkSettings(options={JAVA_OPTIONS_KEY: own})).split()
    assert merged == [*plain, *own.split()]
