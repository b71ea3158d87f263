# The two commands: `make run` and `make test`. Each installs what it needs (uv + the lock file).
UV ?= $(shell command -v uv 2>/dev/null || echo $(HOME)/.local/bin/uv)
PYTEST_ARGS ?=

.PHONY: run test bench screenshots install

install:
	@command -v uv >/dev/null 2>&1 || [ -x "$(UV)" ] || python3 -m pip install --quiet --user uv || python3 -m pip install --quiet uv
	@$(UV) sync --frozen --quiet

run: install
	@$(UV) run --frozen fileshare run

test: install
	@$(UV) run --frozen pytest $(PYTEST_ARGS)

bench: install
	@$(UV) run --frozen python -m bench

screenshots: install
	@$(UV) run --frozen python -m tests.browser.screenshots
