"""The lean runtime: numpy, OpenCV, scipy, numba and onnxruntime only. Never imports torch."""
