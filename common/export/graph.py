"""Graph surgery for quantization: nested Keras models inlined into one flat functional graph.

tensorflow-model-optimization refuses a model whose layer is itself a model (a keras.applications
backbone used as a layer), so QAT first replays every nested model's graph into a flat one.
"""

from common.errors import ExportError


def _is_graph_model(layer):
    import tf_keras as keras

    return isinstance(layer, keras.Model) and getattr(layer, "_is_graph_network", False)


def has_nested_models(model):
    """True when a layer of `model` is itself a Keras model."""
    import tf_keras as keras

    return any(isinstance(layer, keras.Model) for layer in model.layers)


def inline_nested_models(model):
    """A functional model computing the same as `model`, with nested models inlined.

    Every layer of a nested functional/Sequential model (a keras.applications backbone used as a
    layer) becomes a layer of the returned flat model. Layer objects are shared with `model` (same
    weights); a layer whose name clashes with one already in the flat model is copied under the
    name `<submodel>/<layer>`. Call arguments such as `training=False` given to the nested model
    are dropped.

    Raises:
        ExportError: a nested model is subclassed (no graph to inline).
    """
    import tf_keras as keras

    used_names, renamed = set(), {}
    inputs = [
        keras.Input(shape=t.shape[1:], dtype=t.dtype, name=layer.name)
        for t, layer in zip(model.inputs, model._input_layers)
    ]
    used_names.update(layer.name for layer in model._input_layers)
    outputs = _inline(model, inputs if len(inputs) > 1 else inputs[0], used_names, renamed, prefix="")
    return keras.Model(inputs, outputs, name=model.name)


def _inline(model, inputs, used_names, renamed, prefix):
    """Replay `model`'s graph on `inputs`, recursing into nested models (cf. tf_keras
    Functional._run_internal_graph)."""
    import tensorflow as tf
    import tf_keras as keras

    if not _is_graph_model(model):
        raise ExportError(f"layer {model.name}: a subclassed nested model cannot be inlined for export")
    flat_inputs = model._flatten_to_reference_inputs(inputs)
    usage = model._tensor_usage_count
    tensors = {}
    for ref, value in zip(model.inputs, flat_inputs):
        tensors[str(id(ref))] = [value] * usage[str(id(ref))]
    for depth in sorted(model._nodes_by_depth, reverse=True):
        for node in model._nodes_by_depth[depth]:
            if node.is_input or any(i not in tensors for i in node.flat_input_ids):
                continue
            args, kwargs = node.map_arguments(tensors)
            layer = node.layer
            if isinstance(layer, keras.Model):
                outputs = _inline(layer, args[0], used_names, renamed, prefix=f"{prefix}{layer.name}/")
            else:
                outputs = _call_unique(layer, args, kwargs, used_names, renamed, prefix)
            for out_id, value in zip(node.flat_output_ids, tf.nest.flatten(outputs)):
                tensors[out_id] = [value] * usage[out_id]
    results = [tensors[str(id(ref))].pop() for ref in model.outputs]
    return tf.nest.pack_sequence_as(model._nested_outputs, results)


def _call_unique(layer, args, kwargs, used_names, renamed, prefix):
    """Call `layer`, or a same-weights copy of it when its name is taken in the flat graph."""
    if id(layer) in renamed:
        return renamed[id(layer)](*args, **kwargs)
    if layer.name not in used_names:
        used_names.add(layer.name)
        renamed[id(layer)] = layer
        return layer(*args, **kwargs)
    config = layer.get_config()
    name = f"{prefix}{layer.name}"
    while name in used_names:
        name += "_"
    config["name"] = name
    copy = layer.__class__.from_config(config)
    used_names.add(name)
    renamed[id(layer)] = copy
    outputs = copy(*args, **kwargs)
    copy.set_weights(layer.get_weights())
    return outputs




def split_at(model, layer_name):
    """`model` cut after the layer `layer_name`: (front, body), two functional models with
    `model`'s layers (shared weights). front: `model`'s input -> that layer's output; body: that
    output (a new Input of its shape) -> `model`'s output, so body(front(x)) == model(x).

    Raises:
        ExportError: no such layer, or a layer after it also reads what comes before it.
    """
    import tensorflow as tf
    import tf_keras as keras

    try:
        cut = model.get_layer(layer_name).output
    except ValueError:
        raise ExportError(f"model {model.name}: has no layer {layer_name!r} to split at") from None
    front = keras.Model(model.inputs, cut, name=f"{model.name}_front")
    body_input = keras.Input(shape=cut.shape[1:], dtype=cut.dtype, name=f"{layer_name}_output")
    usage = model._tensor_usage_count
    tensors = {str(id(cut)): [body_input] * usage[str(id(cut))]}
    for depth in sorted(model._nodes_by_depth, reverse=True):
        for node in model._nodes_by_depth[depth]:
            if node.is_input or any(i not in tensors for i in node.flat_input_ids):
                continue
            if node.layer.name == layer_name:
                continue
            args, kwargs = node.map_arguments(tensors)
            for out_id, value in zip(node.flat_output_ids, tf.nest.flatten(node.layer(*args, **kwargs))):
                tensors[out_id] = [value] * usage[out_id]
    missing = [ref for ref in model.outputs if str(id(ref)) not in tensors]
    if missing:
        raise ExportError(f"model {model.name}: layers after {layer_name!r} also read tensors before it; "
                          "it cannot be split there")
    outputs = [tensors[str(id(ref))].pop() for ref in model.outputs]
    body = keras.Model(body_input, tf.nest.pack_sequence_as(model._nested_outputs, outputs),
                       name=f"{model.name}_body")
    return front, body
