import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from common.layers import PositionEmbedding, attention_block, residual_conv_block


def _model():
    inputs = keras.Input((8, 8, 3))
    x = residual_conv_block(inputs, 8, name="res1")
    x = residual_conv_block(x, 8, name="res2")
    x = attention_block(x, num_heads=2, key_dim=4, name="attn")
    outputs = keras.layers.Conv2D(1, 1, name="head")(x)
    return keras.Model(inputs, outputs)


def test_residual_block_shapes_and_projection():
    inputs = keras.Input((8, 8, 3))
    y = residual_conv_block(inputs, 16, kernel_size=3, name="blk")
    model = keras.Model(inputs, y)
    assert y.shape.as_list() == [None, 8, 8, 16]
    names = [layer.name for layer in model.layers]
    assert "blk_proj" in names and "blk_proj_bn" in names
    assert all(name.startswith("blk_") for name in names[1:])
    # Same channel count: identity shortcut, no projection.
    same = residual_conv_block(y, 16, name="blk2")
    assert same.shape.as_list() == [None, 8, 8, 16]
    assert "blk2_proj" not in [layer.name for layer in keras.Model(inputs, same).layers]


def test_residual_block_default_names_are_unique():
    inputs = keras.Input((4, 4, 2))
    y = residual_conv_block(residual_conv_block(inputs, 4), 4)
    names = [layer.name for layer in keras.Model(inputs, y).layers]
    assert len(names) == len(set(names))


def test_attention_block_shapes_any_batch():
    inputs = keras.Input((4, 5, 6))
    model = keras.Model(inputs, attention_block(inputs, num_heads=2, key_dim=4, name="a"))
    assert model.output_shape == (None, 4, 5, 6)
    for batch in (1, 3):
        out = model(np.random.default_rng(0).normal(size=(batch, 4, 5, 6)).astype("float32"))
        assert out.shape == (batch, 4, 5, 6)
    names = {layer.name for layer in model.layers}
    assert {"a_tokens", "a_pos", "a_mha", "a_add", "a_norm", "a_map"} <= names
    no_pos = attention_block(keras.Input((4, 5, 6)), position_embedding=False, name="b")
    assert no_pos.shape.as_list() == [None, 4, 5, 6]


def test_attention_block_needs_static_shape():
    with pytest.raises(ValueError, match="static"):
        attention_block(keras.Input((None, None, 8)), name="dyn")


def test_position_embedding_adds_learned_vector_and_round_trips():
    layer = PositionEmbedding(initializer="ones", name="pos")
    x = np.zeros((2, 3, 4), "float32")
    np.testing.assert_allclose(layer(x).numpy(), np.ones((2, 3, 4)))
    assert layer.trainable_weights[0].shape == (3, 4)
    config = layer.get_config()
    clone = PositionEmbedding.from_config(config)
    assert clone.name == "pos"
    assert keras.initializers.serialize(clone.initializer) == keras.initializers.serialize(
        layer.initializer
    )
    # The default initializer survives a round trip too.
    default = PositionEmbedding.from_config(PositionEmbedding().get_config())
    assert isinstance(default.initializer, keras.initializers.TruncatedNormal)


def test_model_saves_as_keras_and_reloads_identically(tmp_path):
    keras.utils.set_random_seed(0)
    model = _model()
    rng = np.random.default_rng(1)
    x = rng.normal(size=(4, 8, 8, 3)).astype("float32")
    # Non-default values everywhere (BN statistics, position embedding), positive variances.
    model.set_weights(
        [rng.uniform(0.5, 1.5, size=w.shape).astype("float32") for w in model.get_weights()]
    )
    path = tmp_path / "model.keras"
    model.save(path)
    reloaded = keras.models.load_model(path, compile=False)
    assert isinstance(reloaded.get_layer("attn_pos"), PositionEmbedding)
    expected = model(x, training=False).numpy()
    assert expected.std() > 1e-3  # not a constant output that would compare equal by accident
    np.testing.assert_array_equal(expected, reloaded(x, training=False).numpy())
    # The functional config round-trips without the file too.
    clone = keras.Model.from_config(model.get_config())
    assert [layer.name for layer in clone.layers] == [layer.name for layer in model.layers]
    assert tf.reduce_all(tf.equal(clone(x[:1]).shape, (1, 8, 8, 1)))


