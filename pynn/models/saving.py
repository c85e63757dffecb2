"""Saving and loading models: one zip file, read without pickle.

``model.save(path)`` writes a zip (any extension; Keras users write ``.keras``) holding
- ``config.json``: format marker, the model class and ``get_config()``, the compile config
  (optimizer, loss and metrics as names or ``{"class_name", "config"}``) and the weight names;
- ``weights.npz``: the weights in ``model.weights`` order, keys ``"0000:<layer>/<name>"``;
- ``optimizer.npz`` (when the optimizer has state): ``optimizer.get_state()``.
Files are written atomically: a temporary file in the target directory, flushed and fsynced,
then ``os.replace``d over the destination, so a crash never leaves half a model behind.

``load_model`` parses JSON and ``np.load(..., allow_pickle=False)`` only: a file carrying a
pickle is rejected, never unpickled. Any damage (truncation, bad CRC, missing entry, wrong
shapes) raises ValueError naming the file.
"""
import io
import json
import os
import tempfile
import warnings
import zipfile
import zlib

import numpy as np

FORMAT_NAME = "pynn.model"
FORMAT_VERSION = 1
CONFIG_ENTRY = "config.json"
WEIGHTS_ENTRY = "weights.npz"
OPTIMIZER_ENTRY = "optimizer.npz"


# ---------------------------------------------------------------------------------------------
# Atomic writes
# ---------------------------------------------------------------------------------------------
def _atomic_write(filepath, write, overwrite=True):
    """Call ``write(fileobj)`` on a temp file next to ``filepath``, then rename it over."""
    filepath = os.fspath(filepath)
    if not overwrite and os.path.exists(filepath):
        raise FileExistsError(f"{filepath} exists and overwrite=False")
    directory = os.path.dirname(os.path.abspath(filepath))
    fd, tmp_path = tempfile.mkstemp(prefix=".pynn-", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_path, filepath)
    except BaseException:
        try:
            os.unlink(tmp_path)
        except OSError:
            pass
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass


def _npz_bytes(arrays):
    """An uncompressed .npz of ``arrays`` (dict name -> ndarray, order kept) as bytes."""
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _weight_arrays(model):
    arrays = {}
    for index, variable in enumerate(model.weights):
        path = getattr(variable, "path", variable.name)
        arrays[f"{index:04d}:{path}"] = np.ascontiguousarray(variable.value)
    return arrays


# ---------------------------------------------------------------------------------------------
# Compile config
# ---------------------------------------------------------------------------------------------
def _serialize_object(obj, module):
    """A JSON-able spec for an optimizer/loss/metric: its name when given as one, else
    ``{"class_name", "config"}``. Raises ValueError for objects that cannot be stored."""
    if obj is None or isinstance(obj, str):
        return obj
    if isinstance(obj, dict):
        return obj
    spec = module.serialize(obj)
    spec = {"class_name": spec["class_name"], "config": spec["config"]}
    try:
        json.dumps(spec)
        module.deserialize(spec)  # only store what load_model can rebuild
    except (TypeError, ValueError, KeyError) as error:
        raise ValueError(f"cannot store {obj!r} in a model file: {error}") from None
    return spec


def serialize_compile_config(model):
    from pynn import losses as _losses
    from pynn import metrics as _metrics
    from pynn import optimizers as _optimizers

    given = model._compile_config or {}
    loss = given.get("loss")
    return {
        "optimizer": _serialize_object(model.optimizer, _optimizers),
        "loss": loss if isinstance(loss, str) else _serialize_object(model._loss_fn, _losses),
        "metrics": [m if isinstance(m, str) else _serialize_object(obj, _metrics)
                    for m, obj in zip(model._metric_ids, model._metrics or [])],
    }


def compile_from_config(model, config):
    from pynn import losses as _losses
    from pynn import metrics as _metrics
    from pynn import optimizers as _optimizers

    optimizer = config.get("optimizer")
    optimizer = _optimizers.get(optimizer) if optimizer is not None else "rmsprop"
    loss = config.get("loss")
    if isinstance(loss, dict):
        loss = _losses.deserialize(loss)
    metrics = [m if isinstance(m, str) else _metrics.deserialize(m)
               for m in config.get("metrics") or []]
    model.compile(optimizer=optimizer, loss=loss, metrics=metrics)


