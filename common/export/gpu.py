"""The `gpu` target: `model_float16.tflite`, float16 weights and float32 activations, the format
LiteRT's GPU delegate (OpenGL ES / OpenCL on Android, Metal on iOS) runs at half precision. Half
the float32 size; on a CPU LiteRT widens the weights back to float32 at load time."""

from common.export.targets import SingleFileTarget, register


def convert_float16(model):
    """TFLite bytes of `model` with float16 weights (float32 input, output and activations)."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_types = [tf.float16]
    return converter.convert()


class GpuTarget(SingleFileTarget):
    name = "gpu"
    description = "float16 weights, float32 activations, input and output"
    device = "phone GPUs: LiteRT's GPU delegate (runs on any LiteRT CPU too)"
    file_names = ("model_float16.tflite",)
    calibrates = False

    def convert_bytes(self, job):
        return convert_float16(job.model), {"quantization": "float16 weights", "calibration_examples": 0}


GPU = register(GpuTarget())
