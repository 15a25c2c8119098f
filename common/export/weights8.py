"""The `weights8` target: `model_weights8.tflite`, int8 weights with float activations (dynamic-range
quantization: no calibration data; LiteRT's hybrid kernels quantize activations on the fly). A
quarter of the float32 size, close to float accuracy: paper 4's 37.6 -> 9.4 MB."""

from common.export.targets import SingleFileTarget, register


def convert_dynamic_range(model):
    """TFLite bytes of `model` with int8 weights and float32 activations, input and output."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]  # no representative data: weights only
    return converter.convert()


class Weights8Target(SingleFileTarget):
    name = "weights8"
    description = "int8 weights, float32 activations (dynamic-range quantization, no calibration)"
    device = "any LiteRT CPU where float accuracy matters more than the last 2x in speed"
    file_names = ("model_weights8.tflite",)
    calibrates = False

    def convert_bytes(self, job):
        return convert_dynamic_range(job.model), {"quantization": "int8 weights (dynamic range)",
                                                  "calibration_examples": 0}


WEIGHTS8 = register(Weights8Target())
