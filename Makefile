# The same targets run locally and in CI (.ci/run calls `make test`).
PY ?= python3
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: install stack stack-down lint typecheck unit test demo bench evaluate clean

install:            ## install system packages, the package and its dev tools, the Kafka jars
	scripts/bootstrap

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

demo: stack         ## the main job: trainer + warmer over a replayed real trace, live progress
	$(PY) -m stream_warmer demo

clean:
	rm -rf .pytest_cache .mypy_cache .ruff_cache build dist *.egg-info
