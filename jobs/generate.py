"""The generate stage as a Spark application: `spark-submit jobs/generate.py --conf FILE [--set KEY=VALUE ...]`,
with the arguments of `instructlake generate`."""
from instructlake.jobs.cli import submit

if __name__ == "__main__":
    submit("generate")
