# Raw datasets -> the preprocessed-data contract, one job per dataset and subject.


rule preprocess_hcp:
    input:
        lambda wc: plan.raw_inputs(CFG, "HCP", wc.subject),
    output:
        **plan.preprocessed_outputs(CFG, "HCP"),
    params:
        config_slice=plan.job_params(CFG, "preprocess_hcp"),
    log:
        paths.log_file(RESULTS, "preprocess_hcp", "{subject}"),
    resources:
        **plan.resources(CFG, "preprocess_hcp"),
    conda:
        "../envs/data.yaml"
    script:
        "../workflow_scripts/preprocess_hcp.py"


rule preprocess_god:
    input:
        lambda wc: plan.raw_inputs(CFG, "GOD", wc.subject),
    output:
        **plan.preprocessed_outputs(CFG, "GOD"),
    params:
        config_slice=plan.job_params(CFG, "preprocess_god"),
    log:
        paths.log_file(RESULTS, "preprocess_god", "{subject}"),
    resources:
        **plan.resources(CFG, "preprocess_god"),
    conda:
        "../envs/data.yaml"
    script:
        "../workflow_scripts/preprocess_god.py"


rule preprocess_bold5000:
    input:
        lambda wc: plan.raw_inputs(CFG, "BOLD5000", wc.subject),
    output:
        **plan.preprocessed_outputs(CFG, "BOLD5000"),
    params:
        config_slice=plan.job_params(CFG, "preprocess_bold5000"),
    log:
        paths.log_file(RESULTS, "preprocess_bold5000", "{subject}"),
    resources:
        **plan.resources(CFG, "preprocess_bold5000"),
    conda:
        "../envs/data.yaml"
    script:
        "../workflow_scripts/preprocess_bold5000.py"


rule preprocess_nsd:
    input:
        lambda wc: plan.raw_inputs(CFG, "NSD", wc.subject),
    output:
        **plan.preprocessed_outputs(CFG, "NSD"),
    params:
        config_slice=plan.job_params(CFG, "preprocess_nsd"),
    log:
        paths.log_file(RESULTS, "preprocess_nsd", "{subject}"),
    resources:
        **plan.resources(CFG, "preprocess_nsd"),
    conda:
        "../envs/data.yaml"
    script:
        "../workflow_scripts/preprocess_nsd.py"
