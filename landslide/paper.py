"""Paper 1's ablation ladder: `python -m landslide ladder --data D --out R` (common.papers).

Seven rungs (configs/landslide/paper1/RUNG.yaml, each inheriting the one before: the authors'
U-Net + CE -> their 23 channels -> RAU-Net blocks -> tri-plane attention -> three heads -> focal +
-log IoU = the paper's model; then the same with squeeze-excitation, as their logs ran it) x the
folds of the k-fold protocol (the authors' contiguous folds; `--protocol authors | clean` picks
the epoch selection), each as `train --fold K` trains it; then the rung with the best mean F1 exported (its best fold;
the authors' channels then run on the host beside the .tflite: landslide.edge.numpy_front).

    R/settings.json          data folder, --quick, --set overrides (a rerun must match them)
    R/data/                  --quick only: the sample data set (`python -m landslide sample`)
    R/RUNG/fold_K/           the run of one rung on one fold (a `train` run directory)
    R/RUNG/fold_K/model_int8.tflite, export_report.json   the best rung's best fold, exported
    R/ladder.md, ladder.json mean +- std over the folds: landslide-class P/R/F1/IoU and the
                             two-class mean F1 and mIoU, paper 1's published numbers beside the
                             latter, the authors' per-fold F1s, the data and protocol named
"""

from pathlib import Path

from common import papers
from common.errors import RunDirError

CONFIGS = "paper1"  # the rungs' folder under configs/landslide/
RUNGS = ["unet_ce", "features", "residual", "attention", "multires", "full", "authors_logs"]
ADDS = {
    "unet_ce": "authors' U-Net, cross-entropy, 14 bands (baseline)",
    "features": "+ the authors' 23-channel input",
    "residual": "+ their residual blocks (RAU-Net, no attention, one head)",
    "attention": "+ tri-plane multi-head attention in every block",
    "multires": "+ three output resolutions (2x, 1x, 1/2x)",
    "full": "+ focal + -log IoU loss (the paper's model)",
    "authors_logs": "as in the authors' logs: squeeze-excitation attention",
}
# metrics.json keys shown, in order, with their titles. The landslide class (pixels pooled over
# the fold) and the two-class means (background and landslide, pixels pooled: paper 1's F1 and
# mIoU); the published numbers stand right after the score of the same definition.
TITLES = {"precision": "P landslide", "recall": "R landslide", "f1": "F1 landslide",
          "iou_landslide": "IoU landslide", "f1_mean": "F1 2-class", "miou": "mIoU 2-class"}
METRICS = list(TITLES)
PUBLISHED_KEYS = ("f1_mean", "miou")
# Paper 1 (arXiv 2312.16717, docs/papers.md), fractions, two-class means pooled over the
# fold. The abstract states the best model's F1 and mIoU and its gains over the authors' U-Net +
# CE (+10.5 F1, +8.8 mIoU); "fold_1" is the slide deck's score on their fold 1 (our fold 0).
PUBLISHED = {
    "unet_ce": {"f1_mean": 0.7357, "miou": 0.6727, "fold_1": 0.6783,
                "note": "84.07 - 10.5 F1, 76.07 - 8.8 mIoU (the stated gains)"},
    "full": {"f1_mean": 0.8407, "miou": 0.7607, "params": 24.8e6,
             "note": "the paper's best model, 24,890,374 parameters"},
    "authors_logs": {"f1_mean": 0.8408, "miou": 0.7607, "fold_1": 0.7242,
                     "note": "the means of the five logged folds (squeeze-excitation)"},
}
# The authors' logged best two-class F1 per fold, their folds 1..5 = our folds 0..4.
AUTHORS_FOLD_F1 = [0.7242, 0.8676, 0.8768, 0.8721, 0.8631]
PER_FOLD_RUNGS = ("full", "authors_logs")
REFERENCE = {"model": "Landslide4Sense challenge baseline on the paper's protocol", "f1": 0.7719,
             "miou": 0.6864, "params": 29.8e6}
PAPER = "Le, Pham, Lampert, Schlögl, Schindler, IGARSS 2024 (arXiv 2312.16717)"
# --protocol: the folds are the authors' contiguous blocks either way; the epoch kept is chosen
# on the scored fold (authors, as published) or on an inner split of the training part (clean).
PROTOCOLS = {
    "authors": ["data.fold_order=contiguous", "train.select_on=reported"],
    "clean": ["data.fold_order=contiguous", "train.select_on=inner"],
}
PROTOCOL_TEXT = {
    "authors": "authors: contiguous folds, epoch chosen on the scored fold (as published)",
    "clean": "clean: contiguous folds, epoch chosen on an inner split of the training part",
}
# --quick: every rung at tiny widths (authors' U-Net 4..64, RAU-Net 8 filters, 2 heads of 4) for
# one short epoch, int8 by post-training quantization; folds 0 and 1 of the 5-fold protocol on a
# 24-patch sample. Shows the machinery end to end, not the paper's numbers.
QUICK_OVERRIDES = ["model.width=0.0625", "model.filters=8", "model.triplane_heads=2",
                   "model.triplane_key_dim=4", "model.bn_momentum=0.9", "train.epochs=1",
                   "train.batch_size=4", "train.lr=0.01", "train.schedule=constant",
                   "augment.off_last_epochs=0", "train.verbose=0", "data.cache=memory",
                   "export.mode=ptq", "export.calibration_examples=16",
                   "export.size_budget_mb=2.0"]
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
    parser.add_argument("--protocol", choices=sorted(PROTOCOLS), default="authors",
                        help="authors (default): contiguous folds, epoch chosen on the scored "
                        "fold, as published; clean: contiguous folds, inner selection")


