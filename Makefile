# Two commands on a fresh machine: `make demo` and `make test`. Both set up .venv first.
VENV  := .venv
BIN   := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench clean

$(STAMP): pyproject.toml setup.py src/minewatch/sources/_fastpcap.c src/minewatch/sources/_fastcsv.c scripts/bootstrap.sh
	bash scripts/bootstrap.sh
	touch $@

demo: $(STAMP)
	$(BIN)/minewatch demo

# Real exporters for the flow-record tests (softflowd -> nfcapd on loopback), Java for Spark.
TEST_TOOLS := nfdump:nfdump softflowd:softflowd java:openjdk-17-jre-headless

test: $(STAMP)
	bash scripts/apt-need.sh $(TEST_TOOLS)
	$(BIN)/python -m pytest

bench: $(STAMP)
	bash scripts/apt-need.sh ndpiReader:libndpi-bin
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) build demo-output bench/out src/minewatch/sources/*.so
