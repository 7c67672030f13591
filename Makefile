# instructlake: `make run` and `make test` each do all of their own set-up.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
JARS_STAMP := $(VENV)/.jars

.PHONY: setup run test clean distclean check-java

setup: $(STAMP) $(JARS_STAMP)

check-java:
	@command -v java >/dev/null || { echo "Java 17 or newer is needed (Spark 4): install a JDK, e.g. 'apt-get install openjdk-17-jre-headless'" >&2; exit 1; }

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[test]'
	touch $@

# The Delta Lake jars, fetched once from Maven Central into ~/.cache/instructlake/jars
# (or $$INSTRUCTLAKE_JARS_DIR); later runs need no network.
$(JARS_STAMP): $(STAMP) jobs/jars.py
	$(PY) -m jobs.jars
	touch $@

run: check-java setup
	$(VENV)/bin/instructlake run --conf conf/local.yaml

test: check-java setup
	$(VENV)/bin/pytest -q tests

clean:
	rm -rf lake out spark-warehouse .pytest_cache

distclean: clean
	rm -rf $(VENV)
