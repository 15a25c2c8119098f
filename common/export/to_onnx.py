"""The int8 TFLite file as an ONNX model for ONNX Runtime: the host CPU's int8 file where LiteRT's
int8 convolutions are slow (x86 without AVX-512 VNNI, issue 27).

Why a second runtime: on AVX2 XNNPACK multiplies 8-bit weights with 16-bit `vpmaddwd` kernels,
while ONNX Runtime's MLAS multiplies uint8 activations by int8 weights with `vpmaddubsw`, about
1.7x faster there (benchmarks/INT8_RUNTIMES_x86-64-v3.md). That instruction adds pairs of products
into 16 bits with saturation, so every weight must fit in 7 bits ([-63, 63]); channels whose int8
weights reach past 63 are requantized with a wider scale (ONNX Runtime's own `reduce_range` does
the same). Everything else is taken from the .tflite as it is: the quantization of every
activation, the weights, the biases. So the ONNX file is the edge model, op for op, with at most
one bit less weight precision, and it is checked against Keras like every export.

Mapping (int8 tensors become uint8 with the zero point + 128; 4-D tensors are NCHW inside, the
graph input and output stay NHWC float32 as in the .tflite):

    CONV_2D, DEPTHWISE_CONV_2D (int8)  QLinearConv (fused ReLU/ReLU6 as a Clip where it clips)
    MAX_POOL_2D                        MaxPool on uint8
    RESIZE_BILINEAR, _NEAREST_NEIGHBOR Resize on uint8
    CONCATENATION                      Concat, or com.microsoft QLinearConcat for unequal scales
    STRIDED_SLICE (constant), PAD      Slice, Pad (with the zero point)
    RELU, RELU6                        Clip of the uint8 codes
    QUANTIZE, DEQUANTIZE               QuantizeLinear, DequantizeLinear
    SELECT_V2, NOT_EQUAL, EQUAL        Where, Not(Equal), Equal
    ADD, SUB, MUL, LOGISTIC, SOFTMAX,  in float32 between DequantizeLinear and QuantizeLinear
    AVERAGE_POOL_2D, MEAN (over H, W), (cheap next to the convolutions; ONNX Runtime fuses some
    FULLY_CONNECTED                    back into its quantized forms)
    the same ops on float32 tensors    their float ONNX ops

Anything else (or activations other than 4-D, and 2-D after MEAN) raises `NotConvertible`: the export then
writes no ONNX file and the report says which operator stopped it.

Needs the `onnx` package (to write the file); reads the .tflite with LiteRT's flatbuffer schema.
"""

import numpy as np

from common.onnx_runtime import SOURCE_KEY

#: The file the edge export writes beside model_int8.tflite.
ONNX_NAME = "model_int8.onnx"
OPSET = 17
MS_DOMAIN = "com.microsoft"
#: Largest weight magnitude `vpmaddubsw` can take without saturating (255 * 64 * 2 < 2**15).
WEIGHT_LIMIT = 63

_NHWC_TO_NCHW = (0, 3, 1, 2)
_NCHW_TO_NHWC = (0, 2, 3, 1)
_AXIS_NHWC_TO_NCHW = {0: 0, 1: 2, 2: 3, 3: 1}


class NotConvertible(ValueError):
    """The .tflite holds an operator or tensor this converter does not map (the message names it)."""


class _Value:
    """An ONNX value standing for one TFLite tensor: its name, and (scale, uint8 zero point) when
    it is quantized (None for float32, bool)."""

    def __init__(self, name, quant=None):
        self.name, self.quant = name, quant


