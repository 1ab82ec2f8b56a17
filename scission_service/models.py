"""Load the DNNs Scission partitions: ``keras.applications`` by name or a ``.keras`` file in safe mode.

Applications are built with ``weights=None`` and a fixed seed, so two builds with the same arguments have
identical weights and the same :func:`model_digest` (no download ever happens). ``.keras`` files are loaded
with Keras' ``safe_mode=True`` after our own scan of the archive's ``config.json``: a file that would run code
(a ``Lambda`` layer, a custom or non-Keras class) is refused with :class:`ModelLoadError`.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

if TYPE_CHECKING:
    from collections.abc import Iterator

#: Serialises Keras graph construction (model builds, seeding, sub-model cloning): it mutates global state.
BUILD_LOCK = threading.RLock()

#: The 18 applications of Scission's Table I, keyed by a normalised name (lower case, no ``_``/``-``).
APPLICATIONS: dict[str, str] = {
    "vgg16": "VGG16",
    "vgg19": "VGG19",
    "resnet50": "ResNet50",
    "resnet101": "ResNet101",
    "resnet152": "ResNet152",
    "resnet50v2": "ResNet50V2",
    "resnet101v2": "ResNet101V2",
    "resnet152v2": "ResNet152V2",
    "inceptionv3": "InceptionV3",
    "inceptionresnetv2": "InceptionResNetV2",
    "xception": "Xception",
    "mobilenet": "MobileNet",
    "mobilenetv2": "MobileNetV2",
    "densenet121": "DenseNet121",
    "densenet169": "DenseNet169",
    "densenet201": "DenseNet201",
    "nasnetmobile": "NASNetMobile",
    "nasnetlarge": "NASNetLarge",
}
_ALPHA_MODELS = {"MobileNet", "MobileNetV2"}

MAX_MODEL_FILE_BYTES = 2 * 1024**3
_MAX_CONFIG_BYTES = 64 * 1024**2
_MAX_ARCHIVE_MEMBERS = 10_000
_CODE_RUNNING_CLASSES = {"Lambda", "TFSMLayer", "TorchModuleWrapper", "JaxLayer", "FlaxLayer"}


class ModelLoadError(ValueError):
    """A model could not be built or loaded; the message says what to change."""


def canonical_application_name(name: str) -> str:
    """Map ``mobilenetv2``, ``inception_v3``, ``ResNet50`` … to the ``keras.applications`` name."""
    key = name.strip().lower().replace("_", "").replace("-", "")
    try:
        return APPLICATIONS[key]
    except KeyError:
        known = ", ".join(sorted(APPLICATIONS.values()))
        raise ModelLoadError(f"unknown application {name!r}; known applications: {known}") from None


def build_application(
    name: str,
    *,
    seed: int = 0,
    alpha: float | None = None,
    input_shape: tuple[int, ...] | list[int] | None = None,
) -> keras.Model:
    """Build a ``keras.applications`` model with ``weights=None`` and deterministic weights from ``seed``."""
    app_name = canonical_application_name(name)
    kwargs: dict[str, Any] = {"weights": None}
    if alpha is not None:
        if app_name not in _ALPHA_MODELS:
            raise ModelLoadError(f"alpha applies to MobileNet and MobileNetV2 only, not {app_name}")
        kwargs["alpha"] = float(alpha)
    if input_shape is not None:
        shape = tuple(input_shape)
        positive = all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape)
        if len(shape) != 3 or not positive:
            raise ModelLoadError(
                f"input_shape must be three positive integers (height, width, channels), got {input_shape!r}"
            )
        kwargs["input_shape"] = shape
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**32:
        raise ModelLoadError(f"seed must be an integer in [0, 2**32), got {seed!r}")
    builder = getattr(keras.applications, app_name)
    with BUILD_LOCK:
        keras.utils.set_random_seed(seed)
        try:
            return builder(**kwargs)
        except (ValueError, TypeError) as exc:
            raise ModelLoadError(f"cannot build {app_name} with {kwargs}: {exc}") from None


def _iter_objects(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _iter_objects(value)
    elif isinstance(node, list):
        for value in node:
            yield from _iter_objects(value)


def _check_archive(path: Path, max_bytes: int) -> None:
    """Refuse archives that are too big or that reference code-running / non-Keras objects."""
    size = path.stat().st_size
    if size > max_bytes:
        raise ModelLoadError(f"{path.name} is {size} bytes; the limit is {max_bytes} bytes")
    if not zipfile.is_zipfile(path):
        raise ModelLoadError(f"{path.name} is not a .keras archive (not a zip file)")
    with zipfile.ZipFile(path) as archive:
        members = archive.infolist()
        if len(members) > _MAX_ARCHIVE_MEMBERS:
            raise ModelLoadError(f"{path.name} has {len(members)} members; refusing to unpack")
        if sum(m.file_size for m in members) > 4 * max_bytes:
            raise ModelLoadError(f"{path.name} expands to over {4 * max_bytes} bytes; refusing to unpack")
        try:
            info = archive.getinfo("config.json")
        except KeyError:
            raise ModelLoadError(f"{path.name} has no config.json; not a Keras 3 .keras file") from None
        if info.file_size > _MAX_CONFIG_BYTES:
            raise ModelLoadError(f"{path.name}: config.json is too large ({info.file_size} bytes)")
        try:
            config = json.loads(archive.read(info))
        except (ValueError, UnicodeDecodeError) as exc:
            raise ModelLoadError(f"{path.name}: config.json is not valid JSON ({exc})") from None
    for obj in _iter_objects(config):
        class_name = obj.get("class_name")
        if not isinstance(class_name, str):
            continue
        if class_name in _CODE_RUNNING_CLASSES:
            raise ModelLoadError(
                f"{path.name} contains a {class_name} layer, which runs arbitrary code when loaded or "
                "called; refusing it (safe mode). Rebuild the model from built-in Keras layers."
            )
        module = obj.get("module")
        registered = obj.get("registered_name")
        keras_module = isinstance(module, str) and (module == "keras" or module.startswith("keras."))
        if class_name == "__lambda__" or (module is not None and not keras_module):
            raise ModelLoadError(
                f"{path.name} references {class_name!r} from module {module!r}, which is not a built-in "
                "Keras object; only models made of built-in Keras layers can be loaded safely"
            )
        keras_registered = isinstance(registered, str) and registered.startswith("keras")
        if registered not in (None, class_name) and not keras_registered:
            raise ModelLoadError(
                f"{path.name} references the custom object {registered!r}; only built-in Keras objects are "
                "allowed"
            )


def load_model_file(path: str | Path, *, max_bytes: int = MAX_MODEL_FILE_BYTES) -> keras.Model:
    """Load a ``.keras`` file in safe mode; refuse files that would run code, with :class:`ModelLoadError`."""
    path = Path(path)
    if path.suffix != ".keras":
        raise ModelLoadError(f"{path.name}: only Keras 3 '.keras' files are accepted (not .h5/SavedModel)")
    if not path.is_file():
        raise ModelLoadError(f"model file {str(path)!r} does not exist or is not a file")
    _check_archive(path, max_bytes)
    with BUILD_LOCK:
        try:
            model = keras.saving.load_model(path, compile=False, safe_mode=True)
        except Exception as exc:  # Keras raises many types for bad archives; report them uniformly.
            raise ModelLoadError(f"cannot load {path.name} in safe mode: {exc}") from None
    if not isinstance(model, keras.Model):
        raise ModelLoadError(f"{path.name} does not contain a keras.Model")
    return model


def load_model(
    spec: str | Path,
    *,
    seed: int = 0,
    alpha: float | None = None,
    input_shape: tuple[int, ...] | list[int] | None = None,
) -> keras.Model:
    """Load ``spec``: a path ending in ``.keras`` (safe mode) or a ``keras.applications`` name."""
    if isinstance(spec, Path) or str(spec).endswith(".keras"):
        if alpha is not None or input_shape is not None:
            raise ModelLoadError("alpha and input_shape apply to keras.applications names, not .keras files")
        return load_model_file(spec)
    return build_application(str(spec), seed=seed, alpha=alpha, input_shape=input_shape)


def _canonical_config(node: Any, names: dict[str, str]) -> Any:
    """Replace layer names (which depend on Keras' global name counters) by their position."""
    if isinstance(node, list | tuple):
        return [_canonical_config(item, names) for item in node]
    if not isinstance(node, dict):
        return node
    layers = node.get("layers")
    if isinstance(layers, list) and all(isinstance(lay, dict) for lay in layers):
        scoped = dict(names)
        for position, layer in enumerate(layers):
            layer_name = layer.get("name", layer.get("config", {}).get("name"))
            if isinstance(layer_name, str):
                scoped[layer_name] = f"#{position}"
        names = scoped
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "name" and isinstance(value, str) and value in names:
            out[key] = names[value]
        elif key == "keras_history" and isinstance(value, list | tuple) and value and value[0] in names:
            out[key] = [names[value[0]], *value[1:]]
        elif key in ("input_layers", "output_layers") and isinstance(value, list):
            out[key] = _canonical_layer_refs(value, names)
        else:
            out[key] = _canonical_config(value, names)
    return out


def _canonical_layer_refs(value: Any, names: dict[str, str]) -> Any:
    if isinstance(value, list | tuple):
        if value and isinstance(value[0], str) and value[0] in names:
            return [names[value[0]], *value[1:]]
        return [_canonical_layer_refs(item, names) for item in value]
    return value


def model_digest(model: keras.Model) -> str:
    """``sha256:<hex>`` over the architecture (names canonicalised) and each weight's dtype/shape/bytes."""
    digest = hashlib.sha256()
    try:
        config = model.get_config()
    except Exception:  # Subclassed models without get_config: weights and class name only.
        config = {"class_name": type(model).__name__}
    config = _canonical_config(config, {})
    if isinstance(config, dict) and "name" in config:
        config["name"] = "#model"
    digest.update(json.dumps(config, sort_keys=True, default=str).encode())
    for weight in model.weights:
        value = np.ascontiguousarray(keras.ops.convert_to_numpy(weight))
        digest.update(f"|{value.dtype.str}{value.shape}|".encode())
        digest.update(value.tobytes())
    return "sha256:" + digest.hexdigest()
