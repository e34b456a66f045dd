# enpire — the README's commands. Everything installs into ./.venv and ./ws/{build,install}.
SHELL := /bin/bash
RUN := scripts/run
PYTEST_ARGS ?=

.PHONY: setup demo test lint format bench lock clean

setup:
	@scripts/setup.sh

demo: setup
	@$(RUN) enpire demo $(DEMO_ARGS)

test: setup
	@$(RUN) python -m pytest $(PYTEST_ARGS)

lint: setup
	@$(RUN) ruff check . && $(RUN) ruff format --check .

format: setup
	@$(RUN) ruff format . && $(RUN) ruff check --fix .

bench: setup
	@$(RUN) python bench/reset_latency.py

lock:
	@scripts/lock.sh

clean:
	rm -rf ws/build ws/install ws/log

distclean: clean
	rm -rf .venv