class _Converter:
    def __init__(self, model):
        from ai_edge_litert import schema_py_generated as schema

        self.model = model
        if len(model.subgraphs) != 1:
            raise NotConvertible(f"{len(model.subgraphs)} subgraphs (one expected)")
        self.graph = model.subgraphs[0]
        self.op_names = {value: name for name, value in vars(schema.BuiltinOperator).items()
                         if not name.startswith("_")}
        self.type_names = {value: name for name, value in vars(schema.TensorType).items()
                           if not name.startswith("_")}
        self.nodes, self.initializers, self.values, self.constants = [], [], {}, {}
        self.counter = 0
        self.channels = self.requantized_channels = 0

    # -- TFLite tensors ------------------------------------------------------------------------

    def tensor(self, index):
        return self.graph.tensors[index]

    def shape(self, index):
        shape = self.tensor(index).shape
        return [int(d) for d in shape] if shape is not None else []

    def type_name(self, index):
        return self.type_names[self.tensor(index).type]

    def constant_array(self, index):
        """The data of a constant tensor as a numpy array of its type and shape, or None."""
        tensor = self.tensor(index)
        buffer = self.model.buffers[tensor.buffer]
        data = buffer.data
        if data is None or len(data) == 0:
            if getattr(buffer, "offset", 0) > 1:
                raise NotConvertible(f"tensor {self.tensor_name(index)}: weights outside the flatbuffer")
            return None
        dtype = {"FLOAT32": np.float32, "INT8": np.int8, "UINT8": np.uint8, "INT32": np.int32,
                 "INT64": np.int64, "BOOL": np.bool_, "FLOAT16": np.float16}.get(self.type_name(index))
        if dtype is None:
            raise NotConvertible(f"tensor {self.tensor_name(index)}: constant of type {self.type_name(index)}")
        return np.frombuffer(np.asarray(data, np.uint8).tobytes(), dtype).reshape(self.shape(index))

    def tensor_name(self, index):
        name = self.tensor(index).name
        return name.decode() if isinstance(name, bytes) else str(name)

    def quantization(self, index):
        """(scales array, zero points array, axis) of a tensor, or None when it is not quantized."""
        q = self.tensor(index).quantization
        if q is None or q.scale is None or len(q.scale) == 0:
            return None
        return np.asarray(q.scale, np.float32), np.asarray(q.zeroPoint, np.int64), int(q.quantizedDimension)

    def activation_quant(self, index):
        """(scale, uint8 zero point) of an int8 activation tensor, None for float32/bool."""
        kind = self.type_name(index)
        if kind in ("FLOAT32", "BOOL"):
            return None
        q = self.quantization(index)
        if kind != "INT8" or q is None or len(q[0]) != 1:
            raise NotConvertible(f"tensor {self.tensor_name(index)}: activations of type {kind} "
                                 "(float32 or per-tensor int8 expected)")
        return float(q[0][0]), int(q[1][0]) + 128

    # -- ONNX graph ----------------------------------------------------------------------------

    def fresh(self, hint):
        self.counter += 1
        return f"{hint}_{self.counter}"

    def const(self, array, hint="const"):
        from onnx import numpy_helper

        array = np.asarray(array)
        key = (array.dtype.str, array.shape, array.tobytes())
        if len(key[2]) <= 64 and key in self.constants:  # small constants (scales, zero points) once
            return self.constants[key]
        name = self.fresh(hint)
        self.initializers.append(numpy_helper.from_array(array, name))
        if len(key[2]) <= 64:
            self.constants[key] = name
        return name

    def node(self, op_type, inputs, hint, domain=None, **attributes):
        from onnx import helper

        output = self.fresh(hint)
        self.nodes.append(helper.make_node(op_type, list(inputs), [output], name=output, domain=domain,
                                           **attributes))
        return output

    def quant_inputs(self, quant):
        scale, zero = quant
        return self.const(np.float32(scale), "scale"), self.const(np.uint8(zero), "zero")

    def to_float(self, value):
        if value.quant is None:
            return value.name
        return self.node("DequantizeLinear", [value.name, *self.quant_inputs(value.quant)], "dequantized")

    def to_quant(self, name, quant):
        return self.node("QuantizeLinear", [name, *self.quant_inputs(quant)], "quantized")

    def requantize(self, value, quant):
        if value.quant == quant:
            return value.name
        if value.quant is None:
            return self.to_quant(value.name, quant)
        return self.to_quant(self.to_float(value), quant)

    def value(self, index):
        if index in self.values:
            return self.values[index]
        array = self.constant_array(index)
        if array is None:
            raise NotConvertible(f"tensor {self.tensor_name(index)} is used before it is made")
        return _Value(self.const(self.layout_constant(array, index), "weights"),
                      self.constant_quant(index))

    def constant_quant(self, index):
        return self.activation_quant(index) if self.type_name(index) == "INT8" else None

    def layout_constant(self, array, index):
        """A constant as the NCHW graph sees it: 4-D ones transposed, int8 shifted to uint8."""
        if array.dtype == np.int8:
            array = (array.astype(np.int16) + 128).astype(np.uint8)
        if array.ndim == 4:
            array = np.transpose(array, _NHWC_TO_NCHW)
        return array

    def broadcast_constant(self, index, as_float, rank=4):
        """A constant operand of an elementwise op: its values (float when `as_float`), against 4-D
        activations (`rank`) reshaped from NHWC broadcasting to NCHW, against 2-D ones as they are."""
        array = self.constant_array(index)
        q = self.quantization(index)
        if as_float and q is not None and array.dtype.kind in "iu":
            scales, zeros, axis = q
            if len(scales) != 1:
                raise NotConvertible(f"tensor {self.tensor_name(index)}: per-channel quantized operand")
            array = ((array.astype(np.float32) - zeros[0]) * scales[0]).astype(np.float32)
        elif array.dtype == np.int8:
            array = (array.astype(np.int16) + 128).astype(np.uint8)
        if rank == 4 and array.ndim and array.size > 1:
            array = np.transpose(array.reshape((1,) * (4 - array.ndim) + array.shape), _NHWC_TO_NCHW)
        return self.const(array, "operand")

    def set_output(self, index, name, quant="auto"):
        self.values[index] = _Value(name, self.activation_quant(index) if quant == "auto" else quant)

    def emit_float(self, index, name):
        """Output tensor `index` computed as float32 `name`: quantized when the tensor is int8."""
        quant = self.activation_quant(index)
        self.set_output(index, name if quant is None else self.to_quant(name, quant), quant)

    def check_4d(self, index, op):
        if len(self.shape(index)) != 4:
            raise NotConvertible(f"{op} on a {len(self.shape(index))}-D tensor {self.tensor_name(index)} "
                                 "(4-D NHWC expected)")

    # -- operators -----------------------------------------------------------------------------

    def convert(self):
        graph_inputs = []
        for index in self.graph.inputs:
            shape = self.shape(index)
            if self.type_name(index) != "FLOAT32" or len(shape) != 4:
                raise NotConvertible(f"input {self.tensor_name(index)}: {self.type_name(index)} {shape} "
                                     "(a float32 NHWC image batch expected)")
            name = f"input_{len(graph_inputs)}"
            graph_inputs.append((name, ["batch", *shape[1:]]))
            self.values[index] = _Value(self.node("Transpose", [name], "nchw", perm=list(_NHWC_TO_NCHW)))
        for op in self.graph.operators:
            code = self.model.operatorCodes[op.opcodeIndex]
            name = self.op_names.get(max(code.builtinCode, code.deprecatedBuiltinCode), "CUSTOM")
            handler = getattr(self, f"op_{name.lower()}", None)
            if handler is None:
                raise NotConvertible(f"operator {name} has no ONNX mapping here")
            handler(op, name)
        graph_outputs = []
        for index in self.graph.outputs:
            shape = self.shape(index)
            name = self.to_float(self.values[index])
            if len(shape) == 4:
                name = self.node("Transpose", [name], "nhwc", perm=list(_NCHW_TO_NHWC))
            elif len(shape) != 2:
                raise NotConvertible(f"output {self.tensor_name(index)} of rank {len(shape)} (4-D or 2-D expected)")
            graph_outputs.append((name, ["batch", *shape[1:]]))
        return graph_inputs, graph_outputs

    def clip(self, name, low, high, quant=None):
        """`name` clipped to the real range [low, high] (high None: no upper bound): as floats,
        or, with `quant` (scale, zero point), as its uint8 codes; a clip the codes' range already
        makes is left out."""
        if quant is None:
            return self.node("Clip", [name, self.const(np.float32(low)),
                                      self.const(np.float32(np.inf if high is None else high))], "clipped")
        scale, zero = quant
        q_low = max(0, int(round(low / scale)) + zero)
        q_high = 255 if high is None else min(255, int(round(high / scale)) + zero)
        if q_low <= 0 and q_high >= 255:
            return name
        return self.node("Clip", [name, self.const(np.uint8(q_low)), self.const(np.uint8(q_high))], "clipped")

    def fused_activation(self, name, index, options, as_float):
        """Apply a TFLite fused activation to the op's result `name` (float, or uint8 in the
        quantization of tensor `index`)."""
        kind = getattr(options, "fusedActivationFunction", 0) if options is not None else 0
        if kind == 0:
            return name
        bounds = {1: (0.0, None), 3: (0.0, 6.0), 2: (-1.0, 1.0)}.get(kind)
        if bounds is None:
            raise NotConvertible(f"fused activation {kind} has no ONNX mapping here")
        return self.clip(name, *bounds, quant=None if as_float else self.activation_quant(index))

    def pads(self, padding, in_hw, out_hw, kernel_hw, strides, dilations):
        """ONNX pads [top, left, bottom, right] of TFLite SAME (0) or VALID (1) padding."""
        if padding == 1:
            return [0, 0, 0, 0]
        before, after = [], []
        for size, out, kernel, stride, dilation in zip(in_hw, out_hw, kernel_hw, strides, dilations):
            total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
            before.append(total // 2)
            after.append(total - total // 2)
        return before + after

    def op_conv_2d(self, op, name, depthwise=False):
        x_index, w_index = op.inputs[0], op.inputs[1]
        b_index = op.inputs[2] if len(op.inputs) > 2 else -1
        out_index, options = op.outputs[0], op.builtinOptions
        self.check_4d(x_index, name)
        weights = self.constant_array(w_index)
        if weights is None:
            raise NotConvertible(f"{name} {self.tensor_name(out_index)}: weights are not constant")
        x = self.value(x_index)
        _, kh, kw, _ = weights.shape
        strides = [options.strideH, options.strideW]
        dilations = [options.dilationHFactor, options.dilationWFactor]
        in_hw, out_hw = self.shape(x_index)[1:3], self.shape(out_index)[1:3]
        attributes = {"kernel_shape": [kh, kw], "strides": strides, "dilations": dilations,
                      "pads": self.pads(options.padding, in_hw, out_hw, [kh, kw], strides, dilations)}
        if depthwise:  # [1, H, W, C * m] -> [C * m, 1, H, W], one group per input channel
            attributes["group"] = self.shape(x_index)[3]
            weights = np.transpose(weights, (3, 0, 1, 2))
        else:  # [O, H, W, I] -> [O, I, H, W]
            weights = np.transpose(weights, (0, 3, 1, 2))
        bias = self.constant_array(b_index) if b_index >= 0 else None
        if x.quant is None:
            if weights.dtype != np.float32:
                raise NotConvertible(f"{name} {self.tensor_name(out_index)}: float input with {weights.dtype} weights")
            inputs = [x.name, self.const(np.ascontiguousarray(weights), "weights")]
            if bias is not None:
                inputs.append(self.const(bias.astype(np.float32), "bias"))
            y = self.node("Conv", inputs, "conv", **attributes)
            self.emit_float(out_index, self.fused_activation(y, out_index, options, as_float=True))
            return
        w_q = self.quantization(w_index)
        if weights.dtype != np.int8 or w_q is None or np.any(w_q[1] != 0):
            raise NotConvertible(f"{name} {self.tensor_name(out_index)}: weights not symmetric int8")
        w7, w_scale, factor = seven_bit(weights, np.broadcast_to(w_q[0], (weights.shape[0],)))
        self.channels += len(factor)
        self.requantized_channels += int(np.sum(factor > 1.0))
        inputs = [x.name, *self.quant_inputs(x.quant), self.const(w7, "weights"), self.const(w_scale, "w_scale"),
                  self.const(np.zeros(len(w_scale), np.int8), "w_zero"),
                  *self.quant_inputs(self.activation_quant(out_index))]
        if bias is not None:
            inputs.append(self.const(np.round(bias.astype(np.float64) / factor).astype(np.int32), "bias"))
        y = self.node("QLinearConv", inputs, "qconv", **attributes)
        self.set_output(out_index, self.fused_activation(y, out_index, options, as_float=False))

    def op_depthwise_conv_2d(self, op, name):
        self.op_conv_2d(op, name, depthwise=True)

    def pool_attributes(self, op, name):
        options = op.builtinOptions
        self.check_4d(op.inputs[0], name)
        kernel, strides = [options.filterHeight, options.filterWidth], [options.strideH, options.strideW]
        pads = self.pads(options.padding, self.shape(op.inputs[0])[1:3], self.shape(op.outputs[0])[1:3], kernel,
                         strides, [1, 1])
        return options, {"kernel_shape": kernel, "strides": strides, "pads": pads}

    def op_max_pool_2d(self, op, name):
        options, attributes = self.pool_attributes(op, name)
        x, out_index = self.value(op.inputs[0]), op.outputs[0]
        y = self.node("MaxPool", [x.name], "maxpool", **attributes)
        quant = self.activation_quant(out_index)
        y = self.requantize(_Value(y, x.quant), quant)
        self.set_output(out_index, self.fused_activation(y, out_index, options, as_float=quant is None))

    def op_average_pool_2d(self, op, name):
        options, attributes = self.pool_attributes(op, name)
        y = self.node("AveragePool", [self.to_float(self.value(op.inputs[0]))], "avgpool", count_include_pad=0,
                      **attributes)
        self.emit_float(op.outputs[0], self.fused_activation(y, op.outputs[0], options, as_float=True))

    def resize(self, op, name, mode):
        x_index, out_index, options = op.inputs[0], op.outputs[0], op.builtinOptions
        self.check_4d(x_index, name)
        (in_h, in_w), (out_h, out_w) = self.shape(x_index)[1:3], self.shape(out_index)[1:3]
        scales = np.array([1.0, 1.0, out_h / in_h, out_w / in_w], np.float32)
        if int(in_h * scales[2]) != out_h or int(in_w * scales[3]) != out_w:
            raise NotConvertible(f"{name} {self.tensor_name(out_index)}: {in_h}x{in_w} -> {out_h}x{out_w} "
                                 "is not a whole-number scale")
        if options.alignCorners:
            transform, nearest = "align_corners", "round_prefer_ceil"
        elif options.halfPixelCenters:
            transform = "half_pixel" if mode == "linear" else "tf_half_pixel_for_nn"
            nearest = "floor"
        else:
            transform, nearest = "asymmetric", "floor"
        x = self.value(x_index)
        attributes = {"mode": mode, "coordinate_transformation_mode": transform}
        if mode == "nearest":
            attributes["nearest_mode"] = nearest
        y = self.node("Resize", [x.name, "", self.const(scales, "scales")], "resize", **attributes)
        self.set_output(out_index, self.requantize(_Value(y, x.quant), self.activation_quant(out_index)))

    def op_resize_bilinear(self, op, name):
        self.resize(op, name, "linear")

    def op_resize_nearest_neighbor(self, op, name):
        self.resize(op, name, "nearest")

    def op_concatenation(self, op, name):
        out_index, options = op.outputs[0], op.builtinOptions
        rank = len(self.shape(out_index))
        axis = options.axis % rank if rank else 0
        if rank == 4:
            axis = _AXIS_NHWC_TO_NCHW[axis]
        elif rank != 2:
            raise NotConvertible(f"{name} of {rank}-D tensors")
        values = [self.value(index) for index in op.inputs]
        quant = self.activation_quant(out_index)
        if quant is None:
            y = self.node("Concat", [self.to_float(value) for value in values], "concat", axis=axis)
        elif all(value.quant == quant for value in values):
            y = self.node("Concat", [value.name for value in values], "concat", axis=axis)
        elif all(value.quant is not None for value in values):  # unequal scales: requantized inside
            inputs = [*self.quant_inputs(quant)]
            for value in values:
                inputs += [value.name, *self.quant_inputs(value.quant)]
            y = self.node("QLinearConcat", inputs, "qconcat", domain=MS_DOMAIN, axis=axis)
        else:
            y = self.node("Concat", [self.requantize(value, quant) for value in values], "concat", axis=axis)
        self.set_output(out_index, self.fused_activation(y, out_index, options, as_float=quant is None))

    def activation(self, op, name, low, high):
        """A standalone ReLU / ReLU6: a Clip of the uint8 codes (or floats) to [low, high]."""
        x, out_index = self.value(op.inputs[0]), op.outputs[0]
        quant = self.activation_quant(out_index)
        source = self.to_float(x) if quant is None else self.requantize(x, quant)
        self.set_output(out_index, self.clip(source, low, high, quant), quant)

    def op_relu(self, op, name):
        self.activation(op, name, 0.0, None)

    def op_relu6(self, op, name):
        self.activation(op, name, 0.0, 6.0)

    def op_pad(self, op, name):
        """Constant padding of a 4-D tensor with zeros (the zero point, when quantized)."""
        x_index, out_index = op.inputs[0], op.outputs[0]
        paddings = self.constant_array(op.inputs[1])
        if len(self.shape(x_index)) != 4 or paddings is None:
            raise NotConvertible(f"{name} {self.tensor_name(out_index)}: only constant padding of 4-D tensors")
        order = list(_NHWC_TO_NCHW)
        pads = [int(paddings[a][0]) for a in order] + [int(paddings[a][1]) for a in order]
        x = self.value(x_index)
        fill = self.const(np.uint8(x.quant[1]) if x.quant else np.float32(0.0), "fill")
        y = self.node("Pad", [x.name, self.const(np.array(pads, np.int64), "pads"), fill], "pad", mode="constant")
        self.set_output(out_index, self.requantize(_Value(y, x.quant), self.activation_quant(out_index)))

    def op_quantize(self, op, name):
        out_index = op.outputs[0]
        self.set_output(out_index, self.requantize(self.value(op.inputs[0]), self.activation_quant(out_index)))

    def op_dequantize(self, op, name):
        self.set_output(op.outputs[0], self.to_float(self.value(op.inputs[0])), None)

    def operand(self, index, as_float, rank=4):
        """An elementwise operand of an op whose output has `rank` (4 or 2): a constant laid out
        for its broadcasting, or an activation of that rank."""
        if index not in self.values and self.constant_array(index) is not None:
            return self.broadcast_constant(index, as_float, rank)
        value = self.value(index)
        if len(self.shape(index)) not in (0, rank) or rank not in (2, 4):
            raise NotConvertible(f"elementwise operand {self.tensor_name(index)} of rank {len(self.shape(index))}")
        return self.to_float(value) if as_float else value.name

    def elementwise(self, op, name, onnx_op):
        out_index = op.outputs[0]
        rank = len(self.shape(out_index))
        y = self.node(onnx_op, [self.operand(index, True, rank) for index in op.inputs], onnx_op.lower())
        self.emit_float(out_index, self.fused_activation(y, out_index, op.builtinOptions, as_float=True))

    def op_add(self, op, name):
        self.elementwise(op, name, "Add")

    def op_sub(self, op, name):
        self.elementwise(op, name, "Sub")

    def op_mul(self, op, name):
        self.elementwise(op, name, "Mul")

    def op_logistic(self, op, name):
        self.emit_float(op.outputs[0], self.node("Sigmoid", [self.to_float(self.value(op.inputs[0]))], "sigmoid"))

    def op_softmax(self, op, name):
        if abs(getattr(op.builtinOptions, "beta", 1.0) - 1.0) > 1e-6:
            raise NotConvertible(f"{name} with beta {op.builtinOptions.beta}")
        rank = len(self.shape(op.inputs[0]))
        axis = 1 if rank == 4 else -1
        y = self.node("Softmax", [self.to_float(self.value(op.inputs[0]))], "softmax", axis=axis)
        self.emit_float(op.outputs[0], y)

    def op_mean(self, op, name):
        """The global average pool of classifiers: the mean over height and width of 4-D NHWC."""
        x_index, axes_index, out_index = op.inputs[0], op.inputs[1], op.outputs[0]
        axes = self.constant_array(axes_index)
        if len(self.shape(x_index)) != 4 or axes is None or sorted(int(a) % 4 for a in np.ravel(axes)) != [1, 2]:
            raise NotConvertible(f"{name} {self.tensor_name(out_index)}: only the mean over height and width")
        keep = bool(getattr(op.builtinOptions, "keepDims", False))
        y = self.node("ReduceMean", [self.to_float(self.value(x_index))], "mean", axes=[2, 3], keepdims=int(keep))
        self.emit_float(out_index, y)

    def op_fully_connected(self, op, name):
        """A dense layer on a 2-D (batch, features) tensor, in float32 (a classifier's head)."""
        x_index, w_index, out_index, options = op.inputs[0], op.inputs[1], op.outputs[0], op.builtinOptions
        weights = self.constant_array(w_index)
        if len(self.shape(x_index)) != 2 or weights is None or weights.ndim != 2:
            raise NotConvertible(f"{name} {self.tensor_name(out_index)}: 2-D input and constant weights expected")
        x_quant, w_q = self.value(x_index).quant, self.quantization(w_index)
        if weights.dtype == np.int8:
            if w_q is None or np.any(w_q[1] != 0):
                raise NotConvertible(f"{name} {self.tensor_name(out_index)}: weights not symmetric int8")
            weights = weights.astype(np.float32) * np.broadcast_to(w_q[0], (len(weights),))[:, None]
        inputs = [self.to_float(self.value(x_index)), self.const(np.ascontiguousarray(weights.T, np.float32), "weights")]
        y = self.node("MatMul", inputs, "matmul")
        if len(op.inputs) > 2 and op.inputs[2] >= 0:
            bias = self.constant_array(op.inputs[2])
            if bias.dtype == np.int32:  # scale: input scale x weight scale, per output
                bias = bias * (x_quant[0] * np.broadcast_to(w_q[0], (len(bias),)))
            y = self.node("Add", [y, self.const(bias.astype(np.float32), "bias")], "biased")
        self.emit_float(out_index, self.fused_activation(y, out_index, options, as_float=True))

    def op_strided_slice(self, op, name):
        """A slice with constant bounds of a 4-D or 2-D tensor (asc's inputs and heads), without
        ellipsis, new or shrunk axes."""
        x_index, out_index, options = op.inputs[0], op.outputs[0], op.builtinOptions
        begin, end, strides = (self.constant_array(index) for index in op.inputs[1:4])
        rank = len(self.shape(x_index))
        if (begin is None or end is None or strides is None or rank not in (2, 4) or options.ellipsisMask
                or options.newAxisMask or options.shrinkAxisMask or getattr(options, "offset", False)):
            raise NotConvertible(f"{name} {self.tensor_name(out_index)}: only constant 4-D or 2-D slices")
        starts, ends = [], []
        for axis in range(rank):
            starts.append(0 if options.beginMask >> axis & 1 else int(begin[axis]))
            ends.append(np.iinfo(np.int64).max if options.endMask >> axis & 1 else int(end[axis]))
        order = list(_NHWC_TO_NCHW) if rank == 4 else [0, 1]  # ONNX axis i is TFLite axis order[i]
        x = self.value(x_index)
        inputs = [x.name] + [self.const(np.array([values[a] for a in order], np.int64), hint)
                             for values, hint in ((starts, "starts"), (ends, "ends"))]
        inputs += [self.const(np.arange(rank, dtype=np.int64), "axes"),
                   self.const(np.array([int(strides[a]) for a in order], np.int64), "steps")]
        y = self.node("Slice", inputs, "slice")
        self.set_output(out_index, self.requantize(_Value(y, x.quant), self.activation_quant(out_index)))

    def op_equal(self, op, name):
        operands = [self.operand(index, True) for index in op.inputs]
        self.set_output(op.outputs[0], self.node("Equal", operands, "equal"), None)

    def op_not_equal(self, op, name):
        equal = self.node("Equal", [self.operand(index, True) for index in op.inputs], "equal")
        self.set_output(op.outputs[0], self.node("Not", [equal], "not_equal"), None)

    def op_select_v2(self, op, name):
        condition, a_index, b_index = op.inputs
        out_index = op.outputs[0]
        quant = self.activation_quant(out_index)
        same = quant is not None and all(
            (self.constant_quant(index) if index not in self.values else self.values[index].quant) == quant
            for index in (a_index, b_index))
        if same:  # both branches already in the output's quantization: select the uint8 codes
            y = self.node("Where", [self.operand(condition, False), self.operand(a_index, False),
                                    self.operand(b_index, False)], "where")
            self.set_output(out_index, y, quant)
        else:
            y = self.node("Where", [self.operand(condition, False), self.operand(a_index, True),
                                    self.operand(b_index, True)], "where")
            self.emit_float(out_index, y)


def seven_bit(weights, scales):
    """Per-output-channel int8 weights (axis 0) requantized to fit [-WEIGHT_LIMIT, WEIGHT_LIMIT].

    Args:
        weights: int8 array (O, ...). scales: float32 (O,), the per-channel scales.

    Returns:
        (int8 weights, float32 scales (O,), float64 factors (O, 1, ...)): a channel whose largest
        magnitude m is over the limit gets scale * m / WEIGHT_LIMIT; the others are unchanged
        (factor 1). Biases in scale input_scale * weight_scale are divided by the factor.
    """
    flat = weights.reshape(len(weights), -1).astype(np.float64)
    largest = np.abs(flat).max(axis=1)
    factor = np.maximum(largest / WEIGHT_LIMIT, 1.0)
    requantized = np.clip(np.round(flat / factor[:, None]), -WEIGHT_LIMIT, WEIGHT_LIMIT).astype(np.int8)
    return (requantized.reshape(weights.shape), (np.asarray(scales, np.float64) * factor).astype(np.float32),
            factor)


def convert_tflite(tflite_bytes, source_sha256=None):
    """An int8 TFLite model (float32 NHWC in and out) as ONNX, for ONNX Runtime.

    Args:
        tflite_bytes: the .tflite file's bytes (the edge export's model_int8.tflite).
        source_sha256: its SHA-256, kept in the ONNX metadata (SOURCE_KEY) so a runner can tell
            which .tflite the file belongs to.

    Returns:
        (bytes of an ONNX model: input `input_0` (batch, H, W, C) float32, output (batch, ...)
        float32, opset OPSET plus com.microsoft; dict for the export report: opset, operators,
        int8 output channels of the convolutions and how many of them were requantized to 7 bits).

    Raises:
        NotConvertible: an operator or tensor without a mapping here (named in the message).
    """
    from ai_edge_litert import schema_py_generated as schema
    from onnx import TensorProto, helper

    model = schema.ModelT.InitFromPackedBuf(bytearray(tflite_bytes), 0)
    converter = _Converter(model)
    inputs, outputs = converter.convert()
    graph = helper.make_graph(
        converter.nodes, "model_int8",
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, shape) for name, shape in inputs],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, shape) for name, shape in outputs],
        converter.initializers)
    onnx_model = helper.make_model(graph, producer_name="common.export.to_onnx",
                                   opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid(MS_DOMAIN, 1)])
    onnx_model.ir_version = 8  # what ONNX Runtime 1.14 and later read
    if source_sha256:
        helper.set_model_props(onnx_model, {SOURCE_KEY: source_sha256})
    info = {"opset": OPSET, "operators": len(converter.nodes), "weights": f"int8 per channel, at most {WEIGHT_LIMIT}",
            "conv_channels": converter.channels, "requantized_channels": converter.requantized_channels}
    return onnx_model.SerializeToString(), info
