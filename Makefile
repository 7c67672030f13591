# instructlake: `make run` and `make test` each do all of their own set-up.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
JARS_STAMP := $(VENV)/.jars

.PHONY: setup run test bench peers docs clean distclean check-java system-packages

setup: $(STAMP) $(JARS_STAMP) system-packages

# Debian packages the pipeline and its tests run: bubblewrap (the sandbox that executes
# generated code), chromium (the headless browser of the report test) and a font for the
# text of its pages (fonts-dejavu-core). Installed with apt-get when missing and running as
# root; otherwise a note says what to install.
SYSTEM_PACKAGES := bwrap:bubblewrap chromium:chromium
system-packages:
	@missing=""; for pair in $(SYSTEM_PACKAGES); do \
	  command -v "$${pair%%:*}" >/dev/null || missing="$$missing $${pair#*:}"; \
	done; \
	ls /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf >/dev/null 2>&1 || missing="$$missing fonts-dejavu-core"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  else \
	    echo "note: install the Debian packages$$missing (e.g. 'sudo apt-get install$$missing')" >&2; \
	  fi; \
	fi

check-java:
	@command -v java >/dev/null || { echo "Java 17 or newer is needed (Spark 4): install a JDK, e.g. 'apt-get install openjdk-17-jre-headless'" >&2; exit 1; }

# PyTorch from PyPI is a CUDA build of about 5 GB (no CPU-only wheel is on PyPI). It is
# installed once per machine into a shared folder, ~/.cache/instructlake/torch/<version>-<python>
# (or $$INSTRUCTLAKE_TORCH_DIR/...), and made importable in .venv by a .pth file; pip then sees it
# as installed and every new clone's .venv reuses it.
TORCH_VERSION := $(shell sed -n 's/^torch==//p' constraints.txt)
PY_TAG := $(shell $(PYTHON) -c 'import sys; print("cp%d%d" % sys.version_info[:2])')
TORCH_DIR := $(or $(INSTRUCTLAKE_TORCH_DIR),$(HOME)/.cache/instructlake/torch)/$(TORCH_VERSION)-$(PY_TAG)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	@if [ ! -f "$(TORCH_DIR)/.complete" ]; then \
	  echo "installing torch $(TORCH_VERSION) once for this machine into $(TORCH_DIR)"; \
	  tmp="$(TORCH_DIR).partial.$$$$"; rm -rf "$$tmp" && \
	  $(PY) -m pip install --quiet --target "$$tmp" -c constraints.txt "torch==$(TORCH_VERSION)" && \
	  touch "$$tmp/.complete" && rm -rf "$(TORCH_DIR)" && mv "$$tmp" "$(TORCH_DIR)"; \
	fi
	$(PY) -c 'import site, sys; open(site.getsitepackages()[0] + "/instructlake-torch.pth", "w").write(sys.argv[1] + "\n")' "$(TORCH_DIR)"
	@if ! ls "$(LLAMA_WHEELS)"/*.whl >/dev/null 2>&1; then \
	  command -v c++ >/dev/null || command -v g++ >/dev/null || command -v clang++ >/dev/null || \
	    echo "note: no C++ compiler found; pip needs one to build llama-cpp-python (e.g. 'apt-get install build-essential')" >&2; \
	  echo "building llama-cpp-python $(LLAMA_VERSION) once for this machine into $(LLAMA_WHEELS) (a few minutes)"; \
	  tmp="$(LLAMA_WHEELS).partial.$$$$"; rm -rf "$$tmp" && \
	  CMAKE_ARGS="-DGGML_NATIVE=OFF $(CMAKE_ARGS)" $(PY) -m pip wheel --quiet --no-deps --no-cache-dir -w "$$tmp" "llama-cpp-python==$(LLAMA_VERSION)" && \
	  rm -rf "$(LLAMA_WHEELS)" && mv "$$tmp" "$(LLAMA_WHEELS)"; \
	fi
	$(PY) -m pip install --quiet --no-deps "$(LLAMA_WHEELS)"/*.whl
	$(PY) -m pip install --quiet -c constraints.txt -e '.[spark,test,detoxify,llm,docs,connect,bench]'
	touch $@

# llama-cpp-python (the `llm` extra) comes from PyPI as source only: the first install on a machine
# compiles llama.cpp (about 5 minutes on 2 cores; pip fetches CMake and Ninja itself, a C++ compiler
# must be there) into a wheel kept in ~/.cache/instructlake/wheels (or $$INSTRUCTLAKE_WHEELS_DIR), so
# every later .venv installs it in seconds. It is built with GGML_NATIVE=OFF (the baseline x86-64
# flags with AVX2, not `-march=native`): a virtual machine can list CPU features (AMX, for one) that
# its kernel does not let a process use, and a native build then dies of an illegal instruction.
# Extra CMake flags for that build: `make setup CMAKE_ARGS=...`.
LLAMA_VERSION := $(shell sed -n 's/^llama_cpp_python==//p' constraints.txt)
LLAMA_WHEELS := $(or $(INSTRUCTLAKE_WHEELS_DIR),$(HOME)/.cache/instructlake/wheels)/llama-cpp-python-$(LLAMA_VERSION)-portable-$(PY_TAG)

# The Delta Lake jars, fetched once from Maven Central into ~/.cache/instructlake/jars
# (or $$INSTRUCTLAKE_JARS_DIR); later runs need no network.
$(JARS_STAMP): $(STAMP) core/jars.py
	$(PY) -m instructlake.core.jars
	touch $@

run: check-java setup
	$(VENV)/bin/instructlake run --conf conf/local.yaml

test: check-java setup
	$(VENV)/bin/pytest -q --durations=15 tests

# Cost against input size, instructlake against a single-process script (benchmarks/run_bench.py):
# the data sets go to bench-data/, lakes and results.json to bench-work/. 10^6 dialogues:
# `make bench BENCH_N=1000000` (about 750 MB of data, and up to about 6 GB under bench-work/ while it runs).
# BENCH_HEAP: the JVM's heap (spark.driver.memory, local mode's executor memory).
BENCH_N ?= 10000 100000
BENCH_HEAP ?= 2g
bench: check-java setup
	$(PY) benchmarks/run_bench.py --n $(BENCH_N) --driver-memory $(BENCH_HEAP)

# instructlake against plain Python and DuckDB on the same data, alternating (benchmarks/peers.py):
# `make peers PEERS_N=1000000` is the table of docs/performance.md (about 15 minutes).
PEERS_N ?= 100000
peers: check-java setup
	$(PY) benchmarks/peers.py --n $(PEERS_N) --rounds 2

# The documentation site (mkdocs.yml, docs/) into site/; --strict fails on a broken link or page.
docs: setup
	$(VENV)/bin/mkdocs build --strict --site-dir site

clean:
	rm -rf lake out spark-warehouse .pytest_cache bench-work

distclean: clean
	rm -rf $(VENV)
