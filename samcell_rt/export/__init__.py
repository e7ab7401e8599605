"""Export: torch + transformers, used only to turn checkpoints into ONNX models (extra `export`)."""
