# koha-gateway: `make run` starts the demo gateway, `make test` runs the whole test suite.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
DEMO_DB  := var/demo.sqlite
DEMO_URL := sqlite:///$(CURDIR)/$(DEMO_DB)
STAMP  := $(VENV)/.installed

.PHONY: run test venv lint format bench bench-guard deb check-config clean docs docs-check

venv: $(STAMP)

$(STAMP): setup.cfg pyproject.toml setup.py
	@$(PYTHON) -c 'import venv, ensurepip' 2>/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -q && apt-get install -y -q python3-venv; \
	  else echo "Python's venv module is missing: sudo apt-get install python3-venv" >&2; exit 1; fi; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q --config-settings editable_mode=compat -e '.[test,mysql]' psycopg2-binary
	touch $@

$(DEMO_DB): | $(STAMP)
	mkdir -p var
	$(BIN)/koha-gateway-admin --database $(DEMO_URL) init
	$(BIN)/koha-gateway-admin --database $(DEMO_URL) load-demo

var/tls/server.pem: | $(STAMP)
	$(BIN)/python -m koha_gateway.certs --out var/tls --kiosk kiosk-01

run: $(STAMP) $(DEMO_DB) var/tls/server.pem
	@echo "koha-gateway: RAW SIP2 on 127.0.0.1:6001, telnet on 127.0.0.1:8023, TLS on 127.0.0.1:6443"
	@echo "              try: telnet localhost 8023   (login joe, password joes)"
	$(BIN)/twistd -n --pidfile= koha-gateway --sip-config conf/SIPconfig.xml --database $(DEMO_URL)

check-config: $(STAMP) $(DEMO_DB)
	$(BIN)/twistd -n --pidfile= koha-gateway --sip-config conf/SIPconfig.xml --database $(DEMO_URL) --check-config

test: $(STAMP) var/tls/server.pem
	$(BIN)/python -m pytest

# The suite under Debian bookworm's system Python and packaged libraries (Twisted 22.4, lxml 4.9,
# bcrypt 3.2, pyOpenSSL 23.0, service-identity 18.1, ldap3 2.9, psycopg2 2.9.5, cryptography 38,
# pytest 7.2, hypothesis 6.67): the versions the Debian package runs on. Installs the missing
# python3-* packages when run as root (tests/debian_versions.sh). To keep CI time down (about
# 2.5 minutes instead of 10), the default runs every test on SQLite and, on PostgreSQL and
# MariaDB, only the database layer (tests/db: psycopg2 and MySQLdb themselves); the end-to-end
# variants repeat the SQLite ones through the same driver. `make test-debian-versions DEBIAN_VERSIONS_ARGS=` runs all.
DEBIAN_VERSIONS_ARGS ?= -k "not postgresql and not mysql or db"
.PHONY: test-debian-versions
test-debian-versions:
	tests/debian_versions.sh $(DEBIAN_VERSIONS_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .

# The documentation site (mkdocs.yml, docs/): the configuration reference is written from the
# configuration readers' own tables first; --strict fails on a broken link or a page missing
# from the navigation. `make docs-check` fails when docs/configuration.md is out of date.
DOCS_STAMP := $(VENV)/.docs-installed
REFERENCE  := $(BIN)/python -c 'import sys; from koha_gateway.config.reference import main; sys.exit(main(sys.argv[1:]))'

$(DOCS_STAMP): $(STAMP)
	$(BIN)/pip install -q --config-settings editable_mode=compat -e '.[test,mysql,docs]'
	touch $@

docs: $(DOCS_STAMP)
	$(REFERENCE) --write docs/configuration.md
	$(BIN)/mkdocs build --strict --site-dir site

docs-check: $(STAMP)
	$(REFERENCE) --check docs/configuration.md

bench: $(STAMP)
	$(BIN)/python bench/sip_mix.py

# CI guard (under 90 s): the gateway's SQLite saturation throughput as a share of the canned-answer
# ceiling's, measured in the same run, must stay above half of the share in bench/RESULTS.md.
bench-guard: $(STAMP)
	$(BIN)/python bench/guard.py

deb:
	tests/debian/build-deb.sh dist

clean:
	rm -rf $(VENV) var build dist site *.egg-info .pytest_cache