def _block_model(size, channels=6, **kwargs):
    inputs = keras.Input((size, size, channels))
    return keras.Model(inputs, attention_block(inputs, num_heads=2, key_dim=4, name="a", **kwargs))


def test_attention_block_pooled_keys_values_shapes():
    model = _block_model(8, kv_size=2)
    assert model.output_shape == (None, 8, 8, 6)  # every position still gets an output
    assert model.get_layer("a_kv_tokens").output_shape == (None, 4, 6)  # 2 x 2 pooled keys/values
    # A map no larger than kv_size is not pooled.
    assert "a_kv_pool" not in {layer.name for layer in _block_model(4, kv_size=7).layers}


def test_attention_block_pooled_keys_values_equal_full_attention_on_blockwise_constant_maps():
    """Keys/values repeated k times leave a softmax-weighted average unchanged, so on a map that
    is constant on 2 x 2 blocks, attention over the pooled map equals attention over every
    position (same weights)."""
    full = _block_model(8, position_embedding=False)
    pooled = _block_model(8, position_embedding=False, kv_size=4)
    pooled.set_weights(full.get_weights())
    coarse = np.random.default_rng(1).normal(size=(3, 4, 4, 6)).astype("float32")
    x = np.repeat(np.repeat(coarse, 2, axis=1), 2, axis=2)
    np.testing.assert_allclose(pooled(x).numpy(), full(x).numpy(), atol=1e-5)
    # On a general map they differ: the pooling is real.
    x = np.random.default_rng(2).normal(size=(3, 8, 8, 6)).astype("float32")
    assert np.abs(pooled(x).numpy() - full(x).numpy()).max() > 1e-3


def test_attention_block_query_pooling_and_batch_norm():
    model = _block_model(28, query_size=7, kv_size=7, norm="batch")
    assert model.output_shape == (None, 7, 7, 6)
    assert isinstance(model.get_layer("a_norm"), keras.layers.BatchNormalization)
    assert "a_kv_pool" not in {layer.name for layer in model.layers}  # queries already 7 x 7
    out = model(np.ones((2, 28, 28, 6), "float32"), training=False).numpy()
    assert out.shape == (2, 7, 7, 6) and np.isfinite(out).all()
    with pytest.raises(ValueError, match="norm"):
        _block_model(8, norm="group")


def test_triplane_attention_gates_the_map_three_ways_and_round_trips(tmp_path):
    from common.layers import TriPlaneAttention

    keras.utils.set_random_seed(0)
    inputs = keras.Input((6, 5, 4))
    layer = TriPlaneAttention(num_heads=2, key_dim=3, name="tri")
    model = keras.Model(inputs, layer(inputs))
    x = np.random.default_rng(0).normal(size=(2, 6, 5, 4)).astype(np.float32)
    y = model(x).numpy()
    # By hand from the three attention sublayers: planes (H, W), (H, C), (W, C), sigmoid gates.
    att = layer.attention
    c = tf.sigmoid(att["channels"](x.mean(-1), x.mean(-1))).numpy()[..., None]
    w = tf.sigmoid(att["width"](x.mean(2), x.mean(2))).numpy()[:, :, None, :]
    h = tf.sigmoid(att["height"](x.mean(1), x.mean(1))).numpy()[:, None, :, :]
    np.testing.assert_allclose(y, x * (c + w + h) / 3, rtol=1e-5, atol=1e-6)
    # 2 heads x 3 key size: each plane's MHA has 4 * 6 * d + 3 * 6 + d weights (d: token width).
    assert model.count_params() == sum(4 * 6 * d + 18 + d for d in (5, 4, 4))
    model.save(tmp_path / "tri.keras")
    again = keras.models.load_model(tmp_path / "tri.keras")
    np.testing.assert_allclose(again(x).numpy(), y, rtol=1e-6)
    assert again.get_layer("tri").get_config()["num_heads"] == 2


