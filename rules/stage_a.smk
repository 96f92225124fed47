# Stage A: SC-MBM pretraining on HCP (+ GOD train fMRI) and tuning per target subject. Resume state lives in
# <results_root>/.resume/<rule>/..., outside the outputs, so a killed job continues from its last checkpoint.

if CFG.stage_a.pretrained is None:

    rule stage_a_pretrain:
        input:
            plan.stage_a_pretrain_inputs(CFG),
        output:
            model=paths.stage_a_pretrain_file(RESULTS, "model.safetensors"),
            config=paths.stage_a_pretrain_file(RESULTS, "config.json"),
        params:
            config_slice=plan.job_params(CFG, "stage_a_pretrain"),
            resume_dir=paths.resume_dir(RESULTS, "stage_a_pretrain"),
        log:
            paths.log_file(RESULTS, "stage_a_pretrain"),
        threads: CFG.resources_for("stage_a_pretrain").cpus_per_task
        resources:
            **plan.training_resources(CFG, "stage_a_pretrain"),
        conda:
            "../envs/torch.yaml"
        script:
            "../workflow_scripts/stage_a_pretrain.py"


rule stage_a_finetune:
    input:
        init=plan.stage_a_init(CFG),
        **paths.preprocessed(RESULTS, "samples", "fmri"),
    output:
        model=paths.stage_a_finetune_file(RESULTS, "model.safetensors"),
        config=paths.stage_a_finetune_file(RESULTS, "config.json"),
    wildcard_constraints:
        dataset="GOD|BOLD5000|NSD",
    params:
        config_slice=plan.job_params(CFG, "stage_a_finetune"),
        resume_dir=lambda wc: paths.resume_dir(RESULTS, "stage_a_finetune", wc.dataset, wc.subject),
    message:
        plan.requirement_message(CFG, "stage_a_finetune")
    log:
        paths.log_file(RESULTS, "stage_a_finetune", "{dataset}", "{subject}"),
    threads: CFG.resources_for("stage_a_finetune").cpus_per_task
    resources:
        **plan.training_resources(CFG, "stage_a_finetune"),
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow_scripts/stage_a_finetune.py"
