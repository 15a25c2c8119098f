"""Model complexity: parameters, multiply-accumulates (MACs) and TFLite file size.

What is counted, per single-example inference (batch 1):

* Parameters: every weight (trainable and not, e.g. BatchNormalization moving statistics),
  exactly as Keras `Model.count_params()` counts them.
* MACs: the multiply-accumulates of the layers that carry almost all the compute, the way the
  DCASE challenge counts model complexity (MACs of convolution and dense layers):
    - Conv1D/Conv2D: out_positions * out_channels * kernel_size * in_channels / groups;
    - DepthwiseConv2D: out_positions * in_channels * depth_multiplier * kh * kw;
    - SeparableConv2D: its depthwise part plus the 1x1 pointwise part;
    - Conv2DTranspose: in_positions * in_channels * kh * kw * out_channels;
    - Dense on any rank: leading positions (all axes but batch and last) * in * out;
    - MultiHeadAttention: the Q, K, V and output projections, plus Q.K^T and attention.V
      (heads * Tq * Tk * key_dim and heads * Tq * Tk * value_dim), with T the number of
      positions over all attended axes.
    - a layer with a `macs(input_shape)` method (a composite such as
      common.layers.TriPlaneAttention): what that method returns.
  Biases, BatchNormalization, LayerNormalization, activations, pooling, resizing and elementwise
  layers (Add, Multiply, Concatenate) count 0 MACs: they are cheap, and BatchNormalization after a
  convolution is folded into it by the converter. A layer inside a wrapper (tfmot
  QuantizeWrapper) is counted as the wrapped layer.
* Nested models (a keras.applications backbone used as a layer) are counted layer by layer;
  their layers are listed as `<model>/<layer>`.

A layer whose shape has an unknown (None) dimension other than the batch one has `macs` None, is
left out of the total, and the result has `macs_complete` False.
"""

from pathlib import Path

import numpy as np

from common.errors import DataError


def tflite_bytes(path):
    """Size of a file in bytes (a `.tflite` model is loaded whole, so this is its memory cost)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    return path.stat().st_size


def model_complexity(model):
    """Parameters and MACs of a built tf_keras model.

    Args:
        model: a built functional or Sequential tf_keras model.

    Returns:
        dict with `params` (int, all weights, = `model.count_params()`), `trainable_params` (int),
        `macs` (int, per example), `macs_complete` (bool, False when some layer had unknown
        shapes) and `layers`: a list of {name, type, params, macs} for every leaf layer, in graph
        order (nested models expanded).
    """
    rows = []
    _collect(model, "", rows)
    known = [row["macs"] for row in rows if row["macs"] is not None]
    trainable = sum(int(np.prod(w.shape)) for w in _unique(model.trainable_weights))
    return {
        "params": int(model.count_params()),
        "trainable_params": trainable,
        "macs": int(sum(known)),
        "macs_complete": len(known) == len(rows),
        "layers": rows,
    }


def model_summary(model):
    """What `python -m TASK summary` says of a model: `model_complexity` without the per-layer
    rows, plus `input_shape` and `output_shape` (tuples without the batch axis; the first input and
    output of a model with several)."""
    c = model_complexity(model)

    def first(shape):
        shape = shape[0] if isinstance(shape, list) else shape
        return tuple(shape[1:])

    return {**{key: c[key] for key in ("params", "trainable_params", "macs", "macs_complete")},
            "input_shape": first(model.input_shape), "output_shape": first(model.output_shape)}


def summary_line(info, example="example"):
    """One terminal line of a `model_summary` dict: parameters, MACs per `example`, shapes."""
    macs = f"{info['macs'] / 1e9:.3f} GMACs per {example}" + ("" if info["macs_complete"] else
                                                             " (some layers not counted)")
    return (f"{info['params']:,} parameters ({info['trainable_params']:,} trainable), {macs}, "
            f"input {shape_text(info['input_shape'])} -> output {shape_text(info['output_shape'])}")


def shape_text(dims):
    """(246, 246, 3) -> "246x246x3"."""
    return "x".join(str(d) for d in dims)


def _unique(weights):
    seen, result = set(), []
    for w in weights:
        if id(w) not in seen:
            seen.add(id(w))
            result.append(w)
    return result


def _calls(model):
    """(layer, node) pairs of `model`'s own graph, inputs first; node None without a graph."""
    by_depth = getattr(model, "_nodes_by_depth", None)
    if not getattr(model, "_is_graph_network", False) or not by_depth:
        return [(layer, None) for layer in model.layers]
    calls = []
    for depth in sorted(by_depth, reverse=True):
        for node in by_depth[depth]:
            if not node.is_input:
                calls.append((node.layer, node))
    return calls


