# mindvis: the commands a user types. Everything runs inside .venv, which these targets create.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
CORES  ?= 2
RESULTS ?= results
export MLFLOW_DISABLE_TELEMETRY := true

# Demo weights shipped in demo/pretrained: remade by their own rules with the budgets in config.yaml.
PRETRAINS := $(RESULTS)/demo-pretrains

.PHONY: venv demo demo-pretrains test test-fast test-cluster ui lint dag report bench clean

# The stamp is rebuilt when pyproject.toml changes, so `make test` also updates an old .venv.
$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

venv: $(BIN)/.installed

demo: venv  ## run the whole workflow on the embedded demo data
	$(BIN)/snakemake --cores $(CORES)

demo-pretrains: venv  ## remake the demo LDM + classifier shipped in demo/pretrained (about an hour on 2 cores)
	$(BIN)/snakemake --cores $(CORES) $(PRETRAINS)/ldm_pretrain/model.ckpt \
		$(PRETRAINS)/demo_classifier/model.safetensors --config 'demo_data={pretrained: null}' results_root=$(PRETRAINS)
	$(BIN)/python -m mindvis.demo.pretrained $(PRETRAINS) demo/pretrained

test: venv  ## unit + workflow tests (the CI command)
	$(BIN)/python -m pytest -q

test-fast: venv  ## unit tests only
	$(BIN)/python -m pytest -q -m "not slow and not cluster"

# The SLURM executor plugin is an optional extra, kept out of `make test`'s environment: where SLURM commands exist
# but no controller answers, importing it costs ~10 s per snakemake call.
$(BIN)/.installed-cluster: $(BIN)/.installed
	$(BIN)/python -m pip install --quiet -e '.[cluster]'
	touch $@

test-cluster: $(BIN)/.installed-cluster  ## the workflow through profiles/slurm on a local SLURM (root; installs SLURM if missing)
	cluster/test.sh

ui: venv  ## browse runs in the embedded MLflow store
	$(BIN)/mlflow ui --backend-store-uri sqlite:///$(abspath $(RESULTS))/mlflow.db --port 5000

lint: venv
	$(BIN)/snakemake --lint

dag: venv
	$(BIN)/snakemake -n

report: venv
	$(BIN)/snakemake --cores $(CORES) --report $(RESULTS)/report.html

clean:
	rm -rf $(RESULTS) .snakemake data/demo
