# The two commands a new user needs: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
DEMO_CACHE = tests/data/esri/sample_cache
DEMO_STATUS = $(VENV)/demo/Status.gdb
DEMO_PAGE = $(VENV)/demo/Status.html

.PHONY: demo test lint bench clean vendor-js

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@ $(VENV)/.installed

## demo: install, rebuild the status of the shipped Esri sample cache, show it, write its page
demo: $(VENV)/.installed
	$(BIN)/cachestatus info $(DEMO_CACHE)
	$(BIN)/cachestatus rebuild $(DEMO_CACHE) --status $(DEMO_STATUS) --progress
	$(BIN)/cachestatus summary $(DEMO_CACHE) --status $(DEMO_STATUS)
	$(BIN)/cachestatus html $(DEMO_CACHE) --status $(DEMO_STATUS) --out $(DEMO_PAGE)
	@echo "Status written to $(DEMO_STATUS) (open it in QGIS, ArcGIS Pro or with ogrinfo),"
	@echo "and as a page to open in a browser: $(DEMO_PAGE)"

## test: install with the test extras and run the whole suite, then lint and type-check.
## TEST_JOBS test processes (pytest-xdist; each test file runs whole in one of them, so its
## caches and servers are made once); TEST_JOBS=0 runs the suite in this process.
TEST_JOBS ?= 2
test: $(VENV)/.installed-test
	$(BIN)/python -m pytest -n $(TEST_JOBS) --dist loadfile
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy

lint: $(VENV)/.installed-test
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy

## bench: the benchmarks (build their caches under /tmp once: about 3 GB)
bench: $(VENV)/.installed
	$(BIN)/python benchmarks/bench_rebuild.py
	$(BIN)/python benchmarks/bench_report.py

## vendor-js: rebuild the OpenLayers bundle the HTML report embeds (needs Node and npm; the
## built files are committed, so neither users nor CI need them)
REPORT_STATIC = src/cachestatus/reportpage/static
vendor-js:
	cd js && npm ci --no-audit --no-fund && npm run build
	cp js/node_modules/ol/ol.css $(REPORT_STATIC)/ol.css
	cp js/node_modules/ol/LICENSE.md $(REPORT_STATIC)/LICENSE-openlayers.txt
	node -p "require('./js/node_modules/ol/package.json').version" > $(REPORT_STATIC)/ol-version.txt

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
