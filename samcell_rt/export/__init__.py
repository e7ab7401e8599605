"""Export (extra `export`: torch + transformers): checkpoints -> verified ONNX -> TensorRT engines.

The names below are import-free so the command line can offer them without loading torch.
"""

CONFIG_NAMES = ("vit-b", "lite", "tiny", "tiny-256")  # SAM configurations (export.model.CONFIGS)
# precision -> maximum absolute error allowed against torch fp32
TOLERANCE = {"fp32": 1e-4, "fp16": 1e-2, "int8": 5e-2}
