"""A combined teacher of frozen runs: paper 3's Phase II (arXiv 2302.13028), `python -m rsic teacher`.

Finished runs of one task (the "members", paper 3: ConvNeXtLarge, EfficientNetB7, DenseNet201) are
frozen up to their "embedding" layer. Their embeddings e_n are fused by trainable element-wise
weights, f = sum_n e_n * w_n + b (`common.layers.WeightedEmbeddingSum`), then dropout
(`teacher.dropout`, 0.4) and a Dense softmax classifier. Only the fusion and the classifier
train, on embeddings computed once (as the authors' code does):

    RUN/embeddings/member<n>_<split>.npz   member n's embeddings (N, D) of the split's examples
                                           in split.json's order (`Task.embed`), with a key
                                           (member run, its model.keras size and time, the
                                           examples' identifiers): written
                                           atomically once each is done, reused by a rerun of a
                                           killed run, recomputed when the key differs

The result is an ordinary run: model.keras takes the members' input and gives class probabilities; its
"embedding" layer is the fused vector f, which `distill --teacher RUN` imitates (student.yaml:
MSE to f, no projection). The members' split, classes, input size and data folder are the
run's; config.yaml's `model:` is the first member's (the input every member takes).
"""

import copy
import hashlib
import json
from pathlib import Path

import numpy as np

from common.errors import ConfigError, RunDirError
from common.io import atomic_path
from common.rundir import check_run_task

EMBEDDINGS_DIR = "embeddings"
EMBEDDING_LAYER = "embedding"


def member_runs(members):
    """The member run directories of `--members RUN,RUN,...` or `teacher.members` (a list):
    absolute Paths, at least two, none twice."""
    items = members.split(",") if isinstance(members, str) else list(members or [])
    runs = [Path(str(item).strip()).expanduser().resolve() for item in items if str(item).strip()]
    if len(runs) < 2:
        raise ConfigError("teacher.members: a combined teacher needs at least two finished runs "
                          "(--members RUN,RUN,RUN)")
    for run in runs:
        if runs.count(run) > 1:
            raise ConfigError(f"teacher.members: {run} is given twice; list each member run once")
    return runs


def check_members(task, runs):
    """Check the member runs before TensorFlow starts: each a trained run of the task, all with the first
    one's classes, input size and split. Returns (first member's config, its split.json content).

    Raises:
        RunDirError / ConfigError: one line naming the run that does not fit.
    """
    from common.config import read_saved_config
    from common.runner import LABELS_FILE, SPLIT_FILE, read_json, read_labels

    first = None
    for run in runs:
        check_run_task(run, task.name, context="teacher.members: ")
        if not ((run / "config.yaml").is_file() and (run / "model.keras").is_file()):
            raise RunDirError(f"{run}: not a trained run directory (no config.yaml and model.keras); "
                              "train every member first")
        if not (run / SPLIT_FILE).is_file():
            raise RunDirError(f"{run / SPLIT_FILE}: no split file; the members must be runs of "
                              f"`python -m {task.name} train`")
        cfg, labels = read_saved_config(run / "config.yaml"), read_labels(run / LABELS_FILE)
        size, split = cfg["model"].get("input_size"), read_json(run / SPLIT_FILE)
        ids = {name: split.get(name) for name in split.get("splits") or ("train", "val", "test")}
        if first is None:
            first = (run, cfg, labels, size, split, ids)
            continue
        if labels != first[2]:
            raise ConfigError(f"teacher.members: {run}: its classes ({run / LABELS_FILE}) differ from "
                              f"those of {first[0]}; the members must share class names")
        if size != first[3]:
            raise ConfigError(f"teacher.members: {run}: its input size {size} differs from "
                              f"{first[0]}'s {first[3]} (model.input_size); the members must share it")
        if ids != first[5]:
            raise RunDirError(f"teacher.members: {run / SPLIT_FILE}: its split differs from "
                              f"{first[0] / SPLIT_FILE}; the members must be trained on one split")
    return first[1], first[4]


