# mindvis: MinD-Vis as one workflow. `snakemake --cores 2` runs the embedded demo end to end;
# see README.md for real data, single stages and clusters. Rules wire; workflow_scripts adapt; mindvis/ computes.
import sys

from snakemake.utils import min_version

min_version("9.0")

# mindvis is imported from this checkout: here, in jobs, in --sdm conda environments and on cluster nodes.
sys.path.insert(0, workflow.basedir)


configfile: "config.yaml"


from snakemake.utils import update_config

from mindvis import paths, plan
from mindvis.config import read_command_line, resolve

# --config values arrive as text (`demo=false`, `'evaluation={n_trials: 500}'`): read them as YAML does.
update_config(config, read_command_line(workflow.config_settings.config))
plan.share_checkout_with_jobs(workflow.basedir)
CFG = resolve(config, source="config")
RESULTS = str(CFG.results_root)


report: "report/workflow.rst"


wildcard_constraints:
    subject=r"[^/]+",


include: "rules/tracking.smk"
include: "rules/demo.smk"
include: "rules/preprocess.smk"
include: "rules/stage_a.smk"
include: "rules/stage_b.smk"
include: "rules/evaluate.smk"


rule all:
    default_target: True
    input:
        plan.final_outputs(CFG),
