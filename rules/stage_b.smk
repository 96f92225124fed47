# Stage B: the fMRI-conditioned latent diffusion model (DC-LDM), fine-tuned per target subject from its A2 encoder
# and a pretrained label2img LDM (real: stage_b.pretrained_ldm; demo: ldm_pretrain trains a tiny stand-in).
# stage_b.finetuned (a MinD-Vis finetuned.pth) skips training: generate reads it directly.

if plan.trains_demo_ldm(CFG):

    rule ldm_pretrain:
        output:
            ckpt=str(plan.demo_ldm_dir(CFG) / "model.ckpt"),
            config=str(plan.demo_ldm_dir(CFG) / "config.yaml"),
            class_index=plan.ldm_class_index(CFG)[0],
        params:
            config_slice=plan.job_params(CFG, "ldm_pretrain"),
            resume_dir=paths.resume_dir(RESULTS, "ldm_pretrain"),
        log:
            paths.log_file(RESULTS, "ldm_pretrain"),
        threads: CFG.resources_for("ldm_pretrain").cpus_per_task
        resources:
            **plan.training_resources(CFG, "ldm_pretrain"),
        conda:
            "../envs/torch.yaml"
        script:
            "../workflow_scripts/ldm_pretrain.py"


if CFG.stage_b.finetuned is None:

    rule stage_b_finetune:
        input:
            encoder=paths.stage_a_finetune_file(RESULTS, "model.safetensors"),
            ldm=plan.pretrained_ldm(CFG),  # empty when missing: onstart names the key if this job is to run
            **paths.preprocessed(RESULTS, "samples", "fmri", "stimuli"),
        output:
            model=paths.stage_b_file(RESULTS),
        wildcard_constraints:
            dataset="GOD|BOLD5000|NSD",
        params:
            config_slice=plan.job_params(CFG, "stage_b_finetune"),
            resume_dir=lambda wc: paths.resume_dir(RESULTS, "stage_b_finetune", wc.dataset, wc.subject),
        message:
            plan.requirement_message(CFG, "stage_b_finetune")  # None (the usual job listing) when all is there
        log:
            paths.log_file(RESULTS, "stage_b_finetune", "{dataset}", "{subject}"),
        threads: CFG.resources_for("stage_b_finetune").cpus_per_task
        resources:
            **plan.training_resources(CFG, "stage_b_finetune"),
        conda:
            "../envs/torch.yaml"
        script:
            "../workflow_scripts/stage_b_finetune.py"
