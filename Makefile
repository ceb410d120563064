# The two set-up commands: `make demo` (install, then run the main job on the
# embedded defaults: the example list, the example day, the outbox sender)
# and `make test` (install, then run every test).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
EXAMPLE := examples/daily-papers-mar-11.txt

.PHONY: install demo test bench docs clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: install .env
	$(BIN)/newsletter subscribers import subscribers/example.csv
	$(BIN)/newsletter send $(EXAMPLE)
	@echo
	@echo "The messages are .eml files under outbox/<date>/ (open one in any mail program)."
	@echo "See the issue in the browser:  $(BIN)/newsletter preview $(EXAMPLE)   then open http://127.0.0.1:8001/"
	@echo "  (one reader's own copy, their picks and links:  add --as ada@example.com)"
	@echo "Run the web app (unsubscribe links, past issues):  $(BIN)/newsletter serve   then open http://127.0.0.1:8000/"

# A first .env: the documented defaults plus a fresh random secret key.
.env:
	sed "s|^NEWSLETTER_SECRET_KEY=$$|NEWSLETTER_SECRET_KEY=$$($(PYTHON) -c 'import secrets; print(secrets.token_urlsafe(32))')|" .env.example > .env
	@echo "Created .env with a new random NEWSLETTER_SECRET_KEY (keep it: it signs the unsubscribe links)"

test: install
	bash tests/ensure-tools.sh
	$(BIN)/python -m pytest -ra -n 2 --dist loadfile --no-loadscope-reorder

# The documentation site, into site/ (`$(BIN)/mkdocs serve -a 127.0.0.1:8002` shows it while you edit).
docs: install
	$(BIN)/mkdocs build --strict

bench: install
	$(BIN)/python bench/render.py
	$(BIN)/python bench/email_look.py
	$(BIN)/python bench/tldr.py
	$(BIN)/python bench/send.py
	$(BIN)/python bench/import_lock.py
	$(BIN)/python bench/picks_eval.py
	$(BIN)/python bench/picks.py
	$(BIN)/python bench/weekly.py
	$(BIN)/python bench/search.py
	$(BIN)/python bench/admin.py

clean:
	rm -rf $(VENV) out outbox site *.egg-info .pytest_cache