def teacher_config(task, cfg, runs, data=None):
    """The combined teacher's run config: `cfg` (its `teacher:` and `train:` sections) with
    `teacher.members` (absolute paths), the first member's `model:` and `data:` sections (the
    input size every member takes, the split's settings) and its data folder unless `data`."""
    member_cfg, _ = check_members(task, runs)
    cfg = copy.deepcopy(cfg)
    cfg["teacher"]["members"] = [str(run) for run in runs]
    cfg["model"] = copy.deepcopy(member_cfg["model"])
    root = str(Path(data).resolve()) if data else (cfg["data"]["root"] or member_cfg["data"]["root"])
    cfg["data"] = {**copy.deepcopy(member_cfg["data"]), "root": root}
    # The head is a few thousand weights on cached vectors: bfloat16 would only cost accuracy.
    cfg["train"]["precision"] = "float32"
    t = cfg["teacher"]
    if not 0 <= float(t["dropout"]) < 1:
        raise ConfigError(f"config key 'teacher.dropout': expected a value in [0, 1), got {t['dropout']}")
    return cfg


def head_train_config(cfg):
    """The `train:` section the fusion and classifier train with: the run's, with the epochs,
    batch size and (constant) rate of `teacher:`."""
    t = cfg["teacher"]
    return {**cfg["train"], "epochs": int(t["epochs"]), "batch_size": int(t["batch_size"]),
            "lr": float(t["lr"]), "schedule": "constant", "steps_per_epoch": 0}


def embedding_model(member, name):
    """A frozen model sharing `member`'s weights: image -> its "embedding" layer's output."""
    import tf_keras as keras

    try:
        layer = member.get_layer(EMBEDDING_LAYER)
    except ValueError:
        raise ConfigError(f"teacher.members: the model {member.name} has no layer "
                          f"{EMBEDDING_LAYER!r}") from None
    model = keras.Model(member.inputs, layer.output, name=name)
    model.trainable = False
    return model


def build_head(num_members, size, num_classes, dropout):
    """The trainable part: N embeddings (B, size) -> WeightedEmbeddingSum ("embedding") ->
    dropout -> Dense ("logits") -> softmax ("probs"), probabilities (B, num_classes)."""
    import tf_keras as keras

    from common.layers import WeightedEmbeddingSum

    layers = keras.layers
    inputs = [keras.Input((size,), name=f"member{n}_embedding") for n in range(num_members)]
    x = WeightedEmbeddingSum(name=EMBEDDING_LAYER)(inputs)
    if dropout > 0:
        x = layers.Dropout(dropout, name="embedding_dropout")(x)
    probs = layers.Activation("softmax", dtype="float32", name="probs")(
        layers.Dense(num_classes, name="logits")(x))
    return keras.Model(inputs, probs, name="combined_teacher_head")


def full_model(embedders, head):
    """The members' input -> every frozen member's embedding -> the head's layers (shared
    weights): the combined teacher as one model, its "embedding" layer the fused vector."""
    import tf_keras as keras

    inputs = keras.Input(embedders[0].input_shape[1:], name=embedders[0].input_names[0])
    x = [embedder(inputs) for embedder in embedders]
    for layer in head.layers[len(embedders):]:  # after the head's N inputs, in graph order
        x = layer(x)
    return keras.Model(inputs, x, name="combined_teacher")


def _cache_key(run, ids):
    """What a cached embedding file depends on: the member run, its model file, the examples."""
    stat = (Path(run) / "model.keras").stat()
    text = json.dumps([str(run), stat.st_size, stat.st_mtime_ns, [str(i) for i in ids]])
    return hashlib.sha1(text.encode()).hexdigest()


def member_embeddings(embed, run, index, ids, folder, split_name, log):
    """Member `index`'s embeddings (float32 (N, D)) of the examples named `ids`, from
    FOLDER/member<index>_<split_name>.npz when its key matches, else `embed()` (the task's
    `Task.embed`) written (atomically) there."""
    path, key = Path(folder) / f"member{index}_{split_name}.npz", _cache_key(run, ids)
    if path.is_file():
        with np.load(path, allow_pickle=False) as cached:
            if str(cached["key"]) == key:
                log(f"member {index} ({Path(run).name}): {split_name} embeddings cached ({path})")
                return cached["embeddings"]
    log(f"member {index} ({Path(run).name}): computing the embeddings of {len(ids)} "
        f"{split_name} examples")
    embeddings = np.asarray(embed(), np.float32)
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, embeddings=embeddings, key=np.array(key))
    return embeddings


