# `make app` and `make test` build .venv from requirements.txt when it is missing or older, then run.
PY := .venv/bin/python
PORT ?= 8501

.PHONY: app test test-integrations bench clean-venv

.venv/stamp: requirements.txt
	python3 -m venv .venv
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch .venv/stamp

app: .venv/stamp
	$(PY) -m streamlit run app/main.py --server.port $(PORT) --server.headless true --browser.gatherUsageStats false

test: .venv/stamp
	$(PY) -m pytest -q -n 2 tests

# Each export run by the real tool, each in its own venv under .venv-int/ (built from tests/integrations/*.txt on
# first use, about 1.5 GB each; a run took 24 minutes on two shared cores rebuilding three of the five venvs);
# TOOLS="litgpt" runs one.
test-integrations: .venv/stamp
	bash tests/integrations/run.sh $(TOOLS)

# Speed benchmarks; each rewrites its own section of bench/RESULTS.md (run them on a quiet machine; bench_startup and
# bench_suite say how idle they found the cores). bench_suite runs `make test` alone and beside two busy loops. (The validation study,
# `python -m train_backend study --preset quick|full --jobs 2`, trains for hours and is run by hand.)
bench: .venv/stamp
	$(PY) bench/bench_fit.py --write
	$(PY) bench/bench_frontier.py
	$(PY) bench/bench_trainer.py
	$(PY) bench/bench_app.py --write
	$(PY) bench/bench_startup.py --write
	$(PY) bench/bench_suite.py --write

clean-venv:
	rm -rf .venv
