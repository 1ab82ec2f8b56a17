"""Valid partition points of a Keras 3 functional model, found by graph analysis (DESIGN §5.1).

The graph is taken at call-site granularity: vertices are the symbolic tensors of the model's own nodes, and
an edge goes from every input tensor of a call site to each of its output tensors. A **partition point** is
a tensor that every input→output path passes through, i.e. a dominator of a virtual sink fed by all model
outputs (a virtual source feeds all model inputs). Such a tensor alone carries everything the rest of the
model needs, so the model can be cut there and the tensor sent over the network. Points are totally ordered;
the **blocks** are the spans between consecutive points (the model inputs open block 0, the outputs close
the last).

Decisions, documented here once:

- Branches (Inception ``mixed*``, DenseNet concatenations, ResNet adds) need no special case: a branch region
  has no dominator inside it, and the tensor where the branches rejoin is a point.
- Multi-output heads: the last block ends at all outputs; points exist only before the heads fork.
- Multi-input models: the first point is the first tensor all inputs flow through.
- Nested models (a functional/Sequential model used as a layer) are **one node**: one entry of
  ``model.layers``, never cut inside. This keeps Scission's layer-index convention (index = position in
  ``model.layers``). Flatten the model yourself if you want cuts inside the nested model.
- Shared layers (one layer, several call sites): the layer has one index, so a block is described by the layer
  index range of its call sites. When call sites of one layer fall into different blocks, those blocks are
  merged (the points between them are dropped) so that the blocks' layer ranges stay disjoint and ordered.
- A top-level ``keras.Sequential`` is rebuilt as an equivalent functional model sharing the same layers (its
  layer 0 is then the ``InputLayer``, as in Scission). Subclassed models have no graph and are refused.

Layer indices follow Scission's ``input_layer``/``output_layer`` convention: block 0 starts at layer 0 (the
``InputLayer``), and a block's last layer is the one producing the point that closes it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402

from scission_service.models import BUILD_LOCK, model_digest  # noqa: E402


class GraphError(ValueError):
    """The model's graph cannot be analysed for partitioning; the message says why."""


@dataclass(frozen=True)
class PartitionPoint:
    """A tensor every input→output path passes through: the model can be cut here."""

    index: int
    tensor_name: str
    layer_index: int
    layer_name: str
    shape: tuple[int | None, ...]
    dtype: str


@dataclass(frozen=True)
class Block:
    """The span between two consecutive partition points (layer indices as in ``model.layers``)."""

    index: int
    first_layer: int
    last_layer: int
    first_layer_name: str
    last_layer_name: str
    call_sites: int


@dataclass(eq=False)
class ModelGraph:
    """Result of :func:`analyze_model`: the (functional) model, its points, blocks and boundary tensors.

    ``boundaries[k]`` are the symbolic tensors entering block ``k``; ``boundaries[-1]`` are the model outputs.
    ``boundaries[k]`` for ``0 < k < len(blocks)`` is the single tensor of ``points[k - 1]``.
    """

    model: keras.Model
    points: tuple[PartitionPoint, ...]
    blocks: tuple[Block, ...]
    boundaries: tuple[tuple[Any, ...], ...] = field(repr=False)

    @cached_property
    def digest(self) -> str:
        """The model digest (computed once per analysis)."""
        return model_digest(self.model)


def to_functional(model: keras.Model) -> keras.Model:
    """Return ``model`` if functional; rebuild a Sequential as a functional model; refuse anything else."""
    if isinstance(model, keras.Sequential):
        if not model.built or not getattr(model, "inputs", None):
            raise GraphError(
                f"Sequential model {model.name!r} has no known input shape; give its first layer an "
                "input shape (keras.Input) before partitioning"
            )
        with BUILD_LOCK:
            source = model.inputs[0]
            inputs = keras.Input(batch_shape=source.shape, dtype=source.dtype, name=f"{model.name}_input")
            x = inputs
            for layer in model.layers:
                x = layer(x)
            return keras.Model(inputs, x, name=model.name)
    if not isinstance(model, keras.Model):
        raise GraphError(f"expected a keras.Model, got {type(model).__name__}")
    if not hasattr(model, "_nodes_by_depth") or not hasattr(model, "_inputs_struct"):
        raise GraphError(
            f"model {model.name!r} ({type(model).__name__}) is a subclassed keras.Model without a functional "
            "graph; partitioning needs a functional or Sequential model"
        )
    return model


def _nodes_in_order(model: keras.Model) -> list[Any]:
    """The model's own call-site nodes, inputs first (decreasing depth)."""
    ordered: list[Any] = []
    for depth in sorted(model._nodes_by_depth, reverse=True):
        ordered.extend(model._nodes_by_depth[depth])
    return ordered


