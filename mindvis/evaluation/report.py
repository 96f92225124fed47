"""Summary pages for `snakemake --report`: the metrics of every evaluated subject in one table, and the training
curves of the latest training jobs read back from the MLflow store.

`summarize_results(results_root, metrics_files=...)` (the `report_summary` rule, with its declared inputs) writes to
`<results_root>/report/`:
    metrics_table.html   one self-contained table: per dataset / subject, MinD-Vis, the ridge baselines and chance
                         for every metric (best method per metric in bold, direction in the header), with the n of
                         the n-way metric, the skipped metrics and their reasons
    metrics_table.csv    the same numbers, one row per dataset / subject / method
    training_curves.png  one panel per training job (ldm_pretrain, demo_classifier, stage_a_*, stage_b_finetune):
                         its logged loss curves (left axis) and validation scores (right axis) against the step

The curves come from the latest FINISHED run of each job (rule + wildcards) in the store: the job whose outputs
are in results_root, also when a later workflow invocation found it up to date and did not rerun it. Per-subject
jobs are shown only for the subjects whose metrics are summarised.
"""

from __future__ import annotations

import html
import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from mindvis.errors import InputDataError  # noqa: E402
from mindvis.evaluation.ceilings import STAGE_LABELS, STAGES  # noqa: E402
from mindvis.evaluation.figures import METHOD_LABELS  # noqa: E402
from mindvis.evaluation.metrics import HIGHER_IS_BETTER, METRIC_NAMES  # noqa: E402
from mindvis.evaluation.scoring import MINDVIS, RETRIEVAL, RIDGE  # noqa: E402
from mindvis.io import atomic_directory  # noqa: E402
from mindvis.paths import EVAL_FILES, REPORT_DIR, REPORT_FILES  # noqa: E402
from mindvis.tracking import target_for  # noqa: E402

log = logging.getLogger(__name__)

TABLE_HTML, TABLE_CSV, CURVES_PNG = REPORT_FILES["table"], REPORT_FILES["csv"], REPORT_FILES["curves"]
# Jobs whose curves are shown, in pipeline order.
TRAINING_RULES = ("ldm_pretrain", "demo_classifier", "stage_a_pretrain", "stage_a_finetune", "stage_b_finetune")
METHODS = (MINDVIS, RIDGE, RETRIEVAL, "chance")
# The per-stage ceilings' rows (metrics.json "ceilings"; stage (d) is the MinD-Vis row itself).
CEILING_ROWS = {f"ceiling:{stage}": STAGE_LABELS[stage] for stage in STAGES if stage != MINDVIS}
ROW_LABELS = {**METHOD_LABELS, **CEILING_ROWS}
# The NSD papers' table (Brain-Diffuser, MindEye 1/2): their columns, in their order, with their headers; two-way
# identification as a percentage.
NSD_PAPER_COLUMNS: dict[str, str] = {"pixcorr": "PixCorr", "ssim": "SSIM", "alexnet2": "Alex(2)", "alexnet5": "Alex(5)",
                                     "inception": "Incep", "clip": "CLIP", "effnet_dist": "Eff", "swav_dist": "SwAV"}
NSD_PERCENT = ("alexnet2", "alexnet5", "inception", "clip")
# Logged series that are not training curves: schedules, throughput, Lightning's epoch counter.
_NOT_CURVES = ("lr", "samples_per_s", "epoch")


# ---------------------------------------------------------------------------------------------- metrics table

def find_metrics(results_root: str | os.PathLike[str]) -> list[Path]:
    """Every `<results_root>/eval/<dataset>/<subject>/metrics.json`, sorted."""
    return sorted(Path(results_root).glob(f"eval/*/*/{EVAL_FILES['metrics']}"))


def _read_metrics(path: Path) -> dict[str, Any]:
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputDataError(f"cannot read evaluation results ({exc})", path=path,
                             expected="a metrics.json written by the evaluate rule",
                             hint="rerun the evaluate rule for this subject") from exc
    if not isinstance(document, dict) or MINDVIS not in document or "chance" not in document:
        raise InputDataError("not an evaluation result", path=path, expected="metrics.json of the evaluate rule",
                             hint="rerun the evaluate rule for this subject")
    return document


