"""Dry-run cost of the real-data DAG: `snakemake -n` over 1205 HCP + 5 GOD + 4 BOLD5000 subjects.

Raw inputs are empty placeholder files in the real layouts (a dry run only stats them). The baseline is a bare
Snakefile with the same number of jobs (one rule per subject + 2), timed in the same run. Prints JSON.

    python benchmarks/bench_dryrun.py [--hcp-subjects 1205] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BOLD5000_ROIS = ("EarlyVis", "LOC", "OPA", "PPA", "RSC")


def touch(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()


def make_placeholder_data(root: Path, n_hcp: int) -> None:
    """Empty files where the real datasets keep theirs (enough for subject discovery and input lists)."""
    for i in range(n_hcp):
        subject = str(100000 + i)
        run = "REST1_LR"
        touch(root / "HCP" / subject / "MNINonLinear" / "Results" / f"rfMRI_{run}" /
              f"rfMRI_{run}_Atlas_MSMAll_hp2000_clean.dtseries.nii")
    god = root / "Kamitani" / "npz"
    for name in ("images_256.npz", "imagenet_class_index.json", "imagenet_training_label.csv",
                 "imagenet_testing_label.csv", *(f"sbj_{n}.npz" for n in range(1, 6))):
        touch(god / name)
    betas = root / "BOLD5000" / "BOLD5000_GLMsingle_ROI_betas" / "py"
    stimuli = root / "BOLD5000" / "BOLD5000_Stimuli"
    touch(stimuli / "Scene_Stimuli" / "repeated_stimuli_113_list.txt")
    for n in range(1, 5):
        for hemi in ("LH", "RH"):
            for roi in BOLD5000_ROIS:
                touch(betas / f"CSI{n}_GLMbetas-TYPED-FITHRF-GLMDENOISE-RR_allses_{hemi}{roi}.npy")
        touch(stimuli / "Stimuli_Presentation_Lists" / f"CSI{n}" / f"CSI{n}_sess01" / "run01.txt")
    for name in ("model.ckpt", "config.yaml"):
        touch(root / "pretrains" / "ldm" / "label2img" / name)


def bare_snakefile(path: Path, n_jobs: int) -> None:
    path.write_text(f"""
rule all:
    input: "done.txt"
rule collect:
    input: expand("out/{{i}}.txt", i=range({n_jobs - 2}))
    output: "done.txt"
    shell: "touch {{output}}"
rule one:
    output: "out/{{i}}.txt"
    shell: "touch {{output}}"
""")


def time_command(cmd: list[str], cwd: Path, repeats: int) -> tuple[float, str]:
    seconds = []
    out = ""
    for _ in range(repeats):
        start = time.perf_counter()
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
        seconds.append(time.perf_counter() - start)
        if proc.returncode != 0:
            sys.exit(f"command failed: {' '.join(cmd)}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        out = proc.stdout
    return statistics.median(seconds), out


def job_counts(summary: str) -> dict[str, int]:
    """{rule: jobs} from the first job-stats table of `snakemake -n --quiet rules`."""
    counts: dict[str, int] = {}
    for line in summary.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            if parts[0] in counts:
                break
            counts[parts[0]] = int(parts[1])
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hcp-subjects", type=int, default=1205)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    snakemake = str(Path(sys.executable).with_name("snakemake"))
    env_note = {"cpu_count": os.cpu_count()}
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        make_placeholder_data(tmp_path / "data", args.hcp_subjects)
        config = tmp_path / "config.yaml"
        config.write_text(json.dumps({
            "demo": False, "data_root": str(tmp_path / "data"), "results_root": str(tmp_path / "results"),
            "stage_b": {"pretrained_ldm": str(tmp_path / "data" / "pretrains" / "ldm" / "label2img")}}))
        mindvis_s, out = time_command([snakemake, "-n", "--quiet", "rules", "--configfile", str(config)], ROOT,
                                      args.repeats)
        bare_dir = tmp_path / "bare"
        bare_dir.mkdir()
        n_jobs = args.hcp_subjects + 2
        bare_snakefile(bare_dir / "Snakefile", n_jobs)
        bare_s, _ = time_command([snakemake, "-n", "--quiet", "rules", "-s", "Snakefile"], bare_dir, args.repeats)
    print(json.dumps({
        "benchmark": "snakemake_dry_run",
        "hcp_subjects": args.hcp_subjects, "god_subjects": 5, "bold5000_subjects": 4,
        "mindvis_dry_run_s": round(mindvis_s, 3),
        "bare_dag_jobs": n_jobs, "bare_dry_run_s": round(bare_s, 3),
        "ratio_vs_bare": round(mindvis_s / bare_s, 2),
        "target_s": 5.0,
        "job_counts": job_counts(out),
        **env_note,
    }, indent=2))


if __name__ == "__main__":
    main()
