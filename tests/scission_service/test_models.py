"""Model loading: application names, deterministic weights and digests, safe-mode .keras files."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest

from scission_service.models import (
    APPLICATIONS,
    ModelLoadError,
    build_application,
    canonical_application_name,
    load_model,
    load_model_file,
    model_digest,
)


def _small_model(seed: int = 0) -> keras.Model:
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((4,))
    return keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Dense(3)(inputs)))


def test_all_eighteen_applications_and_scission_spellings_are_known() -> None:
    assert len(APPLICATIONS) == 18
    for app in APPLICATIONS.values():
        assert hasattr(keras.applications, app)
    scission_names = [
        "vgg19",
        "xception",
        "resnet50",
        "resnet101",
        "resnet152",
        "resnet50v2",
        "resnet101v2",
        "resnet152v2",
        "inception_v3",
        "inceptionresnet_v2",
        "mobilenet",
        "vgg16",
        "mobilenetv2",
        "densenet121",
        "densenet169",
        "densenet201",
        "nasnetlarge",
        "nasnetmobile",
    ]
    assert {canonical_application_name(n) for n in scission_names} == set(APPLICATIONS.values())
    assert canonical_application_name("MobileNetV2") == "MobileNetV2"


def test_unknown_name_and_bad_options_are_refused_clearly() -> None:
    with pytest.raises(ModelLoadError, match="unknown application 'alexnet'.*VGG16"):
        build_application("alexnet")
    with pytest.raises(ModelLoadError, match="alpha applies to MobileNet"):
        build_application("vgg16", alpha=0.5)
    with pytest.raises(ModelLoadError, match="three positive integers"):
        build_application("mobilenetv2", input_shape=(96, 96))
    with pytest.raises(ModelLoadError, match="cannot build"):
        build_application("vgg16", input_shape=(8, 8, 3))


def test_digest_ignores_layer_name_counters_but_not_weights() -> None:
    a, b, c = _small_model(0), _small_model(0), _small_model(1)
    assert [layer.name for layer in a.layers] != [layer.name for layer in b.layers]  # global name counters
    assert model_digest(a) == model_digest(b)
    assert model_digest(a) != model_digest(c)
    b.layers[-1].kernel.assign(b.layers[-1].kernel + 1.0)
    assert model_digest(a) != model_digest(b)


@pytest.mark.slow
def test_same_seed_builds_identical_application() -> None:
    a = build_application("mobilenetv2", alpha=0.35, input_shape=(96, 96, 3))
    b = build_application("MobileNet_V2", alpha=0.35, input_shape=(96, 96, 3))
    c = build_application("mobilenetv2", alpha=0.35, input_shape=(96, 96, 3), seed=7)
    assert model_digest(a) == model_digest(b) != model_digest(c)
    x = np.random.default_rng(0).random((1, 96, 96, 3), dtype=np.float32)
    np.testing.assert_array_equal(a(x, training=False).numpy(), b(x, training=False).numpy())


def test_keras_file_round_trip_keeps_the_digest(tmp_path: Path) -> None:
    model = _small_model(3)
    path = tmp_path / "small.keras"
    model.save(path)
    loaded = load_model(str(path))
    assert model_digest(loaded) == model_digest(model)


def test_keras_file_with_lambda_is_refused(tmp_path: Path) -> None:
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Lambda(lambda t: t * 2)(inputs))
    path = tmp_path / "lambda.keras"
    model.save(path)
    with pytest.raises(ModelLoadError, match="Lambda layer.*safe mode"):
        load_model_file(path)


def test_keras_file_referencing_foreign_code_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.keras"
    config = {
        "module": "keras.src.models.functional",
        "class_name": "Functional",
        "config": {"layers": [{"module": "os", "class_name": "system", "config": {"command": "id"}}]},
    }
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("config.json", json.dumps(config))
        archive.writestr("metadata.json", "{}")
    with pytest.raises(ModelLoadError, match="module 'os'"):
        load_model_file(path)


def test_bad_model_files_get_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="only Keras 3 '.keras'"):
        load_model_file(tmp_path / "model.h5")
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_model_file(tmp_path / "missing.keras")
    not_zip = tmp_path / "text.keras"
    not_zip.write_text("hello")
    with pytest.raises(ModelLoadError, match="not a zip"):
        load_model_file(not_zip)
    no_config = tmp_path / "empty.keras"
    with zipfile.ZipFile(no_config, "w") as archive:
        archive.writestr("other.txt", "x")
    with pytest.raises(ModelLoadError, match="no config.json"):
        load_model_file(no_config)
    model = _small_model()
    path = tmp_path / "big.keras"
    model.save(path)
    with pytest.raises(ModelLoadError, match="limit"):
        load_model_file(path, max_bytes=100)
