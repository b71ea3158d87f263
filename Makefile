# The two commands: `make run` and `make test`. Each installs what it needs (uv + the lock file).
# `make chaos`: the chaos suite (tests/chaos, not part of `make test`), its figures printed; CI runs it after `make test`.
UV ?= $(shell command -v uv 2>/dev/null || echo $(HOME)/.local/bin/uv)
PYTEST_ARGS ?=

.PHONY: run test chaos bench screenshots docs install

install:
	@command -v uv >/dev/null 2>&1 || [ -x "$(UV)" ] || python3 -m pip install --quiet --user uv || python3 -m pip install --quiet uv
	@$(UV) sync --frozen --quiet

run: install
	@$(UV) run --frozen python -m shared.devstack run

test: install
	@$(UV) run --frozen pytest $(PYTEST_ARGS)

chaos: install
	@$(UV) run --frozen pytest tests/chaos -s -p no:cacheprovider $(PYTEST_ARGS)

bench: install
	@$(UV) run --frozen python -m bench

screenshots: install
	@$(UV) run --frozen python -m tests.browser.screenshots

# docs/reference (OpenAPI of both HTTP APIs, AsyncAPI of the topics) regenerated from the code, then the site
docs: install
	@$(UV) run --frozen fileshare schemas --write docs/reference
	@$(UV) run --frozen mkdocs build --strict