def train_teacher(task, cfg, out, *, resume=False, overwrite=False, unsafe_load=False):
    """Train the combined teacher of `cfg` (from `teacher_config`) into the run directory `out`;
    evaluate the whole model on the reported split (metrics.json).

    Returns:
        common.runner.RunResult.
    """
    from common import runner
    from common import train as T

    runs = [Path(run) for run in cfg["teacher"]["members"]]
    runner.need_data(cfg)
    data = task.open_data(cfg)
    split, content = runner.read_split(task, runs[0], data)
    if list(task.class_names(data)) != runner.read_labels(runs[0] / runner.LABELS_FILE):
        raise ConfigError(f"{cfg['data']['root']}: its classes differ from the members' "
                          f"({runs[0] / runner.LABELS_FILE})")
    # The epoch is chosen where the members chose theirs (the inner split under select_on: inner).
    selection = content.get("selection_split") or task.selection_split(cfg)
    if not len(split.get(selection, [])):
        selection = "train"
    T.start_strategy(cfg["train"])
    keep_apart = [("--data", cfg["data"]["root"]), *(("--members", run) for run in runs)]
    run = T.prepare_run_dir(out, config=cfg, resume=resume, overwrite=overwrite, task=task.name,
                            keep_apart=keep_apart)
    runner.write_split(task, run, cfg, data, split, selection=selection)
    runner.say(f"{task.name}: combined teacher of {len(runs)} members "
               f"({', '.join(r.name for r in runs)}) -> {run}")

    members = [runner.keras_model(task, r, unsafe_load=unsafe_load) for r in runs]
    embedders = [embedding_model(member, f"member{n}_{member.name}")
                 for n, member in enumerate(members)]
    sizes = sorted({int(e.output_shape[-1]) for e in embedders})
    if len(sizes) > 1:
        raise ConfigError("teacher.members: their embeddings differ in size ("
                          + ", ".join(f"{r.name} {int(e.output_shape[-1])}"
                                      for r, e in zip(runs, embedders)) + "); they must be of one size")
    batch = int(cfg["train"]["batch_size"])
    labels = {name: np.asarray(task.labels(cfg, data, split[name])) for name in ("train", selection)}

    def cached(name):
        ids = task.split_ids(data, {name: split[name]})[name]
        return tuple(member_embeddings(lambda e=e: task.embed(e, cfg, data, split[name], batch), r, n, ids,
                                       run / EMBEDDINGS_DIR, name, lambda line: runner.say(f"{task.name}: {line}"))
                     for n, (e, r) in enumerate(zip(embedders, runs)))

    import tensorflow as tf

    head_cfg = head_train_config(cfg)
    train_x, val_x = cached("train"), cached(selection)
    train_ds = (tf.data.Dataset.from_tensor_slices((train_x, labels["train"]))
                .shuffle(len(labels["train"]), seed=int(head_cfg["seed"]))
                .batch(head_cfg["batch_size"]))
    val_ds = tf.data.Dataset.from_tensor_slices((val_x, labels[selection])).batch(1024)
    steps = -(-len(labels["train"]) // head_cfg["batch_size"])
    heads = {}

    def build():
        import tf_keras as keras

        heads["head"] = build_head(len(runs), sizes[0],
                                   len(task.class_names(data)), float(cfg["teacher"]["dropout"]))
        heads["head"].compile(optimizer=T.make_optimizer(head_cfg, steps),
                              loss=keras.losses.SparseCategoricalCrossentropy(),
                              metrics=["accuracy"])
        return heads["head"]

    from common.progress import EpochLog

    T.fit(build, train_ds, val_ds, head_cfg, run,
          final_model_fn=lambda head: full_model(embedders, head),
          extra_callbacks=[EpochLog(task.name, head_cfg["epochs"], head_cfg["monitor"])])
    metrics, _ = runner.evaluate(task, run, unsafe_load=unsafe_load)
    T.release_run_dir(run)
    return runner.RunResult(run, metrics)


def add_arguments(parser):
    """Options of `python -m TASK teacher` (besides --config, --data and --set)."""
    from common.model_files import add_unsafe_load_arg

    parser.add_argument("--members", metavar="RUN,RUN,...",
                        help="finished runs to combine (default: teacher.members of the config)")
    parser.add_argument("--out", required=True, help="run directory to write")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing run in --out")
    parser.add_argument("--resume", action="store_true",
                        help="continue the unfinished run in --out (its cached embeddings are reused)")
    add_unsafe_load_arg(parser)


def run_command(task, args):
    """`python -m TASK teacher`: config (default teacher.yaml) -> members checked -> train."""
    from common.runner import load_task_config

    cfg = load_task_config(task, args.config, args.overrides, default="teacher.yaml", announce=True)
    runs = member_runs(args.members if args.members else cfg["teacher"]["members"])
    cfg = teacher_config(task, cfg, runs, args.data)
    train_teacher(task, cfg, args.out, resume=args.resume, overwrite=args.overwrite,
                  unsafe_load=args.unsafe_load)
