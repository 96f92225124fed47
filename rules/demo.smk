# Embedded demo: deterministic synthetic raw data in the real datasets' layouts under demo_data.root.
if CFG.demo:

    rule demo_synthesize:
        output:
            plan.demo_files(CFG),
        params:
            config_slice=plan.job_params(CFG, "demo_synthesize"),
        log:
            paths.log_file(RESULTS, "demo_synthesize"),
        resources:
            **plan.resources(CFG, "demo_synthesize"),
        conda:
            "../envs/data.yaml"
        script:
            "../workflow_scripts/demo_synthesize.py"
