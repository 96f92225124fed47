# One MLflow parent run per invocation (DESIGN.md, "Tracking"). Nothing here is a declared output.
# Imports stay inside the handlers: importing mlflow costs seconds that a dry run (which runs none) should not pay.


onstart:
    # Files that only some jobs read (pretrained LDM, metric weights...) are demanded here, before any job starts,
    # and only when such a job is about to run (mindvis.plan.check_requirements).
    plan.check_requirements(CFG, {job.rule.name for job in workflow.dag.needrun_jobs()})

    from mindvis.config import git_commit
    from mindvis.tracking import start_pipeline_run, target_from_config

    start_pipeline_run(target_from_config(CFG), CFG.as_dict(), git_commit(workflow.basedir))


onsuccess:
    from mindvis.tracking import end_pipeline_run, target_from_config

    end_pipeline_run(target_from_config(CFG), success=True)


onerror:
    from mindvis.tracking import end_pipeline_run, target_from_config

    end_pipeline_run(target_from_config(CFG), success=False)
