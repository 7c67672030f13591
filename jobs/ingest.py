"""The ingest stage as a Spark application: `spark-submit jobs/ingest.py --conf FILE [--set KEY=VALUE ...]`,
with the arguments of `instructlake ingest`."""
from instructlake.jobs.cli import submit

if __name__ == "__main__":
    submit("ingest")
