# Generation from held-out fMRI, scoring against the ridge baselines and chance, and the report's summary.

if plan.trains_demo_classifier(CFG):

    rule demo_classifier:
        output:
            model=plan.n_way_classifier(CFG)[0],
            config=str(plan.demo_classifier_dir(CFG) / "config.json"),
        params:
            config_slice=plan.job_params(CFG, "demo_classifier"),
            resume_dir=paths.resume_dir(RESULTS, "demo_classifier"),
        log:
            paths.log_file(RESULTS, "demo_classifier"),
        threads: CFG.resources_for("demo_classifier").cpus_per_task
        resources:
            **plan.resources(CFG, "demo_classifier"),
        conda:
            "../envs/torch.yaml"
        script:
            "../workflow_scripts/demo_classifier.py"


rule generate:
    input:
        model=plan.stage_b_model(CFG),
        **paths.preprocessed(RESULTS, "samples", "fmri", "stimuli"),
    output:
        samples=paths.eval_file(RESULTS, "samples"),
        images=directory(paths.eval_file(RESULTS, "images")),
        grid=report(paths.eval_file(RESULTS, "grid"), caption="../report/captions/grid.rst",
                    category="1. Reconstructions", subcategory="{dataset} {subject}"),
    wildcard_constraints:
        dataset="GOD|BOLD5000|NSD",
    params:
        config_slice=plan.job_params(CFG, "generate"),
    message:
        plan.requirement_message(CFG, "generate")
    log:
        paths.log_file(RESULTS, "generate", "{dataset}", "{subject}"),
    threads: CFG.resources_for("generate").cpus_per_task
    resources:
        **plan.resources(CFG, "generate"),
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow_scripts/generate.py"


rule ceilings:
    input:
        generated=paths.eval_file(RESULTS, "samples"),
        **paths.preprocessed(RESULTS, "samples"),
        model=plan.stage_b_model(CFG),
        ldm=plan.ceilings_ldm(CFG),
        class_index=plan.ldm_class_index(CFG),
    output:
        ceilings=paths.eval_file(RESULTS, "ceilings"),
    wildcard_constraints:
        dataset="GOD|BOLD5000|NSD",
    params:
        config_slice=plan.job_params(CFG, "ceilings"),
    log:
        paths.log_file(RESULTS, "ceilings", "{dataset}", "{subject}"),
    threads: CFG.resources_for("ceilings").cpus_per_task
    resources:
        **plan.resources(CFG, "ceilings"),
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow_scripts/ceilings.py"


rule evaluate:
    input:
        generated=paths.eval_file(RESULTS, "samples"),
        ceilings=paths.eval_file(RESULTS, "ceilings"),
        **paths.preprocessed(RESULTS, "samples", "fmri", "stimuli"),
        classifier=plan.n_way_classifier(CFG),
        weights=plan.metric_weights(CFG),
    output:
        metrics=paths.eval_file(RESULTS, "metrics"),
        per_image=report(paths.eval_file(RESULTS, "per_image"),
                         caption="../report/captions/per_image.rst", category="2. Metrics",
                         subcategory="{dataset} {subject}"),
        comparison=report(paths.eval_file(RESULTS, "comparison"),
                          caption="../report/captions/comparison.rst", category="1. Reconstructions",
                          subcategory="{dataset} {subject}"),
        chart=report(paths.eval_file(RESULTS, "chart"),
                     caption="../report/captions/metrics_chart.rst", category="2. Metrics",
                     subcategory="{dataset} {subject}"),
    wildcard_constraints:
        dataset="GOD|BOLD5000|NSD",
    params:
        config_slice=plan.job_params(CFG, "evaluate"),
    message:
        plan.requirement_message(CFG, "evaluate")
    log:
        paths.log_file(RESULTS, "evaluate", "{dataset}", "{subject}"),
    threads: CFG.resources_for("evaluate").cpus_per_task
    resources:
        **plan.resources(CFG, "evaluate"),
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow_scripts/evaluate.py"


# Reads the MLflow store and the metrics files: light, and run where Snakemake runs (not submitted to a cluster).
localrules:
    report_summary,


rule report_summary:
    input:
        plan.metrics_files(CFG),
    output:
        table=report(paths.report_file(RESULTS, "table"), caption="../report/captions/metrics_table.rst",
                     category="2. Metrics"),
        csv=paths.report_file(RESULTS, "csv"),
        curves=report(paths.report_file(RESULTS, "curves"), caption="../report/captions/training_curves.rst",
                      category="3. Training"),
    log:
        paths.log_file(RESULTS, "report_summary"),
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow_scripts/report_summary.py"
