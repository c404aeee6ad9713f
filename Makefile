# The same targets run locally and in CI (.ci/run calls `make test`).
# Every target runs in the project's environment, which `make install` builds from uv.lock.
PY ?= .venv/bin/python
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: install lock stack stack-down lint typecheck unit test demo results clean

install:            ## system packages, uv.lock into .venv (package, plot extra, dev tools), Kafka jars
	scripts/bootstrap

lock:               ## re-resolve uv.lock after editing pyproject.toml's dependencies, then install it
	scripts/bootstrap --relock

stack: install      ## start Kafka (KRaft) + Redis on 127.0.0.1 (idempotent)
	scripts/devstack up

stack-down:         ## stop what `make stack` started
	scripts/devstack down

lint:
	$(PY) -m ruff check stream_warmer tests scripts

typecheck:
	$(PY) -m mypy

unit:               ## unit tests only: no services needed
	$(PY) -m pytest -m "not integration" -q

test: stack lint typecheck  ## everything: lint, types, unit + integration tests against the real stack
	$(PY) -m pytest -q

results:            ## re-render docs/RESULTS.md's tables from the JSON the benchmarks wrote into docs/
	$(PY) scripts/results.py

demo: stack         ## the main job: trainer + warmer over a replayed real trace, live progress
	$(PY) -m stream_warmer demo

clean:
	rm -rf .pytest_cache .mypy_cache .ruff_cache build dist *.egg-info