def analyze_model(model: keras.Model) -> ModelGraph:
    """Find the valid partition points and blocks of ``model`` (see the module docstring)."""
    model = to_functional(model)
    inputs = list(model.inputs)
    outputs = list(model.outputs)
    layer_index = {id(layer): position for position, layer in enumerate(model.layers)}

    nodes = [node for node in _nodes_in_order(model) if not node.is_input and node.operation is not None]
    # Tensor DAG: vertices are id(tensor); SOURCE/SINK are virtual.
    source, sink = "source", "sink"
    preds: dict[Any, list[Any]] = {id(t): [source] for t in inputs}
    producer: dict[int, Any] = {}
    tensors: dict[int, Any] = {id(t): t for t in inputs}
    for node in nodes:
        node_inputs = [id(t) for t in node.arguments.keras_tensors]
        for out in node.outputs:
            if id(out) in preds and id(out) not in producer:
                raise GraphError(f"tensor {out.name!r} is both a model input and produced by a layer")
            preds[id(out)] = list(dict.fromkeys(node_inputs)) or [source]
            producer[id(out)] = node
            tensors[id(out)] = out
    preds[sink] = list(dict.fromkeys(id(t) for t in outputs))

    # Topological order (Kahn) over the tensor DAG restricted to vertices reachable from the source.
    succs: dict[Any, list[Any]] = {}
    indegree: dict[Any, int] = {}
    for vertex, vertex_preds in preds.items():
        indegree[vertex] = len(vertex_preds)
        for p in vertex_preds:
            succs.setdefault(p, []).append(vertex)
    order: list[Any] = []
    ready = [source]
    indegree[source] = 0
    while ready:
        vertex = ready.pop()
        order.append(vertex)
        for s in succs.get(vertex, []):
            indegree[s] -= 1
            if indegree[s] == 0:
                ready.append(s)
    if sink not in order:
        raise GraphError(f"model {model.name!r}: outputs are not computable from its inputs alone")
    rank = {vertex: position for position, vertex in enumerate(order)}

    # Immediate dominators on a DAG (Cooper, Harvey & Kennedy intersect in topological order).
    idom: dict[Any, Any] = {source: source}
    for vertex in order[1:]:
        candidate: Any = None
        for p in preds[vertex]:
            if p not in idom:
                continue
            if candidate is None:
                candidate = p
                continue
            a, b = candidate, p
            while a != b:
                while rank[a] > rank[b]:
                    a = idom[a]
                while rank[b] > rank[a]:
                    b = idom[b]
            candidate = a
        idom[vertex] = candidate

    chain: list[int] = []
    vertex = idom[sink]
    while vertex != source:
        chain.append(vertex)
        vertex = idom[vertex]
    chain.reverse()
    # A dominator that is a model input with several inputs cannot happen; with one input it is boundary 0.
    point_ids = [v for v in chain if v in producer]
    if point_ids and id(outputs[0]) == point_ids[-1] and len(outputs) == 1:
        point_ids.pop()  # the single model output closes the last block; it is not a cut
    point_rank = {v: k + 1 for k, v in enumerate(point_ids)}  # boundary number of each point

    # Assign each call site to a block: the nearest strict dominator of its output that is a point.
    block_of_node: dict[int, int] = {}
    for node in nodes:
        live = [id(o) for o in node.outputs if id(o) in idom]
        if not live:
            continue
        vertex = idom[live[0]]
        while vertex != source and vertex not in point_rank:
            vertex = idom[vertex]
        block_of_node[id(node)] = 0 if vertex == source else point_rank[vertex]

    n_blocks = len(point_ids) + 1
    members: list[list[int]] = [[] for _ in range(n_blocks)]
    call_sites = [0] * n_blocks
    for node in nodes:
        if id(node) not in block_of_node:
            continue
        block = block_of_node[id(node)]
        call_sites[block] += 1
        if id(node.operation) in layer_index:
            members[block].append(layer_index[id(node.operation)])
    for t in inputs:
        members[0].append(layer_index[id(t._keras_history.operation)])

    # Merge blocks whose layer ranges overlap or are out of order (shared layers), or that hold no layer.
    spans: list[tuple[int, int, int, int]] = []  # (first, last, last_boundary_exclusive, call_sites)
    for k in range(n_blocks):
        if not members[k]:
            if spans:
                first, last, _, sites = spans.pop()
                spans.append((first, last, k + 1, sites + call_sites[k]))
            else:
                spans.append((-1, -1, k + 1, call_sites[k]))
            continue
        first, last, sites = min(members[k]), max(members[k]), call_sites[k]
        while spans and (spans[-1][0] == -1 or first <= spans[-1][1]):
            prev_first, prev_last, _, prev_sites = spans.pop()
            first = first if prev_first == -1 else min(first, prev_first)
            last = max(last, prev_last)
            sites += prev_sites
        spans.append((first, last, k + 1, sites))
    if spans[-1][0] == -1:
        raise GraphError(f"model {model.name!r} has no layers to partition")
    merged_boundaries = [0] + [end for _, _, end, _ in spans]

    # Blocks tile model.layers: a layer on no input→output path (e.g. an unused input) joins the next block.
    layers = model.layers
    blocks: list[Block] = []
    for position, (first, last, _, sites) in enumerate(spans):
        if position == 0:
            first = 0
        else:
            first = blocks[-1].last_layer + 1
        if position == len(spans) - 1:
            last = len(layers) - 1
        blocks.append(
            Block(
                index=position,
                first_layer=first,
                last_layer=last,
                first_layer_name=layers[first].name,
                last_layer_name=layers[last].name,
                call_sites=sites,
            )
        )

    kept_points = [point_ids[b - 1] for b in merged_boundaries[1:-1]]
    points = []
    for k, vertex in enumerate(kept_points):
        tensor = tensors[vertex]
        op = tensor._keras_history.operation
        points.append(
            PartitionPoint(
                index=k,
                tensor_name=str(tensor.name),
                layer_index=layer_index.get(id(op), -1),
                layer_name=str(getattr(op, "name", "")),
                shape=tuple(tensor.shape),
                dtype=str(tensor.dtype),
            )
        )
    boundaries = (tuple(inputs), *((tensors[v],) for v in kept_points), tuple(outputs))
    return ModelGraph(model=model, points=tuple(points), blocks=tuple(blocks), boundaries=boundaries)


def valid_partition_points(model: keras.Model) -> list[PartitionPoint]:
    """The valid partition points of ``model``, in order from inputs to outputs."""
    return list(analyze_model(model).points)