def metrics_frame(paths: Iterable[Path]) -> pd.DataFrame:
    """One row per dataset / subject / method (mindvis, baselines, chance, then the per-stage ceilings where
    metrics.json has them); columns n_way, n_test (a ceiling's: the test images it covers), n_samples and every
    metric any subject has (NaN where a row lacks it)."""
    rows = []
    for path in paths:
        document = _read_metrics(path)
        where = {"dataset": path.parent.parent.name, "subject": path.parent.name, "n_way": document.get("n_way")}
        for method in METHODS:
            if method not in document:
                continue
            rows.append({**where, "method": method, "n_test": document.get("n_test"),
                         "n_samples": document.get("n_samples") if method == MINDVIS else 1, **document[method]})
        ceilings = document.get("ceilings", {})
        for stage in (stage for stage in STAGES if stage != MINDVIS and stage in ceilings):
            values = {k: v for k, v in ceilings[stage].items() if k != "n_images"}
            rows.append({**where, "method": f"ceiling:{stage}", "n_test": ceilings[stage]["n_images"],
                         "n_samples": 1 if stage != "class_conditioned" else document.get("n_samples"), **values})
    frame = pd.DataFrame(rows, columns=["dataset", "subject", "method", "n_way", "n_test", "n_samples",
                                        *METRIC_NAMES])
    absent = [name for name in METRIC_NAMES if frame[name].isna().all()]
    return frame.drop(columns=absent)


def _best_methods(group: pd.DataFrame, metric: str) -> set[str]:
    """Methods (not chance, not the ceilings) with the best value of `metric` in one subject's rows."""
    scored = group[group["method"].isin(METHODS[:-1]) & group[metric].notna()]
    if scored.empty:
        return set()
    best = scored[metric].max() if HIGHER_IS_BETTER[metric] else scored[metric].min()
    return set(scored.loc[np.isclose(scored[metric], best), "method"])


