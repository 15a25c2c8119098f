"""Paper 1's ablation ladder: `python -m landslide ladder --data D --out R` (common.papers).

Six rungs (configs/landslide/RUNG.yaml) x the folds of the k-fold protocol, each as `train --fold
K` trains it; then the rung with the best mean F1 exported to int8 (its best fold).

    R/settings.json          data folder, --quick, --set overrides (a rerun must match them)
    R/data/                  --quick only: the sample data set (`python -m landslide sample`)
    R/RUNG/fold_K/           the run of one rung on one fold (a `train` run directory)
    R/RUNG/fold_K/model_int8.tflite, export_report.json   the best rung's best fold, exported
    R/ladder.md, ladder.json mean +- std over the folds of precision, recall, F1 and the IoUs,
                             paper 1's published numbers beside each rung, the data named
"""

from pathlib import Path

from common import papers
from common.errors import RunDirError

RUNGS = ["unet_ce", "features", "residual", "attention", "multires", "full"]
ADDS = {
    "unet_ce": "U-Net, cross-entropy (baseline)",
    "features": "+ engineered bands",
    "residual": "+ residual convolutions",
    "attention": "+ multi-head self-attention",
    "multires": "+ three output resolutions",
    "full": "+ focal + IoU loss (the paper's model)",
}
# metrics.json keys shown, in order, with their titles; IoU keys that a run's metrics.json lacks
# show as "-". The published number of F1 and mIoU stands right after their column.
TITLES = {"precision": "precision", "recall": "recall", "f1": "F1",
          "iou_landslide": "IoU landslide", "miou": "mIoU (2 classes)",
          "miou_per_image": "mIoU per image"}
METRICS = list(TITLES)
PUBLISHED_KEYS = ("f1", "miou")
# Paper 1 (arXiv 2312.16717, ../shared/docs/PAPERS.md), fractions. The paper states its best
# model's F1 and mIoU and its gains over its own U-Net+CE baseline (+10.5 F1, +8.8 mIoU); the
# other rungs' numbers are not given there. Which mIoU definition it uses is not stated.
PUBLISHED = {
    "unet_ce": {"f1": 0.7357, "miou": 0.6727,
                "note": "84.07 - 10.5 F1, 76.07 - 8.8 mIoU (the stated gains)"},
    "full": {"f1": 0.8407, "miou": 0.7607, "params": 24.8e6,
             "note": "the paper's best model, about 24.8M parameters"},
}
REFERENCE = {"model": "Landslide4Sense challenge baseline on the paper's protocol", "f1": 0.7719,
             "miou": 0.6864, "params": 29.8e6}
PAPER = "Le, Pham, Lampert, Schlögl, Schindler, IGARSS 2024 (arXiv 2312.16717)"
# --quick: every rung at tiny.yaml's size (filters 4-8-16-32-32, 2 heads of 8) for two short
# epochs, int8 by post-training quantization; folds 0 and 1 of the 5-fold protocol on a 24-patch
# sample. Shows the machinery end to end in minutes, not the paper's numbers.
QUICK_OVERRIDES = ["model.width=0.0625", "model.attention_heads=2", "model.attention_key_dim=8",
                   "model.bn_momentum=0.9", "train.epochs=2", "train.batch_size=4", "train.lr=0.01",
                   "train.verbose=0", "data.cache=memory", "export.mode=ptq",
                   "export.calibration_examples=16", "export.size_budget_mb=2.0"]
QUICK_FOLDS = [0, 1]
QUICK_PATCHES = 24
EXPORT_KEYS = ("path", "tflite_bytes", "params", "macs", "quantization", "keras_metric",
               "tflite_metric", "agreement", "latency_ms")


def add_arguments(parser):
    """Options of `python -m landslide ladder`."""
    papers.add_arguments(parser, "Landslide4Sense folder (TrainData/img, TrainData/mask)",
                         "tiny models, two epochs, folds 0,1 on sample data made in OUT/data",
                         out_help="folder of the ladder's runs and tables (resumable)")
    parser.add_argument("--folds", help="comma-separated folds to run, e.g. 0,1 "
                        "(default: every fold of data.folds)")
    parser.add_argument("--rungs", help=f"comma-separated rungs (default all: {','.join(RUNGS)})")


def run(task, args, *, max_steps=None):
    """`python -m landslide ladder`: train every rung on every fold, export the best, write the
    tables. `max_steps` stops after that many steps that did work (a test hook)."""
    from common.runner import load_task_config

    rungs = papers.parse_list(args.rungs, RUNGS, "--rungs") if args.rungs else list(RUNGS)
    out, data, overrides = papers.start(task, args, "ladder", "the Landslide4Sense folder",
                                        QUICK_OVERRIDES, {"n": QUICK_PATCHES, "seed": 0})
    base = {rung: load_task_config(task, f"{rung}.yaml", overrides, data) for rung in rungs}
    n_folds = base[rungs[0]]["data"]["folds"]
    if args.folds:
        allowed = [str(k) for k in range(n_folds)]
        folds = [int(k) for k in papers.parse_list(args.folds, allowed, "--folds")]
    else:
        folds = list(QUICK_FOLDS) if args.quick else list(range(n_folds))
    labelled = len(task.open_data(base[rungs[0]]).names)  # checks the data before anything trains

    steps = []
    for rung in rungs:
        for fold in folds:
            [(cfg, run_dir)] = task.train_runs(base[rung], out / rung / f"fold_{fold}", fold=str(fold))  # as `train --fold K`
            steps.append(papers.Step(f"{rung} fold {fold}", "train", run_dir, config=cfg))
    steps.append(papers.Step("best rung int8", "export", lambda: best_run(out, rungs, folds)))

    def content():
        return table(out, rungs, folds, data, labelled, n_folds, quick=args.quick)

    return papers.run_tables(task, steps, out, "ladder", content, markdown, "ladder",
                             max_steps=max_steps)


