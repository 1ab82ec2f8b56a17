"""Partition points by dominator analysis: chains, branches, residuals, multi-I/O, nesting, sharing."""

from __future__ import annotations

import keras
import pytest

from scission_service.graph import GraphError, analyze_model, valid_partition_points
from scission_service.models import build_application


def _chain() -> keras.Model:
    x = inputs = keras.Input((8,), name="x")
    for i in range(3):
        x = keras.layers.Dense(8, name=f"d{i}")(x)
    return keras.Model(inputs, x)


def _branches() -> keras.Model:
    inputs = keras.Input((8,), name="x")
    stem = keras.layers.Dense(8, name="stem")(inputs)
    left = keras.layers.Dense(4, name="left")(stem)
    right = keras.layers.Dense(4, name="right_a")(stem)
    right = keras.layers.Dense(4, name="right_b")(right)
    joined = keras.layers.Concatenate(name="join")([left, right])
    skip = keras.layers.Add(name="residual")([joined, keras.layers.Dense(8, name="proj")(joined)])
    return keras.Model(inputs, keras.layers.Dense(3, name="head")(skip))


def test_chain_has_a_point_after_every_inner_layer() -> None:
    graph = analyze_model(_chain())
    assert [p.layer_name for p in graph.points] == ["d0", "d1"]
    assert [(b.first_layer, b.last_layer) for b in graph.blocks] == [(0, 1), (2, 2), (3, 3)]
    assert graph.blocks[0].first_layer_name == "x" and graph.blocks[-1].last_layer_name == "d2"


def test_no_point_inside_branches_and_points_where_they_rejoin() -> None:
    model = _branches()
    names = [p.layer_name for p in valid_partition_points(model)]
    assert names == ["stem", "join", "residual"]
    graph = analyze_model(model)
    # Blocks tile model.layers exactly and each ends at the layer producing its closing point.
    assert graph.blocks[0].first_layer == 0
    assert graph.blocks[-1].last_layer == len(model.layers) - 1
    for before, after in zip(graph.blocks, graph.blocks[1:], strict=False):
        assert after.first_layer == before.last_layer + 1
    for block, point in zip(graph.blocks, graph.points, strict=False):
        assert block.last_layer == point.layer_index


def test_multi_output_heads_close_the_last_block() -> None:
    inputs = keras.Input((8,))
    trunk = keras.layers.Dense(8, name="trunk")(inputs)
    trunk2 = keras.layers.Dense(8, name="trunk2")(trunk)
    heads = [keras.layers.Dense(2, name="head_a")(trunk2), keras.layers.Dense(3, name="head_b")(trunk2)]
    graph = analyze_model(keras.Model(inputs, heads))
    assert [p.layer_name for p in graph.points] == ["trunk", "trunk2"]
    assert len(graph.boundaries[-1]) == 2


def test_multi_input_model_first_point_is_where_inputs_meet() -> None:
    a, b = keras.Input((4,), name="a"), keras.Input((4,), name="b")
    joined = keras.layers.Concatenate(name="join")([keras.layers.Dense(4, name="da")(a), b])
    out = keras.layers.Dense(2, name="out")(keras.layers.Dense(4, name="mid")(joined))
    graph = analyze_model(keras.Model([a, b], out))
    assert [p.layer_name for p in graph.points] == ["join", "mid"]
    assert len(graph.boundaries[0]) == 2


def test_nested_model_is_one_node() -> None:
    inner_in = keras.Input((8,))
    inner = keras.Model(inner_in, keras.layers.Dense(8)(keras.layers.Dense(8)(inner_in)), name="backbone")
    inputs = keras.Input((8,))
    x = keras.layers.Dense(8, name="pre")(inputs)
    x = inner(x)
    model = keras.Model(inputs, keras.layers.Dense(2, name="post")(x))
    assert [p.layer_name for p in valid_partition_points(model)] == ["pre", "backbone"]


def test_shared_layer_across_points_merges_blocks_so_ranges_stay_disjoint() -> None:
    inputs = keras.Input((8,))
    shared = keras.layers.Dense(8, name="shared")
    x = shared(inputs)
    x = keras.layers.Dense(8, name="middle")(x)
    x = shared(x)
    x = keras.layers.Dense(8, name="tail")(x)
    model = keras.Model(inputs, keras.layers.Dense(2, name="out")(x))
    graph = analyze_model(model)
    ranges = [(b.first_layer, b.last_layer) for b in graph.blocks]
    assert ranges[0][0] == 0 and ranges[-1][1] == len(model.layers) - 1
    for (_, last), (first, _) in zip(ranges, ranges[1:], strict=False):
        assert first == last + 1
    # The cut after the first call of the shared layer is dropped; the later cuts survive.
    assert "tail" in [p.layer_name for p in graph.points]
    assert len(graph.blocks) == 3 and graph.blocks[0].call_sites == 3  # shared, middle, shared again


def test_sequential_is_rebuilt_as_functional_with_input_layer_zero() -> None:
    layers = [keras.Input((4,)), keras.layers.Dense(4, name="a"), keras.layers.Dense(2, name="b")]
    model = keras.Sequential(layers)
    graph = analyze_model(model)
    assert [p.layer_name for p in graph.points] == ["a"]
    assert graph.model.layers[0].__class__.__name__ == "InputLayer"


def test_subclassed_model_is_refused_clearly() -> None:
    class Custom(keras.Model):
        def __init__(self) -> None:
            super().__init__()
            self.dense = keras.layers.Dense(2)

        def call(self, x):  # type: ignore[no-untyped-def]
            return self.dense(x)

    with pytest.raises(GraphError, match="subclassed"):
        analyze_model(Custom())
    with pytest.raises(GraphError, match="keras.Model"):
        analyze_model("not a model")  # type: ignore[arg-type]


@pytest.mark.slow
def test_resnet50_finds_at_least_scissions_points_and_every_residual_join() -> None:
    model = build_application("resnet50")
    graph = analyze_model(model)
    names = [p.layer_name for p in graph.points]
    assert len(model.layers) == 177
    assert len(graph.points) >= 23  # Scission's count (24 blocks in its ResNet50 benchmark data)
    assert all(f"conv{s}_block{b}_out" in names for s, b in [(2, 1), (3, 4), (4, 6), (5, 3)])


@pytest.mark.slow
def test_inception_v3_cuts_at_every_mixed_concatenation() -> None:
    graph = analyze_model(build_application("inception_v3"))
    names = {p.layer_name for p in graph.points}
    assert {f"mixed{i}" for i in range(11)} <= names