# ---------------------------------------------------------------------------------------------
# save / load
# ---------------------------------------------------------------------------------------------
def save_model(model, filepath, overwrite=True, **kwargs):
    """Write ``model`` (architecture, compile config, weights, optimizer state) to filepath."""
    if kwargs.pop("zipped", True) is False:
        raise NotImplementedError("pynn always writes one zip file (zipped=False unsupported)")
    if kwargs:
        raise TypeError(f"save got unexpected keyword argument(s) {sorted(kwargs)}")
    if not model.built:
        raise ValueError(f"model '{model.name}' is not built yet; build it (or fit/call it) "
                         "before saving")
    from pynn import __version__

    weights = _weight_arrays(model)
    compile_config = None
    if model.compiled:
        try:
            compile_config = model.get_compile_config()
        except (TypeError, ValueError) as error:
            warnings.warn(f"saving '{model.name}' without its compile config and optimizer "
                          f"state: {error}", stacklevel=3)
    document = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "pynn_version": __version__,
        "class_name": type(model).__name__,
        "config": model.get_config(),
        "compile_config": compile_config,
        "weights": list(weights),
    }
    config_bytes = json.dumps(document, indent=1).encode("utf-8")
    weights_bytes = _npz_bytes(weights)
    optimizer_bytes = None
    optimizer = model.optimizer
    if compile_config is not None and optimizer is not None and getattr(optimizer, "built",
                                                                         False):
        optimizer_bytes = _npz_bytes(optimizer.get_state())

    def write(f):
        with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            archive.writestr(CONFIG_ENTRY, config_bytes)
            archive.writestr(WEIGHTS_ENTRY, weights_bytes)
            if optimizer_bytes is not None:
                archive.writestr(OPTIMIZER_ENTRY, optimizer_bytes)

    _atomic_write(filepath, write, overwrite=overwrite)


class _Bad(Exception):
    """Internal: the file is damaged or not ours (turned into ValueError with the path)."""


