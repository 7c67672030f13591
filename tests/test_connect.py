"""Every stage through a Spark Connect session: a process of its own starts a local Spark Connect
server (pyspark's, with the Delta jars) and runs the pipeline on the embedded sample through it;
its files equal those of a classic session on the same conf, byte for byte."""
from __future__ import annotations

import subprocess
import sys

from conftest import REPO, local_conf, release_dir
from instructlake.core.lake import RunContext
from instructlake.jobs.runner import run_pipeline

OVERRIDES = ["sources.conala.enabled=true", "sources.mbpp.enabled=true", "export.formats=[json_parts,chat,sharegpt]",
             "spark.shuffle_partitions=1", "products.preference.enabled=true", "products.conversations.enabled=true"]

THROUGH_CONNECT = """
import sys
from instructlake.core.session import get_spark
from instructlake.core.storage import is_connect
from instructlake.jobs.runner import load_config, run_pipeline
conf = load_config(sys.argv[1], sys.argv[2:])
spark = get_spark(conf.spark)
assert is_connect(spark), type(spark)
print("ROWS", run_pipeline(spark, conf).export.total_rows)
"""


def published(out) -> dict[str, bytes]:
    """The dataset's files of the published release (all but the manifest, report and card, which
    name the run)."""
    return {p.name: p.read_bytes() for p in release_dir(out).iterdir() if p.suffix in (".json", ".jsonl") and p.name != "manifest.json"
            and p.name != "report.json"}


def test_the_pipeline_through_spark_connect_equals_a_classic_session(spark, tmp_path):
    classic = local_conf(tmp_path / "classic", *OVERRIDES, products=True)
    run_pipeline(spark, classic, RunContext())
    connect = local_conf(tmp_path / "connect", *OVERRIDES, "spark.remote=local[2]", products=True)
    script = tmp_path / "through_connect.py"
    script.write_text(THROUGH_CONNECT)
    args = [*OVERRIDES, "spark.remote=local[2]", f"paths.lake={connect.paths.lake}", f"paths.output={connect.paths.output}",
            "sources.wikitext.enabled=false", "code.generate.count=0"]
    proc = subprocess.run([sys.executable, str(script), str(REPO / "tests" / "cheap.yaml"), *args],
                          capture_output=True, text=True, cwd=REPO, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    through_connect, through_classic = published(tmp_path / "connect" / "out"), published(tmp_path / "classic" / "out")
    assert set(through_connect) == set(through_classic)
    assert any("preference" in n for n in through_connect) and any("_part" in n for n in through_connect)
    for name, data in through_classic.items():
        assert through_connect[name] == data, name
