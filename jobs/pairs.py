"""The pairs stage as a Spark application: `spark-submit jobs/pairs.py --conf FILE [--set KEY=VALUE ...]`,
with the arguments of `instructlake pairs`."""
from instructlake.jobs.cli import submit

if __name__ == "__main__":
    submit("pairs")
