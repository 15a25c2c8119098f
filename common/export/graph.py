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


