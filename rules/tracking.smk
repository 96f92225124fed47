# One MLflow parent run per invocation (DESIGN.md, "Tracking"). Nothing here is a declared output.
# Imports stay inside the handlers: importing mlflow costs seconds that a dry run (which runs none) should not pay.


onstart:
    from mindvis.config import git_commit
    from mindvis.tracking import start_pipeline_run, target_from_config

    start_pipeline_run(target_from_config(CFG), CFG.as_dict(), git_commit(workflow.basedir))


onsuccess:
    from mindvis.tracking import end_pipeline_run, target_from_config

    end_pipeline_run(target_from_config(CFG), success=True)


onerror:
    from mindvis.tracking import end_pipeline_run, target_from_config

    end_pipeline_run(target_from_config(CFG), success=False)