def _read_npz(data, entry):
    """``{name: ndarray}`` from npz bytes, refusing pickled (object) arrays."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            return {name: npz[name] for name in npz.files}
    except ValueError as error:
        if "allow_pickle" in str(error) or "pickle" in str(error).lower():
            raise _Bad(f"{entry} contains pickled (object) data, which pynn never loads") \
                from None
        raise _Bad(f"{entry} is damaged ({error})") from None
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error, KeyError) as error:
        raise _Bad(f"{entry} is damaged ({error})") from None


def _open_archive(filepath):
    """``{entry: bytes}`` for every member of the zip at filepath."""
    path = os.fspath(filepath)
    if not os.path.exists(path):
        raise ValueError(f"File not found: filepath={path}. Please ensure the file is an "
                         "accessible pynn model file.")
    try:
        with zipfile.ZipFile(path, "r") as archive:
            return {name: archive.read(name) for name in archive.namelist()}
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError,
            RuntimeError, ValueError) as error:
        raise _Bad(f"not a readable zip archive ({error})") from None


def _model_from_document(document, custom_objects=None):
    from pynn.models.model import Model
    from pynn.models.sequential import Sequential

    if not isinstance(document, dict) or document.get("format") != FORMAT_NAME:
        raise _Bad(f"{CONFIG_ENTRY} is not a pynn model config")
    if document.get("format_version", 0) > FORMAT_VERSION:
        raise _Bad(f"written by a newer pynn (format version {document['format_version']})")
    classes = {"Sequential": Sequential, "Model": Model, "Functional": Model}
    cls = classes.get(document.get("class_name"))
    if cls is None:
        raise _Bad(f"unknown model class {document.get('class_name')!r}")
    return cls.from_config(document["config"], custom_objects=custom_objects)


def _assign_weights(model, arrays, names=None, skip_mismatch=False):
    variables = model.weights
    keys = names if names is not None else sorted(arrays, key=_weight_order)
    if set(keys) != set(arrays):
        raise _Bad("the weight names listed in the config do not match weights.npz")
    if len(keys) != len(variables):
        raise _Bad(f"holds {len(keys)} weight arrays but the model has {len(variables)}")
    values = []
    for key, variable in zip(keys, variables):
        value = arrays[key]
        if value.shape != variable.shape:
            if skip_mismatch:
                values.append(None)
                continue
            raise _Bad(f"weight {key!r} has shape {value.shape}, the model expects "
                       f"{variable.shape} ('{getattr(variable, 'path', variable.name)}')")
        if value.dtype.kind != "f":
            raise _Bad(f"weight {key!r} has non-float dtype {value.dtype}")
        values.append(value)
    for variable, value in zip(variables, values):
        if value is not None:
            variable.assign(value)


def _weight_order(key):
    prefix = key.split(":", 1)[0]
    try:
        return int(prefix), key
    except ValueError:
        return 1 << 62, key


def load_model(filepath, custom_objects=None, compile=True, safe_mode=True):
    """Rebuild a model saved by ``Model.save`` (compiled when it was, with optimizer state).

    Never unpickles: JSON and ``np.load(allow_pickle=False)`` only. A damaged or foreign file
    raises ValueError naming it.
    """
    path = os.fspath(filepath)
    try:
        entries = _open_archive(path)
        if CONFIG_ENTRY not in entries or WEIGHTS_ENTRY not in entries:
            raise _Bad(f"missing {CONFIG_ENTRY} or {WEIGHTS_ENTRY}: not a pynn model file")
        try:
            document = json.loads(entries[CONFIG_ENTRY].decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise _Bad(f"{CONFIG_ENTRY} is not valid JSON ({error})") from None
        try:
            model = _model_from_document(document, custom_objects)
        except _Bad:
            raise
        except (KeyError, TypeError, ValueError, NotImplementedError) as error:
            raise _Bad(f"cannot rebuild the model from its config ({error})") from None
        arrays = _read_npz(entries[WEIGHTS_ENTRY], WEIGHTS_ENTRY)
        _assign_weights(model, arrays, names=document.get("weights"))
        compile_config = document.get("compile_config")
        if compile and compile_config:
            try:
                model.compile_from_config(compile_config)
            except (KeyError, TypeError, ValueError) as error:
                raise _Bad(f"cannot restore the compile config ({error})") from None
            if OPTIMIZER_ENTRY in entries:
                state = _read_npz(entries[OPTIMIZER_ENTRY], OPTIMIZER_ENTRY)
                try:
                    model.optimizer.build(model.trainable_variables)
                    model.optimizer.set_state(state)
                except (KeyError, TypeError, ValueError) as error:
                    raise _Bad(f"optimizer state does not fit the model ({error})") from None
    except _Bad as error:
        raise ValueError(f"{path}: cannot load the model: {error}") from None
    return model


def save_weights(model, filepath, overwrite=True):
    """Write the weights (``model.weights`` order) to an .npz file, atomically."""
    if not model.built:
        raise ValueError(f"model '{model.name}' is not built yet; nothing to save")
    data = _npz_bytes(_weight_arrays(model))
    _atomic_write(filepath, lambda f: f.write(data), overwrite=overwrite)


def load_weights(model, filepath, skip_mismatch=False):
    """Load weights written by ``save_weights`` (or the weights of a ``save``d model file)."""
    path = os.fspath(filepath)
    try:
        entries = _open_archive(path)
        names = None
        if WEIGHTS_ENTRY in entries:  # a full model file
            if CONFIG_ENTRY in entries:
                try:
                    names = json.loads(entries[CONFIG_ENTRY].decode("utf-8")).get("weights")
                except (UnicodeDecodeError, json.JSONDecodeError, AttributeError):
                    names = None
            arrays = _read_npz(entries[WEIGHTS_ENTRY], WEIGHTS_ENTRY)
        else:
            # An .npz is itself a zip of .npy members: read it through np.load.
            with open(path, "rb") as f:
                arrays = _read_npz(f.read(), os.path.basename(path))
        if not model.built:
            raise _Bad(f"model '{model.name}' is not built; build it before load_weights")
        _assign_weights(model, arrays, names=names, skip_mismatch=skip_mismatch)
    except _Bad as error:
        raise ValueError(f"{path}: cannot load weights: {error}") from None
