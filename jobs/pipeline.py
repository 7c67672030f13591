"""The whole pipeline as a Spark application: `spark-submit jobs/pipeline.py --conf FILE [--set KEY=VALUE ...]`,
with the arguments of `instructlake run` (the stages: `instructlake.jobs.runner`)."""
from instructlake.jobs.cli import submit

if __name__ == "__main__":
    submit("run")
