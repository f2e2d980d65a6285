# edgebot: `make demo` shows the whole job on real data; `make test` runs every test.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.install.stamp
DEBS   := mosquitto mosquitto-clients xz-utils openssl rsyslog rsyslog-gnutls

.PHONY: install lint test test-fast fuzz demo bench detection detection-quick pi-check clean debs bundle model-card leave-out

install: $(STAMP)

# Debian packages the tests need (a real MQTT broker, a real rsyslog); installed only when run as root and missing.
debs:
	@missing=""; for p in $(DEBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	  else \
	    echo "missing Debian packages:$$missing (run 'sudo apt-get install$$missing'; broker tests will be skipped)"; \
	  fi; \
	fi

$(STAMP): setup.cfg pyproject.toml
	$(MAKE) debs
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[all]' --config-settings editable_mode=compat
	touch $(STAMP)

# Linters first (seconds), then every test.
test: install lint
	$(PY) -m pytest -q

lint: install
	$(PY) -m ruff check .
	$(PY) -m mypy edgebot

test-fast: install
	$(PY) -m pytest -q -m "not tf and not slow"

# The fuzz tests (tests/edge/test_fuzz_*.py) with the long Hypothesis profile: fresh random examples,
# 20 times the fixed, derandomized budget they run with in `make test` (tests/fuzzing.py).
fuzz: install
	HYPOTHESIS_PROFILE=fuzz $(PY) -m pytest -q --hypothesis-show-statistics tests/edge/test_fuzz_*.py

# The default bundle shipped in the package (edgebot/default_bundle/, committed): the full
# configuration on the default training set (edgebot.datasets.default_training), fixed seed, via the
# train and convert CLI; then its model card (benchmarks/model_card.json, docs/model-card.md).
# SOURCE_DATE_EPOCH (the last commit touching data/) fixes the manifest's "created".
# LEAVE_OUT=1 also trains the card's leave-family-out run (Hakai, full configuration) and its
# leave-device-out run (5 folds in the quick configuration: five full trainings would take ~30 min
# on 2 cores; the card says which configuration each figure comes from).
BUNDLE_RUN := build/default-run
LEAVE_OUT_RUNS := build/leave-out-hakai build/leave-device-out
bundle: install
	SOURCE_DATE_EPOCH=$$(git log -1 --format=%ct -- data 2>/dev/null || echo 0) nice -n 10 $(PY) -m edgebot.cli train \
	  $$($(PY) -m edgebot.shipped --training-files) --out $(BUNDLE_RUN) $$($(PY) -m edgebot.shipped --train-args) --force
	SOURCE_DATE_EPOCH=$$(git log -1 --format=%ct -- data 2>/dev/null || echo 0) nice -n 10 $(PY) -m edgebot.cli convert \
	  $(BUNDLE_RUN) --out edgebot/default_bundle --force
	if [ -n "$(LEAVE_OUT)" ]; then $(MAKE) leave-out; fi
	$(MAKE) model-card

leave-out: install
	nice -n 10 $(PY) -m edgebot.cli train $$($(PY) -m edgebot.shipped --training-files) --out build/leave-out-hakai \
	  --split leave-out:Hakai --seed 0 --force
	nice -n 10 $(PY) -m edgebot.cli train $$($(PY) -m edgebot.shipped --training-files) --out build/leave-device-out \
	  --split leave-device-out:5 --seed 0 --quick --force

# The card reports the leave-out runs found in build/ (make leave-out); without them it says so.
model-card: install
	nice -n 10 $(PY) benchmarks/model_card.py --bundle edgebot/default_bundle \
	  $(foreach d,$(wildcard $(LEAVE_OUT_RUNS)),--leave-out-run $(d))

demo: install
	$(PY) -m edgebot.demo

# Figures for benchmarks/RESULTS.md, measured on the bundle that `make demo` builds.
bench: install
	$(PY) -m pip install -q -r benchmarks/requirements.txt
	test -f demo-out/bundle/manifest.json || $(PY) -m edgebot.demo
	$(PY) benchmarks/run_bench.py demo-out/bundle --run-dir demo-out/run

# The detection study: rebuilds benchmarks/detection/results.json, its figures and benchmarks/DETECTION.md.
detection: install
	$(PY) benchmarks/detection/run.py

# The same study in the quick configuration (subsampled captures, few epochs, fewer matrix rows).
detection-quick: install
	$(PY) benchmarks/detection/run.py --quick

# The wheel with the edge extra on emulated aarch64 (qemu-user, Debian's arm64 python3.11) vs x86-64;
# downloads into build/pi-check. What it proves and what not: docs/deploy-raspberry-pi.md.
pi-check: install
	test -f demo-out/bundle/manifest.json || $(PY) -m edgebot.demo
	$(PY) benchmarks/pi_check/run.py --bundle demo-out/bundle

clean:
	rm -rf build dist *.egg-info demo-out runs .pytest_cache
