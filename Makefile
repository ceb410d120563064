# The two set-up commands: `make demo` (install, then run the main job on the
# embedded defaults) and `make test` (install, then run every test).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
EXAMPLE := examples/daily-papers-mar-11.txt

.PHONY: install demo test bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/newsletter render $(EXAMPLE)
	@echo "Open the files above, or preview in the browser with:"
	@echo "  $(BIN)/newsletter preview $(EXAMPLE)"

test: install
	bash tests/ensure-tools.sh
	$(BIN)/python -m pytest -ra

bench: install
	$(BIN)/python bench/render.py

clean:
	rm -rf $(VENV) out *.egg-info .pytest_cache
