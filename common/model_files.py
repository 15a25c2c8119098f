"""The one way this project loads a Keras model file: a `.keras` zip, in Keras' safe mode.

Other model formats run code when loaded. tf_keras' legacy loader (HDF5 `.h5`, SavedModel
folders) rebuilds a Lambda layer from the Python bytecode stored in the file and runs it while it
rebuilds the model, whatever `safe_mode` says; a `.keras` zip loaded with `safe_mode=True`
refuses stored code. So every command that loads a model (evaluate, predict, export, a
distillation teacher, asc complexity, `python -m common.export`) comes here, and:

- a `.keras` file is checked before Keras opens it: zip signature, a `config.json` that is a
  JSON model config, no Lambda layer in it and no class or function from a module other than
  Keras' own or this project's registered layers (tf_keras would import any module a config
  names, safe mode or not);
- anything else (HDF5 under any name, a SavedModel folder, a renamed or foreign file) is refused
  with one line, unless the user passes `--unsafe-load`, which loads it with the legacy loader
  and says in one warning line that code stored in the file may run.

Weights files (rsic's `model.weights_path`, checkpoints) are read with `load_weights`, which
reads arrays only and rebuilds nothing, so they need no such check.
"""

import json
import zipfile
from pathlib import Path

from common.errors import DataError

KERAS_SUFFIX = ".keras"
ZIP_SIGNATURE = b"PK\x03\x04"
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
# HDF5 files may start with a user block of 512, 1024, 2048, ... bytes before the signature.
_HDF5_OFFSETS = (0, *(512 << k for k in range(12)))
_MAX_CONFIG_BYTES = 64 << 20  # a model config above this is not one this project wrote
# Modules whose classes and functions a safe config may name (Keras resolves them itself).
_KERAS_MODULES = ("keras", "tf_keras", "builtins")
PROJECT_ROOT = Path(__file__).resolve().parent.parent

UNSAFE_LOAD_FLAG = "--unsafe-load"
UNSAFE_LOAD_HELP = ("also load model files other than a .keras zip (HDF5, SavedModel) and .keras files "
                    "with Lambda code, with Keras' legacy loader: such a file may run code stored in it; "
                    "use only on files you trust")


def add_unsafe_load_arg(parser):
    """The `--unsafe-load` flag of every command that loads a model (dest `unsafe_load`)."""
    parser.add_argument(UNSAFE_LOAD_FLAG, dest="unsafe_load", action="store_true", help=UNSAFE_LOAD_HELP)


def model_file_problem(path):
    """Why `path` is not a model file that loads safely, or None when it is a safe `.keras` zip.

    Reads the file's first bytes and, for a zip, its config.json; never loads the model (tf_keras
    is imported only to look up a registered class that a config names outside Keras).

    Returns:
        None, or a short phrase such as "is an HDF5 model" (the caller prefixes the path).
    """
    path = Path(path)
    if path.is_dir():
        if (path / "saved_model.pb").is_file() or (path / "saved_model.pbtxt").is_file():
            return "is a SavedModel folder"
        return "is a folder, not a .keras model file"
    if not path.is_file():
        return "model file not found"
    if _is_hdf5(path):
        return "is an HDF5 model"
    with open(path, "rb") as handle:
        head = handle.read(4)
    if head != ZIP_SIGNATURE or not zipfile.is_zipfile(path):
        return "is not a Keras model file (neither a .keras zip nor HDF5)"
    try:
        with zipfile.ZipFile(path) as archive:
            info = next((item for item in archive.infolist() if item.filename == "config.json"), None)
            if info is None:
                return "is a zip without config.json, not a .keras model"
            if info.file_size > _MAX_CONFIG_BYTES:
                return f"has a config.json of {info.file_size} bytes, not a model config"
            config = json.loads(archive.read(info).decode("utf-8"))
    except (zipfile.BadZipFile, OSError, ValueError, UnicodeDecodeError) as error:
        return f"is a damaged .keras zip ({str(error).splitlines()[0] if str(error) else type(error).__name__})"
    if not isinstance(config, dict) or "class_name" not in config:
        return "has a config.json that is not a Keras model config"
    if path.suffix != KERAS_SUFFIX:
        return f"is a .keras zip named {path.name}; give it the suffix .keras"
    return _config_problem(config)


