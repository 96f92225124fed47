"""Planning from the config alone: what each job reads (its params), and the files demanded only where used."""

import re
from pathlib import Path

import pytest

from mindvis import paths, plan
from mindvis.config import resolve
from mindvis.config.build import to_dict
from mindvis.errors import ConfigError
from mindvis.workflow import job_config

ROOT = Path(__file__).resolve().parents[1]
DEMO = resolve({})


def _rules_in_workflow() -> set[str]:
    text = "".join(path.read_text() for path in (ROOT / "rules").glob("*.smk"))
    return set(re.findall(r"^\s*rule (\w+):", text, flags=re.MULTILINE))


def _changed(cfg_a, cfg_b) -> set[str]:
    """Rules whose params differ between two configs."""
    return {rule for rule in plan.JOB_READS if plan.job_params(cfg_a, rule) != plan.job_params(cfg_b, rule)}


def test_every_rule_passes_the_values_its_job_reads():
    rules = _rules_in_workflow()
    assert rules == set(plan.JOB_READS)
    text = "".join(path.read_text() for path in (ROOT / "rules").glob("*.smk"))
    for rule in rules - {"report_summary"}:  # report_summary reads its inputs and the MLflow store only
        assert f'config_slice=plan.job_params(CFG, "{rule}")' in text, rule


def test_job_params_are_the_resolved_slices_in_config_shape():
    params = plan.job_params(DEMO, "preprocess_god")
    assert params == {"demo": True, "demo_data": {"root": "data/demo"},
                      "preprocess": {"god": {"roi": "VC", "normalization": "scalar"}, "image_size": 64}}
    assert plan.job_params(resolve({"demo": False, "data_root": "/raw"}), "preprocess_hcp")["data_root"] == "/raw"
    generate = plan.job_params(DEMO, "generate")  # preset values filled in, values of other sections included
    assert generate == {"stage_b": {"sampling": {"scheduler": "ddim", "steps": 20, "n_samples": 2, "batch_size": 5}},
                        "seed": 2022, "evaluation": {"device": "auto"}}
    assert plan.job_params(DEMO, "stage_b_finetune")["trainer"] == to_dict(DEMO.trainer)


@pytest.mark.parametrize(("change", "rules"), [
    ({"preprocess": {"hcp": {"window_frames": 8}}}, {"preprocess_hcp"}),
    ({"evaluation": {"n_trials": 500}}, {"evaluate"}),
    ({"evaluation": {"device": "cpu"}}, {"evaluate", "generate", "ceilings"}),
    ({"seed": 1}, {"generate", "ceilings"}),
    ({"evaluation": {"demo_classifier": {"epochs": 5}}}, {"demo_classifier", "evaluate"}),
    ({"preprocess": {"image_size": 32}}, {"preprocess_god", "preprocess_bold5000", "preprocess_nsd",
                                          "ldm_pretrain", "demo_classifier", "stage_b_finetune"}),  # LDM size follows
    ({"stage_a": {"finetune": {"epochs": 9}}}, {"stage_a_finetune"}),
    ({"stage_b": {"sampling": {"scheduler": "plms"}}}, {"ldm_pretrain", "stage_b_finetune", "generate",
                                                         "ceilings"}),
    ({"stage_b": {"sampling": {"n_samples": 4}}}, {"generate", "ceilings"}),
    ({"trainer": {"precision": "32"}}, {"stage_a_pretrain", "stage_a_finetune", "ldm_pretrain", "stage_b_finetune",
                                        "demo_classifier"}),
    ({"trainer": {"devices": 2}}, {"stage_a_pretrain", "stage_a_finetune", "stage_b_finetune"}),
    ({"demo_data": {"hcp": {"frames": 100}}}, {"demo_synthesize"}),
    ({"demo_data": {"god": {"n_test_categories": 20}}}, {"demo_synthesize", "ldm_pretrain", "demo_classifier"}),
    ({"resources": {"evaluate": {"gpu": 0, "mem_mb": 999}}}, set()),
    ({"tracking": {"log_every_n_steps": 1, "experiment": "other"}}, set()),
    ({"preset": "demo"}, set()),  # the preset in force anyway
])
def test_a_changed_value_changes_the_params_of_exactly_the_jobs_that_read_it(change, rules):
    assert _changed(DEMO, resolve(change)) == rules


