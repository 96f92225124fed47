"""mindvis.paths: the one owner of output locations; the inverse lookup jobs use for their inputs."""

from __future__ import annotations

from pathlib import Path

from mindvis import paths


def test_subject_dirs_by_dataset_inverts_preprocessed():
    files = [*paths.preprocessed("/r", "samples", "fmri", dataset="HCP", subject="100307").values(),
             *paths.preprocessed("/r", "fmri", "samples", dataset="GOD", subject="sbj_3").values(),
             *paths.preprocessed("/r", "fmri", dataset="HCP", subject="100206").values()]
    assert paths.subject_dirs_by_dataset(files) == {
        "GOD": ["/r/preprocessed/GOD/sbj_3"],
        "HCP": ["/r/preprocessed/HCP/100206", "/r/preprocessed/HCP/100307"],
    }


def test_log_files_per_rule_and_per_subject():
    assert paths.log_file("/r", "report_summary") == "/r/logs/report_summary.log"
    assert paths.log_file("/r", "generate", "GOD", "sbj_3") == "/r/logs/generate/GOD/sbj_3.log"
    assert Path(paths.stage_b_file("/r", "GOD", "sbj_3")).parent == Path("/r/stage_b/GOD/sbj_3")