def _is_hdf5(path):
    size = path.stat().st_size
    with open(path, "rb") as handle:
        for offset in _HDF5_OFFSETS:
            if offset + len(HDF5_SIGNATURE) > size:
                break
            handle.seek(offset)
            if handle.read(len(HDF5_SIGNATURE)) == HDF5_SIGNATURE:
                return True
    return False


def _config_problem(config):
    """What in a model config would run stored code or import a module on loading, or None."""
    for node in _nodes(config):
        if node.get("class_name") in ("Lambda", "__lambda__"):
            # A Lambda layer is Python code (bytecode, or any function a module holds); this
            # project builds none, and tf_keras' safe mode refuses only the bytecode kind.
            return "holds a Lambda layer (stored Python code)"
        module = node.get("module")
        if not isinstance(module, str) or not module or "class_name" not in node:
            continue
        root = module.split(".")[0]
        if root in _KERAS_MODULES or _is_project_package(root) or _registered(node):
            continue
        name = node["config"] if node.get("class_name") == "function" else node["class_name"]
        return f"names '{module}.{name}', neither Keras' own nor a registered layer of this project"
    return None


def _nodes(value):
    """Every dict inside a JSON value (depth first)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            yield item
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def _is_project_package(name):
    return name.isidentifier() and (PROJECT_ROOT / name / "__init__.py").is_file()


def _registered(node):
    import tf_keras as keras

    names = [node.get("registered_name"), node.get("config") if node.get("class_name") == "function" else None]
    return any(isinstance(n, str) and keras.saving.get_registered_object(n) is not None for n in names)


def load_model_file(path, *, unsafe_load=False, compile=False):
    """Load the Keras model in `path` without running code stored in it.

    Args:
        path: str or Path of a `.keras` file (see `model_file_problem` for what is checked).
        unsafe_load: the user's `--unsafe-load`: a file that is not a safe `.keras` zip is loaded
            with Keras' legacy loader (safe_mode=False), after a warning line.
        compile: restore the training config too (optimizer, loss); False for inference.

    Returns:
        The keras.Model.

    Raises:
        DataError: one line naming `path`: why it is refused (and `--unsafe-load`), or why
            Keras cannot load it.
    """
    import tf_keras as keras

    import common.layers  # noqa: F401  (registers the shared custom layers)

    path = Path(path)
    problem = model_file_problem(path)
    if problem == "model file not found":
        raise DataError(f"{path}: model file not found")
    if problem and not unsafe_load:
        raise DataError(f"{path}: {problem}; only .keras model files load without running code stored in them; "
                        f"pass {UNSAFE_LOAD_FLAG} if you trust this file (it may run that code)")
    if problem:
        print(f"warning: {path}: {problem}; loading it anyway ({UNSAFE_LOAD_FLAG}): code stored in it may run",
              flush=True)
    try:
        return keras.models.load_model(str(path), compile=compile, safe_mode=not problem)
    except (OSError, ValueError, TypeError, KeyError) as error:
        reason = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
        raise DataError(f"{path}: cannot load the Keras model ({reason})") from None


def saved_param_count(path):
    """The number of weights (= Keras' `count_params()`) in a `.keras` file, read from its
    weights archive without loading the model (no TensorFlow, no code run): the sizes of its
    `layers/` datasets (optimizer variables are stored apart). None when the file is not there.
    """
    import io

    import h5py

    path = Path(path)
    if not path.is_file():
        return None
    total = 0

    def add(_name, item):
        nonlocal total
        if isinstance(item, h5py.Dataset):
            total += int(item.size)

    try:
        with zipfile.ZipFile(path) as archive, \
                h5py.File(io.BytesIO(archive.read("model.weights.h5")), "r") as weights:
            if "layers" in weights:
                weights["layers"].visititems(add)
    except (OSError, KeyError, zipfile.BadZipFile) as error:
        raise DataError(f"{path}: cannot read its weights ({error})") from None
    return total