def test_dropping_a_dataset_changes_no_params():
    # demo_synthesize only loses outputs (the other datasets' demo files stay); stage_a_pretrain loses inputs
    assert _changed(DEMO, resolve({"datasets": ["HCP", "GOD"]})) == set()


def test_a_job_config_is_its_params_plus_where_it_writes():
    cfg = job_config(plan.job_params(DEMO, "generate"), resolve({"results_root": "/r", "evaluation": {"n_trials": 3}}))
    assert cfg.stage_b.sampling == DEMO.stage_b.sampling and cfg.seed == 2022
    assert paths.launch_dir(cfg.results_root) == Path("/r/.launch") and cfg.tracking.experiment == "mindvis"
    with pytest.raises(ConfigError, match="evaluation.n_trials"):
        int(cfg.evaluation.n_trials)


# ---------------------------------------------------------------------------------- files demanded where used

def test_real_data_without_an_ldm_plans_every_stage_and_only_stage_b_has_a_problem():
    cfg = resolve({"demo": False})
    assert plan.pretrained_ldm(cfg) == []  # no parse-time error: the DAG builds
    assert [p.path for p in plan.requirement_problems(cfg, "stage_b_finetune")] == ["stage_b.pretrained_ldm"]
    for rule in ("preprocess_hcp", "preprocess_god", "stage_a_pretrain", "stage_a_finetune", "generate", "evaluate"):
        assert plan.requirement_problems(cfg, rule) == [], rule
        assert plan.requirement_message(cfg, rule) is None
    plan.check_requirements(cfg, ["preprocess_hcp", "preprocess_god", "stage_a_pretrain"])
    with pytest.raises(ConfigError, match="Stage B needs a pretrained latent diffusion model") as err:
        plan.check_requirements(cfg, ["preprocess_god", "stage_b_finetune", "evaluate"])
    assert err.value.path == "stage_b.pretrained_ldm"
    message = plan.requirement_message(cfg, "stage_b_finetune")
    assert message.startswith("stage_b_finetune cannot run: stage_b.pretrained_ldm")


def test_configured_files_are_inputs_when_present_and_problems_of_their_rule_when_not(tmp_path):
    alexnet = tmp_path / "alexnet.pth"
    alexnet.write_bytes(b"weights")
    ldm = tmp_path / "label2img"
    ldm.mkdir()
    cfg = resolve({"demo": False, "stage_b": {"pretrained_ldm": str(ldm)},
                   "evaluation": {"weights": {"alexnet": str(alexnet), "clip": str(tmp_path / "clip.bin")}}})
    assert plan.pretrained_ldm(cfg) == [str(ldm)] and plan.metric_weights(cfg) == [str(alexnet)]
    assert plan.requirement_problems(cfg, "stage_b_finetune") == []
    problems = plan.requirement_problems(cfg, "evaluate")
    assert [p.path for p in problems] == ["evaluation.weights.clip"]
    assert "metric-network weights not found" in str(problems[0]) and "set evaluation.weights.clip: null" in str(
        problems[0])
    plan.check_requirements(cfg, ["stage_b_finetune", "generate"])
    with pytest.raises(ConfigError, match="evaluation.weights.clip"):
        plan.check_requirements(cfg, ["evaluate"])

    missing = resolve({"demo": False, "stage_a": {"pretrained": str(tmp_path / "a.pth")},
                       "stage_b": {"finetuned": str(tmp_path / "finetuned.pth")}})
    assert plan.stage_a_init(missing) == [] and plan.stage_b_model(missing) == []
    assert [p.path for p in plan.requirement_problems(missing, "stage_a_finetune")] == ["stage_a.pretrained"]
    assert [p.path for p in plan.requirement_problems(missing, "generate")] == ["stage_b.finetuned"]


def test_the_demo_trains_its_own_ldm():
    assert plan.pretrained_ldm(DEMO) == [str(plan.demo_ldm_dir(DEMO) / "model.ckpt")]
    assert plan.requirement_problems(DEMO, "stage_b_finetune") == []


def test_stage_a1_reads_the_training_fmri_of_the_datasets_it_includes():
    def datasets_read(cfg):
        return {Path(f).parent.parent.name for f in plan.stage_a_pretrain_inputs(cfg)}

    assert datasets_read(DEMO) == {"HCP", "GOD"}  # include_god_train: true, include_nsd_train: false (MinD-Vis)
    with_nsd = resolve({"stage_a": {"pretrain": {"include_nsd_train": True, "include_god_train": False}}})
    assert datasets_read(with_nsd) == {"HCP", "NSD"}