def _collect(model, prefix, rows):
    import tf_keras as keras

    seen_params = set()
    for layer, node in _calls(model):
        if isinstance(layer, keras.Model):
            _collect(layer, f"{prefix}{layer.name}/", rows)
            continue
        inner = getattr(layer, "layer", None)  # tfmot QuantizeWrapper, TimeDistributed-like
        counted = inner if isinstance(inner, keras.layers.Layer) else layer
        # A shared layer (called on several nodes) owns its weights once, computes every call.
        params = 0 if id(layer) in seen_params else int(layer.count_params()) if layer.built else 0
        seen_params.add(id(layer))
        rows.append({
            "name": f"{prefix}{layer.name}",
            "type": counted.__class__.__name__,
            "params": params,
            "macs": _layer_macs(counted, node),
        })


def _shapes(node, layer):
    """(input shapes list, output shape) without the batch axis."""
    if node is not None:
        inputs = [tuple(t.shape[1:]) for t in node.keras_inputs]
        outputs = [tuple(t.shape[1:]) for t in _flatten(node.outputs)]
    else:
        inputs = [tuple(s[1:]) for s in _as_list(layer.input_shape)]
        outputs = [tuple(s[1:]) for s in _as_list(layer.output_shape)]
    return inputs, outputs[0] if outputs else ()


def _flatten(structure):
    import tensorflow as tf

    return tf.nest.flatten(structure)


def _as_list(shape):
    return shape if isinstance(shape, list) else [shape]


def _prod(dims):
    result = 1
    for d in dims:
        result *= int(d)
    return result


def _layer_macs(layer, node):
    kind = layer.__class__.__name__
    own = getattr(layer, "macs", None)  # a composite layer that counts itself (TriPlaneAttention)
    if kind not in _COUNTERS and not callable(own):
        return 0
    try:
        inputs, output = _shapes(node, layer)
    except (AttributeError, RuntimeError):
        return None
    if any(d is None for shape in inputs for d in shape) or any(d is None for d in output):
        return None
    if kind not in _COUNTERS:
        return int(own(inputs[0]))
    return int(_COUNTERS[kind](layer, inputs, output, node))


def _conv(layer, inputs, output, node):
    kernel = _prod(layer.kernel_size)
    groups = getattr(layer, "groups", 1) or 1
    return _prod(output[:-1]) * output[-1] * kernel * inputs[0][-1] // groups


def _depthwise(layer, inputs, output, node):
    return _prod(output[:-1]) * inputs[0][-1] * layer.depth_multiplier * _prod(layer.kernel_size)


def _separable(layer, inputs, output, node):
    depthwise_channels = inputs[0][-1] * layer.depth_multiplier
    depthwise = _prod(output[:-1]) * depthwise_channels * _prod(layer.kernel_size)
    return depthwise + _prod(output[:-1]) * depthwise_channels * output[-1]


def _transpose(layer, inputs, output, node):
    return _prod(inputs[0][:-1]) * inputs[0][-1] * _prod(layer.kernel_size) * output[-1]


def _dense(layer, inputs, output, node):
    return _prod(inputs[0][:-1]) * inputs[0][-1] * output[-1]


def _attention(layer, inputs, output, node):
    query, value, key = _attention_shapes(inputs, node)
    heads, key_dim = layer._num_heads, layer._key_dim
    value_dim = layer._value_dim or key_dim
    tq, tk = _prod(query[:-1]), _prod(key[:-1])
    projections = (
        tq * query[-1] * heads * key_dim
        + tk * key[-1] * heads * key_dim
        + _prod(value[:-1]) * value[-1] * heads * value_dim
        + tq * heads * value_dim * output[-1]
    )
    return projections + heads * tq * tk * key_dim + heads * tq * tk * value_dim


def _attention_shapes(inputs, node):
    """(query, value, key) shapes of a MultiHeadAttention call; key defaults to value."""
    if node is None:
        query = inputs[0]
        value = inputs[1] if len(inputs) > 1 else query
        return query, value, inputs[2] if len(inputs) > 2 else value
    args, kwargs = list(node.call_args), dict(node.call_kwargs)
    names = ["query", "value", "key"]
    found = dict(zip(names, args))
    for name in names:
        if name in kwargs and kwargs[name] is not None:
            found[name] = kwargs[name]
    shape = {k: tuple(v.shape[1:]) for k, v in found.items() if v is not None}
    value = shape.get("value", shape["query"])
    return shape["query"], value, shape.get("key", value)


_COUNTERS = {
    "Conv1D": _conv,
    "Conv2D": _conv,
    "Conv3D": _conv,
    "DepthwiseConv2D": _depthwise,
    "SeparableConv2D": _separable,
    "Conv2DTranspose": _transpose,
    "Dense": _dense,
    "MultiHeadAttention": _attention,
}