def test_triplane_attention_under_mixed_precision():
    from common.layers import TriPlaneAttention

    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        inputs = keras.Input((8, 8, 4))  # a float32 input, as the model front hands it over
        y = TriPlaneAttention(num_heads=2, key_dim=3)(inputs)
        assert y.dtype == tf.bfloat16
        out = keras.Model(inputs, y)(np.ones((1, 8, 8, 4), np.float32))
        assert out.shape == (1, 8, 8, 4) and np.isfinite(np.asarray(out, np.float32)).all()
        # A float32 copy made while the global policy is still mixed (as evaluation does).
        copy = TriPlaneAttention.from_config({**TriPlaneAttention(2, 3).get_config(), "dtype": "float32"})
        assert copy(np.ones((1, 8, 8, 4), np.float32)).dtype == tf.float32
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_triplane_mean_max_pooling_adds_the_two_planes_and_keeps_the_count(tmp_path):
    from common.complexity import model_complexity
    from common.layers import TriPlaneAttention

    keras.utils.set_random_seed(0)
    inputs = keras.Input((6, 5, 4))
    layer = TriPlaneAttention(num_heads=2, key_dim=3, pooling="mean_max", name="tri")
    model = keras.Model(inputs, layer(inputs))
    x = np.random.default_rng(1).normal(size=(2, 6, 5, 4)).astype(np.float32)
    y = model(x).numpy()
    att = layer.attention
    planes = [x.mean(axis) + x.max(axis) for axis in (-1, 2, 1)]  # paper 4: mean + max, added
    c, w, h = (tf.sigmoid(att[name](p, p)).numpy() for name, p in zip(TriPlaneAttention.PLANES, planes))
    np.testing.assert_allclose(y, x * (c[..., None] + w[:, :, None, :] + h[:, None, :, :]) / 3,
                               rtol=1e-5, atol=1e-6)
    assert model.count_params() == sum(4 * 6 * d + 18 + d for d in (5, 4, 4))  # as with "mean"
    # MACs: per plane 4 projections (tokens x width x 6) + 2 products (tokens^2 x 6).
    expected = sum(4 * t * d * 6 + 2 * t * t * 6 for t, d in ((6, 5), (6, 4), (5, 4)))
    assert model_complexity(model)["macs"] == expected
    model.save(tmp_path / "tri.keras")
    assert keras.models.load_model(tmp_path / "tri.keras").get_layer("tri").pooling == "mean_max"
    with pytest.raises(ValueError, match="pooling"):
        TriPlaneAttention(pooling="max")


def test_cbam_block_gates_channels_then_positions():
    from common.layers import cbam_block

    keras.utils.set_random_seed(0)
    inputs = keras.Input((5, 5, 16))
    model = keras.Model(inputs, cbam_block(inputs, ratio=0.25, kernel_size=3, name="c"))
    # Shared MLP 16 -> 4 -> 16 (with biases) and a 3x3 convolution of the 2 pooled planes to 1.
    assert model.count_params() == (16 * 4 + 4) + (4 * 16 + 16) + (3 * 3 * 2 + 1)
    x = np.random.default_rng(0).normal(size=(2, 5, 5, 16)).astype(np.float32)
    reduce, expand, conv = (model.get_layer(f"c_{n}") for n in ("reduce", "expand", "spatial_gate"))

    def mlp(v):
        return expand(reduce(v)).numpy()

    gated = x * tf.sigmoid(mlp(x.mean((1, 2), keepdims=True)) + mlp(x.max((1, 2), keepdims=True))).numpy()
    plane = np.concatenate([gated.mean(-1, keepdims=True), gated.max(-1, keepdims=True)], -1)
    np.testing.assert_allclose(model(x).numpy(), gated * conv(plane).numpy(), rtol=1e-5, atol=1e-6)
