# mindvis: MinD-Vis as one workflow. `snakemake --cores 2` runs the embedded demo end to end;
# see README.md for real data, single stages and clusters. Rules wire; workflow_scripts adapt; mindvis/ computes.
import os
import sys

from snakemake.utils import min_version

min_version("9.0")

# Jobs import mindvis from this checkout, also inside --sdm conda environments and on cluster nodes.
sys.path.insert(0, workflow.basedir)
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [workflow.basedir, os.environ.get("PYTHONPATH")]))


configfile: "config.yaml"


from mindvis import plan
from mindvis.config import resolve

CFG = resolve(config, source="config")
RESULTS = str(CFG.results_root)


wildcard_constraints:
    subject=r"[^/]+",


include: "rules/tracking.smk"
include: "rules/demo.smk"
include: "rules/preprocess.smk"


rule all:
    default_target: True
    input:
        plan.final_outputs(CFG),
