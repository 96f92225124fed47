# One MLflow parent run per invocation (DESIGN.md, "Tracking"). Nothing here is a declared output.
from mindvis.config import git_commit
from mindvis.tracking import end_pipeline_run, start_pipeline_run, target_from_config


onstart:
    start_pipeline_run(target_from_config(CFG), CFG.as_dict(), git_commit(workflow.basedir))


onsuccess:
    end_pipeline_run(target_from_config(CFG), success=True)


onerror:
    end_pipeline_run(target_from_config(CFG), success=False)
