"""Benchmarking per block on this machine, and segment execution from worker threads."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import keras
import numpy as np
import pytest

from scission_service.benchmark_data import BenchmarkDataError, parse_benchmark_data
from scission_service.benchmarking import (
    BenchmarkError,
    benchmark_model,
    benchmark_model_with_stats,
    describe_resource,
    fit_call_overhead,
    graph_for,
    run_segment,
)
from scission_service.models import build_application
from scission_service.segments import EXECUTION_MODE, SegmentError
from scission_service.tensor_wire import encode_array


def _model() -> keras.Model:
    keras.utils.set_random_seed(2)
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="c1")(inputs)
    y = keras.layers.Conv2D(8, 3, padding="same", name="c2a")(x)
    x = keras.layers.Add(name="add")([x, keras.layers.Conv2D(8, 1, name="c2b")(y)])
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(inputs, keras.layers.Dense(4, name="head")(x))


def test_benchmark_covers_every_block_with_sane_numbers() -> None:
    model = _model()
    graph = graph_for(model)
    steps: list[tuple[int, int]] = []
    data = benchmark_model(
        model,
        model_name="tiny",
        resource_name="laptop",
        tier="device",
        repeats=10,
        progress=lambda done, total: steps.append((done, total)),
    )
    assert len(data.blocks) == len(graph.blocks)
    assert [(b.first_layer, b.last_layer) for b in data.blocks] == [
        (b.first_layer, b.last_layer) for b in graph.blocks
    ]
    assert data.input_shape == [1, 16, 16, 3]
    assert data.input_bytes == len(encode_array(np.zeros((1, 16, 16, 3), dtype=np.float32)))
    assert data.model_digest == graph.digest and data.execution_mode == EXECUTION_MODE
    assert data.repeats == 10 and data.whole_model_median_s is not None
    for block in data.blocks:
        assert 0 <= block.p10_s <= block.median_s <= block.p90_s
    n = len(graph.blocks)
    # One step per segment built and warmed up (blocks, whole model, two halves), then one per round.
    assert steps == [(d, n + 3 + 10) for d in range(1, n + 3 + 10 + 1)]
    # The overhead is fitted so that the blocks add up to the whole model; on this tiny model the whole run
    # costs about one call, and when noise makes one block slower than it, the blocks sum to more.
    assert data.block_sum_s >= data.whole_model_median_s - 1e-9
    assert 0 < data.call_overhead_s < 0.05
    # Held out: the two halves of the model, each timed as one segment.
    cut = (n - 1) // 2
    assert [(c.first_block, c.last_block) for c in data.held_out] == [(0, cut), (cut + 1, n - 1)]
    for check in data.held_out:
        blocks = data.blocks[check.first_block : check.last_block + 1]
        assert check.predicted_s == pytest.approx(sum(b.median_s for b in blocks))
        # A half of this tiny model costs about one call overhead, so it may measure as 0 once that is off.
        assert 0 <= check.measured_s <= 10 * data.whole_model_median_s + 1e-3  # seconds, not ns
    # The document survives its own schema validation.
    assert parse_benchmark_data(data.model_dump_json()) == data


def test_output_bytes_are_the_wire_size_of_each_block_output() -> None:
    model = _model()
    graph = graph_for(model)
    data = benchmark_model(model, model_name="tiny", resource_name="r", tier="edge", repeats=1, warmup=1)
    x = np.random.default_rng(0).random((1, 16, 16, 3), dtype=np.float32)
    assert len(data.blocks) == len(graph.blocks)
    for k, block in enumerate(data.blocks):
        out, _ = run_segment(model, first_block=0, last_block=k, inputs=x)
        assert isinstance(out, np.ndarray)
        assert block.output_bytes == len(encode_array(out))


def test_stats_account_for_timed_calls() -> None:
    data, stats = benchmark_model_with_stats(
        _model(), model_name="t", resource_name="r", tier="cloud", repeats=3
    )
    assert stats.timed_calls == 3 * (len(data.blocks) + 3)  # blocks, the whole model, its two halves
    assert 0 < stats.timed_ns <= stats.wall_ns


def test_fitted_overhead_is_the_one_that_makes_blocks_add_up_to_the_whole_model() -> None:
    compute = [0.004, 0.0001, 0.00002, 0.0005, 0.0]
    overhead = 0.00025
    blocks = [c + overhead for c in compute]
    assert fit_call_overhead(blocks, sum(compute) + overhead) == pytest.approx(overhead, rel=1e-9)
    # Blocks that already sum to less than the whole model: nothing to subtract.
    assert fit_call_overhead([0.001, 0.001], 0.003) == 0.0
    # Blocks below the fitted overhead count as 0, and the rest still add up to the whole model.
    noisy = [0.0002, 0.0003, 0.0021, 0.0040]
    o = fit_call_overhead(noisy, 0.0055)
    assert 0.0002 < o < 0.0021
    assert sum(max(b - o, 0) for b in noisy) == pytest.approx(0.0055 - o, rel=1e-9)
    # One block slower than the whole model: no overhead makes them add up; the cheapest call bounds it.
    assert fit_call_overhead([0.0003, 0.0004, 0.0002], 0.00025) == 0.0002
    with pytest.raises(ValueError, match="one-block"):
        fit_call_overhead([0.001], 0.001)


def test_bad_arguments_are_refused_clearly() -> None:
    model = _model()
    with pytest.raises(BenchmarkError, match="repeats"):
        benchmark_model(model, model_name="t", resource_name="r", tier="edge", repeats=0)
    with pytest.raises(BenchmarkError, match="does not fit"):
        benchmark_model(model, model_name="t", resource_name="r", tier="edge", input_shape=[32, 32, 3])
    with pytest.raises(BenchmarkError, match="tier"):
        benchmark_model(model, model_name="t", resource_name="r", tier="moon", repeats=1)  # type: ignore[arg-type]


def test_run_segment_matches_the_model_and_is_safe_from_threads() -> None:
    model = _model()
    n = len(graph_for(model).blocks)
    rng = np.random.default_rng(5)
    batches = [rng.random((1, 16, 16, 3), dtype=np.float32) for _ in range(8)]

    def chained(x: np.ndarray) -> np.ndarray:
        mid, seconds_a = run_segment(model, first_block=0, last_block=1, inputs=x)
        out, seconds_b = run_segment(model, first_block=2, last_block=n - 1, inputs=mid)
        assert seconds_a > 0 and seconds_b > 0
        assert isinstance(out, np.ndarray)
        return out

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(chained, batches))
    for x, out in zip(batches, results, strict=True):
        assert np.max(np.abs(out - model(x, training=False).numpy())) <= 1e-5


def test_run_segment_refuses_bad_ranges_and_shapes() -> None:
    model = _model()
    with pytest.raises(SegmentError, match="block range"):
        run_segment(model, first_block=0, last_block=99, inputs=np.zeros((1, 16, 16, 3), np.float32))
    with pytest.raises(SegmentError, match="shape"):
        run_segment(model, first_block=1, last_block=1, inputs=np.zeros((1, 16, 16, 3), np.float32))


def test_resource_descriptor_describes_this_machine() -> None:
    resource = describe_resource(name="node-1", tier="edge")
    assert resource.name == "node-1" and resource.tier == "edge"
    assert resource.cores >= 1 and resource.memory_bytes > 0
    assert resource.cpu_model and resource.tensorflow_version.count(".") >= 1


@pytest.mark.slow
def test_mobilenetv2_benchmark() -> None:
    model = build_application("mobilenetv2", alpha=0.35, input_shape=(96, 96, 3))
    data = benchmark_model(model, model_name="mobilenetv2", resource_name="ci", tier="edge", repeats=3)
    assert len(data.blocks) == len(graph_for(model).blocks) > 60
    assert data.blocks[-1].output_bytes == len(encode_array(np.zeros((1, 1000), np.float32)))
    assert data.whole_model_median_s is not None and data.whole_model_median_s > 0


def test_documents_of_schema_version_1_still_read_and_unknown_versions_are_refused() -> None:
    data = benchmark_model(_model(), model_name="t", resource_name="r", tier="edge", repeats=1, warmup=1)
    # What version 1 wrote: no held-out checks.
    old = data.model_dump(mode="json") | {"schema_version": 1}
    del old["held_out"]
    parsed = parse_benchmark_data(json.dumps(old))
    assert parsed.schema_version == 1 and parsed.held_out == [] and parsed.blocks == data.blocks
    with pytest.raises(BenchmarkDataError, match="unsupported schema_version 3; expected 1 or 2"):
        parse_benchmark_data(json.dumps(old | {"schema_version": 3}))
    broken = data.model_dump(mode="json")
    broken["held_out"][0]["last_block"] = len(data.blocks)
    with pytest.raises(BenchmarkDataError, match="is not a block range"):
        parse_benchmark_data(json.dumps(broken))