def metrics_table_html(frame: pd.DataFrame, notes: dict[tuple[str, str], list[str]]) -> str:
    """A self-contained HTML page with the metrics table (see module docstring) and per-subject notes."""
    metrics = [m for m in METRIC_NAMES if m in frame.columns]
    head = "".join(f"<th title='{'higher' if HIGHER_IS_BETTER[m] else 'lower'} is better'>{html.escape(m)} "
                   f"{'&uarr;' if HIGHER_IS_BETTER[m] else '&darr;'}</th>" for m in metrics)
    body = []
    for (dataset, subject), group in frame.groupby(["dataset", "subject"], sort=True):
        best = {m: _best_methods(group, m) for m in metrics}
        for i, row in enumerate(group.itertuples(index=False)):
            row = row._asdict()
            label = (f"<td rowspan='{len(group)}'>{html.escape(dataset)}</td>"
                     f"<td rowspan='{len(group)}'>{html.escape(subject)}</td>") if i == 0 else ""
            cells = []
            for m in metrics:
                value = row[m]
                text = "&ndash;" if pd.isna(value) else f"{value:.3f}" if abs(value) < 100 else f"{value:.1f}"
                cells.append(f"<td><b>{text}</b></td>" if row["method"] in best[m] else f"<td>{text}</td>")
            css = (" class='chance'" if row["method"] == "chance" else
                   " class='ceiling'" if row["method"] in CEILING_ROWS else "")
            body.append(f"<tr{css}>{label}<td>{html.escape(ROW_LABELS[row['method']])}</td>{''.join(cells)}</tr>")
    note_items = "".join(f"<li><b>{html.escape(d)} {html.escape(s)}</b>: {'; '.join(html.escape(t) for t in texts)}"
                         f"</li>" for (d, s), texts in sorted(notes.items()))
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>mindvis metrics</title>
<style>
body {{ font-family: sans-serif; font-size: 13px; margin: 1em; }}
table {{ border-collapse: collapse; }}
th, td {{ border: 1px solid #ccc; padding: 3px 7px; text-align: right; }}
th {{ background: #f0f0f0; }}
td:nth-child(-n+3) {{ text-align: left; }}
tr.chance td {{ color: #777; font-style: italic; }}
tr.ceiling td {{ color: #345; background: #f6f8fb; }}
</style></head><body>
<h3>Reconstruction metrics: MinD-Vis against ridge baselines and chance</h3>
<p>Bold: best method per subject and metric (chance excluded); arrows: direction of better.
MinD-Vis scores are means over its samples per test image (n-way: mean, and max over samples).
Ridge baselines are fitted on the same subject's training split and scored on the same test images.
Shaded rows are the per-stage ceilings (the same test images through the LDM's autoencoder, and the class-conditioned
LDM told the true class): a large drop from one stage to the next shows which part of the chain limits the result.</p>
<table><thead><tr><th>dataset</th><th>subject</th><th>method</th>{head}</tr></thead>
<tbody>{''.join(body)}</tbody></table>
<ul>{note_items}</ul>
{nsd_papers_table(frame)}
</body></html>
"""


def nsd_papers_table(frame: pd.DataFrame) -> str:
    """The NSD subjects' rows (MinD-Vis, baselines, chance) as the NSD papers print them: PixCorr, SSIM, Alex(2),
    Alex(5), Incep, CLIP (two-way identification in %), Eff, SwAV; a dash where a metric was skipped. "" without
    NSD subjects."""
    rows = frame[(frame["dataset"] == "NSD") & frame["method"].isin(METHODS)]
    if rows.empty:
        return ""
    head = "".join(f"<th>{html.escape(label)} {'&uarr;' if HIGHER_IS_BETTER[m] else '&darr;'}</th>"
                   for m, label in NSD_PAPER_COLUMNS.items())
    body = []
    for row in rows.itertuples(index=False):
        row = row._asdict()
        cells = []
        for metric in NSD_PAPER_COLUMNS:
            value = row.get(metric, np.nan)
            text = ("&ndash;" if pd.isna(value) else f"{100 * value:.1f}%" if metric in NSD_PERCENT
                    else f"{value:.3f}")
            cells.append(f"<td>{text}</td>")
        body.append(f"<tr><td>{html.escape(row['subject'])}</td><td>{html.escape(ROW_LABELS[row['method']])}</td>"
                    f"{''.join(cells)}</tr>")
    return (f"<h3>NSD subjects in the NSD papers' layout</h3><table><thead><tr><th>subject</th><th>method</th>{head}"
            f"</tr></thead><tbody>{''.join(body)}</tbody></table>")


def _notes(path: Path) -> list[str]:
    """Per-subject facts a reader needs beside the numbers: n, counts, classifier, skipped metrics."""
    document = _read_metrics(path)
    notes = [f"{document.get('n_test')} test images x {document.get('n_samples')} samples, "
             f"{document.get('n_way')}-way top-1 (classifier: {document.get('classifier') or 'none'})"]
    if "fid_n_images" in document:
        notes.append("FID over " + ", ".join(f"{k} {v}" for k, v in document["fid_n_images"].items())
                     + " images (biased at this size; compare only equal counts)")
    skipped = document.get("skipped", {})
    if skipped:
        notes.append("skipped: " + "; ".join(f"{m} ({reason})" for m, reason in skipped.items()))
    for stage, reason in document.get("ceilings", {}).get("skipped", {}).items():
        notes.append(f"ceiling {STAGE_LABELS.get(stage, stage)} not computed: {reason}")
    return notes


# -------------------------------------------------------------------------------------------- training curves

def latest_training_runs(tracking_uri: str, experiment: str,
                         subjects: set[tuple[str, str]] | None = None) -> list[Any]:
    """The latest FINISHED MLflow run of every training job (one per rule + wildcards), in pipeline order.

    `subjects` ((dataset, subject) pairs): keep per-subject jobs of these only (None: of every subject).
    """
    from mlflow import MlflowClient  # heavy import, only when curves are drawn

    client = MlflowClient(tracking_uri=tracking_uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return []
    runs = client.search_runs([found.experiment_id], "tags.`mindvis.kind` = 'job' and attributes.status = 'FINISHED'",
                              order_by=["attributes.start_time DESC"], max_results=5000)
    latest: dict[str, Any] = {}
    for run in runs:
        tags = run.data.tags
        pair = (tags.get("mindvis.wildcard.dataset"), tags.get("mindvis.wildcard.subject"))
        if subjects is not None and pair != (None, None) and pair not in subjects:
            continue
        if tags.get("mindvis.rule") in TRAINING_RULES:
            latest.setdefault(run.info.run_name, run)
    return sorted(latest.values(), key=lambda r: (TRAINING_RULES.index(r.data.tags["mindvis.rule"]),
                                                  r.info.run_name))


def _curve_names(run: Any) -> list[str]:
    return sorted(name for name in run.data.metrics if "/" in name and not name.endswith(_NOT_CURVES))


def training_curves_figure(tracking_uri: str, experiment: str,
                           subjects: set[tuple[str, str]] | None = None) -> plt.Figure:
    """One panel per training job (of `subjects`, see latest_training_runs): loss series on the left axis (log
    scale), other scores on the right."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    panels = []
    for run in latest_training_runs(tracking_uri, experiment, subjects):
        series = {}
        for name in _curve_names(run):
            history = sorted(client.get_metric_history(run.info.run_id, name), key=lambda m: (m.step, m.timestamp))
            if len(history) > 1:
                series[name] = ([m.step for m in history], [m.value for m in history])
        if series:
            panels.append((run.info.run_name, series))
    if not panels:
        return _message_figure(f"no finished training runs with curves in {tracking_uri}")
    n_cols = 2 if len(panels) > 1 else 1
    n_rows = -(-len(panels) // n_cols)
    figure, axes = plt.subplots(n_rows, n_cols, figsize=(6.5 * n_cols, 3.0 * n_rows), squeeze=False)
    for ax, (title, series) in zip(axes.flat, panels, strict=False):  # more panels than jobs
        _draw_panel(ax, title, series)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    figure.tight_layout()
    return figure


def _message_figure(text: str) -> plt.Figure:
    figure, ax = plt.subplots(figsize=(7, 1.2))
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=9)
    return figure


def _draw_panel(ax: plt.Axes, title: str, series: dict[str, tuple[list[int], list[float]]]) -> None:
    losses = {k: v for k, v in series.items() if "loss" in k}
    scores = {k: v for k, v in series.items() if "loss" not in k}
    colours = iter(plt.rcParams["axes.prop_cycle"].by_key()["color"] * 3)
    handles = []
    for name, (steps, values) in losses.items():
        handles += ax.plot(steps, values, color=next(colours), linewidth=1, label=name)
    if losses:
        positive = [v for _, values in losses.values() for v in values if v > 0]
        if positive and len(positive) == sum(len(v) for _, v in losses.values()) and \
                max(positive) > 10 * min(positive):
            ax.set_yscale("log")  # losses falling over decades
        ax.set_ylabel("loss")
    if scores:
        right = ax.twinx() if losses else ax
        for name, (steps, values) in scores.items():
            handles += right.plot(steps, values, color=next(colours), linewidth=1, marker="o", markersize=3,
                                  label=name)
        right.set_ylabel("score")
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("step")
    ax.legend(handles=handles, fontsize=7, loc="best")


# ---------------------------------------------------------------------------------------------------- the job

def summarize_results(results_root: str | os.PathLike[str], tracking_uri: str | None = None,
                      experiment: str = "mindvis",
                      metrics_files: Iterable[str | os.PathLike[str]] | None = None) -> dict[str, Path]:
    """Write the report summary files (module docstring) to `<results_root>/report/`, atomically.

    Args:
        results_root: the workflow's results directory; the summary goes to its report/ folder.
        tracking_uri: the MLflow store; None = the embedded `sqlite:///<results_root>/mlflow.db`.
        experiment: the MLflow experiment name (config tracking.experiment).
        metrics_files: the eval/<dataset>/<subject>/metrics.json files to summarise (the rule's inputs: the
            configured subjects only); None = every one found under results_root.
    Returns:
        {"metrics_table_html", "metrics_table_csv", "training_curves"}: the written files.
    """
    results_root = Path(results_root)
    target = target_for(results_root, tracking_uri, experiment)
    paths = find_metrics(results_root) if metrics_files is None else sorted(Path(p) for p in metrics_files)
    subjects = None if metrics_files is None else {(p.parent.parent.name, p.parent.name) for p in paths}
    if not paths:
        log.warning("no metrics.json under %s/eval: the metrics table is empty", results_root)
    frame = metrics_frame(paths)
    notes = {(p.parent.parent.name, p.parent.name): _notes(p) for p in paths}
    embedded_store = results_root / "mlflow.db"
    if tracking_uri is None and not embedded_store.is_file():
        log.warning("no MLflow store at %s: the training curves figure is empty", embedded_store)
        figure = _message_figure(f"no MLflow store at {embedded_store}")
    else:
        figure = training_curves_figure(target.uri, experiment, subjects)
    out_dir = results_root / REPORT_DIR
    with atomic_directory(out_dir) as tmp:
        (tmp / TABLE_HTML).write_text(metrics_table_html(frame, notes))
        frame.to_csv(tmp / TABLE_CSV, index=False, float_format="%.6g")
        figure.savefig(tmp / CURVES_PNG, dpi=100)
    plt.close(figure)
    log.info("report summary of %d evaluated subjects written to %s", len(paths), out_dir)
    return {"metrics_table_html": out_dir / TABLE_HTML, "metrics_table_csv": out_dir / TABLE_CSV,
            "training_curves": out_dir / CURVES_PNG}
