"""`instructlake qa-check` as a Spark application: `spark-submit jobs/qa_check.py --input FILE --output DIR
[--conf FILE] [--set KEY=VALUE ...]`."""
from instructlake.jobs.cli import submit

if __name__ == "__main__":
    submit("qa-check")
