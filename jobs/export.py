"""The export stage as a Spark application: `spark-submit jobs/export.py --conf FILE [--set KEY=VALUE ...]`,
with the arguments of `instructlake export`."""
from instructlake.jobs.cli import submit

if __name__ == "__main__":
    submit("export")
