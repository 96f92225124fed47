# Generation from held-out fMRI, scoring against the ridge baselines and chance, and the report's summary.

if plan.trains_demo_classifier(CFG):

    rule demo_classifier:
        output:
            model=plan.n_way_classifier(CFG)[0],
            config=str(plan.demo_classifier_dir(CFG) / "config.json"),
        params:
            config_slice=plan.job_params(CFG, "demo_classifier"),
        log:
            f"{RESULTS}/logs/demo_classifier.log",
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
        samples=f"{RESULTS}/preprocessed/{{dataset}}/{{subject}}/samples.parquet",
        fmri=f"{RESULTS}/preprocessed/{{dataset}}/{{subject}}/fmri.npy",
        stimuli=f"{RESULTS}/preprocessed/{{dataset}}/{{subject}}/stimuli.npz",
    output:
        samples=f"{RESULTS}/eval/{{dataset}}/{{subject}}/samples.npz",
        images=directory(f"{RESULTS}/eval/{{dataset}}/{{subject}}/samples"),
        grid=report(f"{RESULTS}/eval/{{dataset}}/{{subject}}/grid.png", caption="../report/captions/grid.rst",
                    category="1. Reconstructions", subcategory="{dataset} {subject}"),
    wildcard_constraints:
        dataset="GOD|BOLD5000",
    params:
        config_slice=plan.job_params(CFG, "generate"),
    message:
        plan.requirement_message(CFG, "generate")
    log:
        f"{RESULTS}/logs/generate/{{dataset}}/{{subject}}.log",
    threads: CFG.resources_for("generate").cpus_per_task
    resources:
        **plan.resources(CFG, "generate"),
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow_scripts/generate.py"


rule ceilings:
    input:
        generated=f"{RESULTS}/eval/{{dataset}}/{{subject}}/samples.npz",
        samples=f"{RESULTS}/preprocessed/{{dataset}}/{{subject}}/samples.parquet",
        model=plan.stage_b_model(CFG),
        ldm=plan.ceilings_ldm(CFG),
        class_index=plan.ldm_class_index(CFG),
    output:
        ceilings=f"{RESULTS}/eval/{{dataset}}/{{subject}}/ceilings.npz",
    wildcard_constraints:
        dataset="GOD|BOLD5000",
    params:
        config_slice=plan.job_params(CFG, "ceilings"),
    log:
        f"{RESULTS}/logs/ceilings/{{dataset}}/{{subject}}.log",
    threads: CFG.resources_for("ceilings").cpus_per_task
    resources:
        **plan.resources(CFG, "ceilings"),
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow_scripts/ceilings.py"


rule evaluate:
    input:
        generated=f"{RESULTS}/eval/{{dataset}}/{{subject}}/samples.npz",
        ceilings=f"{RESULTS}/eval/{{dataset}}/{{subject}}/ceilings.npz",
        samples=f"{RESULTS}/preprocessed/{{dataset}}/{{subject}}/samples.parquet",
        fmri=f"{RESULTS}/preprocessed/{{dataset}}/{{subject}}/fmri.npy",
        stimuli=f"{RESULTS}/preprocessed/{{dataset}}/{{subject}}/stimuli.npz",
        classifier=plan.n_way_classifier(CFG),
        weights=plan.metric_weights(CFG),
    output:
        metrics=f"{RESULTS}/eval/{{dataset}}/{{subject}}/metrics.json",
        per_image=report(f"{RESULTS}/eval/{{dataset}}/{{subject}}/per_image.csv",
                         caption="../report/captions/per_image.rst", category="2. Metrics",
                         subcategory="{dataset} {subject}"),
        comparison=report(f"{RESULTS}/eval/{{dataset}}/{{subject}}/comparison.png",
                          caption="../report/captions/comparison.rst", category="1. Reconstructions",
                          subcategory="{dataset} {subject}"),
        chart=report(f"{RESULTS}/eval/{{dataset}}/{{subject}}/metrics_chart.png",
                     caption="../report/captions/metrics_chart.rst", category="2. Metrics",
                     subcategory="{dataset} {subject}"),
    wildcard_constraints:
        dataset="GOD|BOLD5000",
    params:
        config_slice=plan.job_params(CFG, "evaluate"),
    message:
        plan.requirement_message(CFG, "evaluate")
    log:
        f"{RESULTS}/logs/evaluate/{{dataset}}/{{subject}}.log",
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
        table=report(f"{RESULTS}/report/metrics_table.html", caption="../report/captions/metrics_table.rst",
                     category="2. Metrics"),
        csv=f"{RESULTS}/report/metrics_table.csv",
        curves=report(f"{RESULTS}/report/training_curves.png", caption="../report/captions/training_curves.rst",
                      category="3. Training"),
    log:
        f"{RESULTS}/logs/report_summary.log",
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow_scripts/report_summary.py"