def _fold_metrics(out, rung, folds):
    """{fold: metrics.json content} of the finished folds of a rung."""
    found = {k: papers.read_json(Path(out) / rung / f"fold_{k}" / "metrics.json") for k in folds}
    return {fold: metrics for fold, metrics in found.items() if metrics is not None}


def best_run(out, rungs, folds):
    """The run directory to export: the fold with the highest F1 of the rung with the highest
    mean F1 over its finished folds."""
    scored = {rung: found for rung in rungs if (found := _fold_metrics(out, rung, folds))}
    if not scored:
        raise RunDirError(f"{out}: no finished rung to export")
    rung = max(scored, key=lambda r: papers.mean_std([m["f1"] for m in scored[r].values()])["mean"])
    fold = max(scored[rung], key=lambda k: scored[rung][k]["f1"])
    return Path(out) / rung / f"fold_{fold}"


def table(out, rungs, folds, data, labelled, n_folds, *, quick):
    """The ladder table as JSON (fractions in [0, 1]), built from the run directories."""
    out = Path(out)
    rows, per_fold_split = [], {}
    for rung in rungs:
        found = _fold_metrics(out, rung, folds)
        rows.append({"rung": rung, "config": f"configs/landslide/{rung}.yaml", "adds": ADDS[rung],
                     "folds_planned": list(folds), "folds_done": sorted(found),
                     **{key: papers.mean_std([m.get(key) for m in found.values()])
                        for key in METRICS},
                     "per_fold": {f"fold_{k}": {key: m[key] for key in METRICS if key in m}
                                  for k, m in found.items()},
                     "published": PUBLISHED.get(rung)})
        for k in found:
            per_fold_split.setdefault(f"fold_{k}", papers.split_counts(out / rung / f"fold_{k}"))
    best = None
    if any(row["folds_done"] for row in rows):
        run = best_run(out, rungs, folds)
        report = papers.read_json(run / "export_report.json")
        best = {"rung": run.parent.name, "run": str(run), "exported": report is not None,
                **({key: report.get(key) for key in EXPORT_KEYS} if report else {})}
    return {
        "paper": PAPER,
        "table": "ablation ladder, mean and std over the folds (fractions)",
        "quick": quick,
        "data": {"path": str(data), "labelled_patches": labelled,
                 "protocol": f"{n_folds}-fold cross-validation", "folds": list(folds),
                 "examples_per_split": per_fold_split},
        "metrics": METRICS,
        "rows": rows,
        "reference": REFERENCE,
        "best": best,
    }


def markdown(content):
    """The ladder table for people: percent, mean ± std over the folds, the paper's beside."""
    header = ["rung", "adds", "folds"]
    for key in METRICS:
        header.append(TITLES[key])
        if key in PUBLISHED_KEYS:
            header.append(f"paper {TITLES[key].split()[0]}")
    body = []
    for row in content["rows"]:
        published = row["published"] or {}
        done = f"{len(row['folds_done'])}/{len(row['folds_planned'])}"
        cells = [f"`{row['rung']}`", row["adds"], done]
        for key in METRICS:
            stats = row[key]
            cells.append(papers.percent(stats["mean"], stats["std"]) if stats else "-")
            if key in PUBLISHED_KEYS:
                cells.append(papers.percent(published.get(key)))
        body.append(cells)
    d, ref, best = content["data"], content["reference"], content["best"]
    splits = "; ".join(f"{fold}: " + ", ".join(f"{name} {n}" for name, n in counts.items())
                       for fold, counts in d["examples_per_split"].items())
    splits = f" (examples per split: {splits})" if splits else ""
    intro = (f"Data: `{d['path']}`, {d['labelled_patches']:,} labelled patches, {d['protocol']}, "
             f"folds {', '.join(map(str, d['folds']))}{splits}.\n"
             "Mean ± std over the finished folds, in percent; `paper` columns are the published "
             "numbers (docs/papers.md; the paper does not say which mIoU definition it "
             "uses).")
    notes = [f"Reference: {ref['model']}: F1 {papers.percent(ref['f1'], digits=2)}, mIoU "
             f"{papers.percent(ref['miou'], digits=2)}, {ref['params'] / 1e6:.1f}M parameters. "
             f"Paper U-Net+CE row: {PUBLISHED['unet_ce']['note']}."]
    if best and best["exported"]:
        notes += ["", f"Best rung by mean F1: `{best['rung']}`; exported `{best['path']}`: "
                  f"{best['tflite_bytes'] / 1e6:.2f} MB int8 ({best['quantization']}), "
                  f"{best['params']:,} parameters, F1 float {best['keras_metric']:.3f} / int8 "
                  f"{best['tflite_metric']:.3f}, agreement {best['agreement']:.3f}, "
                  f"{best['latency_ms']:.1f} ms per patch."]
    elif best:
        notes += ["", f"Best rung by mean F1 so far: `{best['rung']}` ({best['run']}, "
                  "not exported yet)."]
    return papers.page(content, "Paper 1: the ablation ladder", intro,
                       "tiny models, two epochs, sample data", header, body, notes)
