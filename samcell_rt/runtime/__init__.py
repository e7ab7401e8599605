"""The lean runtime: numpy, OpenCV, scipy, numba and onnxruntime only. Never imports torch."""

# Engine names (kept here, import-free, so the CLI can offer them without loading numpy).
ENGINES = ("auto", "cpu", "cuda", "ort-tensorrt", "tensorrt")
