"""Export (extra `export`: torch + transformers): checkpoints -> verified ONNX -> TensorRT engines.

The names below are import-free so the command line can offer them without loading torch.
"""

from ..runtime.engines.table import Precision

CONFIG_NAMES = ("vit-b", "lite", "tiny", "tiny-256")  # SAM configurations (export.model.CONFIGS)
# precision -> maximum absolute error allowed against torch fp32. Keyed by the plain values: click's
# Choice matches enum members by their NAME ("FP32"), and `--precision` offers the lowercase values.
TOLERANCE = {Precision.FP32.value: 1e-4, Precision.FP16.value: 1e-2, Precision.INT8.value: 5e-2}