def run(task, args, *, max_steps=None):
    """`python -m landslide ladder`: train every rung on every fold, export the best, write the
    tables. `max_steps` stops after that many steps that did work (a test hook)."""
    from common.runner import load_task_config

    rungs = papers.parse_list(args.rungs, RUNGS, "--rungs") if args.rungs else list(RUNGS)
    protocol = getattr(args, "protocol", None) or "authors"
    out, data, overrides = papers.start(task, args, "ladder", "the Landslide4Sense folder",
                                        QUICK_OVERRIDES, {"n": QUICK_PATCHES, "seed": 0},
                                        settings={"protocol": protocol})
    overrides = [*PROTOCOLS[protocol], *overrides]  # the user's --set comes last
    base = {rung: load_task_config(task, f"{CONFIGS}/{rung}.yaml", overrides, data)
            for rung in rungs}
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
        return table(out, rungs, folds, data, labelled, n_folds, quick=args.quick, protocol=protocol)

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


def table(out, rungs, folds, data, labelled, n_folds, *, quick, protocol="authors"):
    """The ladder table as JSON (fractions in [0, 1]), built from the run directories."""
    out = Path(out)
    rows, per_fold_split = [], {}
    for rung in rungs:
        found = _fold_metrics(out, rung, folds)
        rows.append({"rung": rung, "config": f"configs/landslide/{CONFIGS}/{rung}.yaml",
                     "adds": ADDS[rung],
                     "folds_planned": list(folds), "folds_done": sorted(found),
                     **{key: papers.mean_std([m.get(key) for m in found.values()])
                        for key in METRICS},
                     "per_fold": {f"fold_{k}": {key: m[key] for key in METRICS if key in m}
                                  for k, m in sorted(found.items())},
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
                 "protocol": f"{n_folds}-fold cross-validation, {PROTOCOL_TEXT[protocol]}",
                 "protocol_name": protocol, "folds": list(folds),
                 "examples_per_split": per_fold_split},
        "metrics": METRICS,
        "rows": rows,
        "authors_fold_f1": AUTHORS_FOLD_F1,
        "reference": REFERENCE,
        "best": best,
    }


def markdown(content):
    """The ladder table for people: percent, mean ± std over the folds; each published number
    beside our score of the same definition; then the per-fold table of the paper's model."""
    header = ["rung", "adds", "folds"]
    for key in METRICS:
        header.append(TITLES[key])
        if key in PUBLISHED_KEYS:
            header.append(f"paper {TITLES[key]}")
    header += ["fold 0 F1 2-class", "slides fold 1"]
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
        fold0 = row["per_fold"].get("fold_0", {}).get("f1_mean")
        cells += [papers.percent(fold0), papers.percent(published.get("fold_1"))]
        body.append(cells)
    d, ref, best = content["data"], content["reference"], content["best"]
    splits = "; ".join(f"{fold}: " + ", ".join(f"{name} {n}" for name, n in counts.items())
                       for fold, counts in d["examples_per_split"].items())
    splits = f" (examples per split: {splits})" if splits else ""
    intro = (f"Data: `{d['path']}`, {d['labelled_patches']:,} labelled patches, {d['protocol']}, "
             f"folds {', '.join(map(str, d['folds']))}{splits}.\n"
             "Mean ± std over the finished folds, in percent. P/R/F1/IoU landslide: the landslide "
             "class; F1 and mIoU 2-class: the means over background and landslide, pixels pooled "
             "over the fold (paper 1's definition); `paper` columns are the published numbers of "
             "that definition (docs/papers.md). Our fold 0 is the authors' fold 1 (the "
             "last 20% of the sorted names), scored beside their slide deck's fold-1 F1.")
    notes = [f"Reference: {ref['model']}: F1 {papers.percent(ref['f1'], digits=2)}, mIoU "
             f"{papers.percent(ref['miou'], digits=2)}, {ref['params'] / 1e6:.1f}M parameters. "
             f"Paper U-Net+CE row: {PUBLISHED['unet_ce']['note']}; `authors_logs` paper columns: "
             f"{PUBLISHED['authors_logs']['note']}."]
    per_fold = [row for row in content["rows"] if row["rung"] in PER_FOLD_RUNGS]
    if per_fold:
        authors = content["authors_fold_f1"]
        notes += ["", "Per fold, F1 2-class in percent (ours / the authors' logs):", "",
                  "| rung | " + " | ".join(f"fold {k} (theirs {k + 1})"
                                             for k in range(len(authors))) + " |",
                  "|---|" + "---|" * len(authors)]
        for row in per_fold:
            cells = [f"{papers.percent(row['per_fold'].get(f'fold_{k}', {}).get('f1_mean'))} / "
                     f"{papers.percent(value)}" for k, value in enumerate(authors)]
            notes.append(f"| `{row['rung']}` | " + " | ".join(cells) + " |")
    if best and best["exported"]:
        notes += ["", f"Best rung by mean landslide F1: `{best['rung']}`; exported "
                  f"`{best['path']}`: {best['tflite_bytes'] / 1e6:.2f} MB int8 "
                  f"({best['quantization']}), {best['params']:,} parameters, F1 float "
                  f"{best['keras_metric']:.3f} / int8 {best['tflite_metric']:.3f}, agreement "
                  f"{best['agreement']:.3f}, {best['latency_ms']:.1f} ms per patch."]
    elif best:
        notes += ["", f"Best rung by mean F1 so far: `{best['rung']}` ({best['run']}, "
                  "not exported yet)."]
    return papers.page(content, "Paper 1: the ablation ladder", intro,
                       "tiny models, one epoch, sample data", header, body, notes)
