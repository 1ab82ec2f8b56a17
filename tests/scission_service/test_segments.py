"""Segments: chaining the segments of any partition reproduces the full model; caching; bad requests."""

from __future__ import annotations

import itertools
import random

import keras
import numpy as np
import pytest

from scission_service.graph import analyze_model
from scission_service.models import build_application
from scission_service.segments import SegmentError, build_segment_model, get_segment, run_partition


def _branched_model() -> keras.Model:
    keras.utils.set_random_seed(1)
    inputs = keras.Input((12, 12, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="stem")(inputs)
    a = keras.layers.Conv2D(4, 1, name="a")(x)
    b = keras.layers.Conv2D(4, 3, padding="same", name="b")(keras.layers.Conv2D(4, 1, name="b0")(x))
    x = keras.layers.Concatenate(name="mixed")([a, b])
    x = keras.layers.Add(name="res")([x, keras.layers.Conv2D(8, 1, name="proj")(x)])
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(inputs, keras.layers.Dense(5, activation="softmax", name="head")(x))


def _input(shape: tuple[int, ...]) -> np.ndarray:
    return np.random.default_rng(0).random((2, *shape), dtype=np.float32)


def test_every_partition_of_a_branched_model_reproduces_the_full_output() -> None:
    model = _branched_model()
    graph = analyze_model(model)
    x = _input((12, 12, 3))
    full = model(x, training=False).numpy()
    n = len(graph.blocks)
    assert n >= 4
    for k in range(n):
        for cuts in itertools.combinations(range(n - 1), k):
            out = run_partition(graph, cuts, x)
            assert np.max(np.abs(out - full)) <= 1e-5, cuts


def test_multi_output_model_chains_to_all_outputs() -> None:
    inputs = keras.Input((6,))
    trunk = keras.layers.Dense(6, name="trunk")(keras.layers.Dense(6, name="t0")(inputs))
    model = keras.Model(inputs, [keras.layers.Dense(2)(trunk), keras.layers.Dense(3)(trunk)])
    graph = analyze_model(model)
    x = _input((6,))
    expected = [t.numpy() for t in model(x, training=False)]
    outs = run_partition(graph, [0, 1], x)
    assert isinstance(outs, list) and len(outs) == 2
    for got, want in zip(outs, expected, strict=True):
        assert np.max(np.abs(got - want)) <= 1e-5


def test_segments_are_cached_per_digest_and_range() -> None:
    graph = analyze_model(_branched_model())
    assert get_segment(graph, 1, 2) is get_segment(graph, 1, 2)
    twin = analyze_model(_branched_model())  # same seed: same digest, so the cached segment is reused
    assert twin.digest == graph.digest
    assert get_segment(twin, 1, 2) is get_segment(graph, 1, 2)
    assert get_segment(graph, 0, 2) is not get_segment(graph, 1, 2)


def test_segment_model_is_a_keras_model_sharing_weights() -> None:
    model = _branched_model()
    graph = analyze_model(model)
    sub = build_segment_model(graph, 0, 0)
    assert isinstance(sub, keras.Model)
    assert {id(w) for w in sub.weights} <= {id(w) for w in model.weights}


def test_bad_ranges_and_inputs_are_refused_clearly() -> None:
    graph = analyze_model(_branched_model())
    n = len(graph.blocks)
    for first, last in [(-1, 0), (2, 1), (0, n)]:
        with pytest.raises(SegmentError, match="block range"):
            get_segment(graph, first, last)
    segment = get_segment(graph, 0, 1)
    with pytest.raises(SegmentError, match="shape"):
        segment(np.zeros((1, 10, 10, 3), dtype=np.float32))
    with pytest.raises(SegmentError, match="float32"):
        segment(np.zeros((1, 12, 12, 3), dtype=np.complex64))
    with pytest.raises(SegmentError, match="2"):
        segment([np.zeros((1, 12, 12, 3), dtype=np.float32)] * 2)
    with pytest.raises(SegmentError, match="cuts"):
        run_partition(graph, [n - 1], np.zeros((1, 12, 12, 3), dtype=np.float32))


@pytest.mark.slow
def test_mobilenetv2_random_partitions_reproduce_the_full_model() -> None:
    model = build_application("mobilenetv2", alpha=0.35, input_shape=(96, 96, 3))
    graph = analyze_model(model)
    x = _input((96, 96, 3))[:1]
    full = model(x, training=False).numpy()
    rng = random.Random(3)
    n = len(graph.blocks)
    for _ in range(3):
        cuts = rng.sample(range(n - 1), 3)
        assert np.max(np.abs(run_partition(graph, cuts, x) - full)) <= 1e-5
