"""The lean runtime: numpy, OpenCV, scipy, numba and onnxruntime only. Never imports torch."""

MAX_PIXELS = 1 << 30  # ~1.07 gigapixels (32768 x 32768) per file unless the caller allows more
DIAMETER_MODES = ("auto", "off")  # what `Diameter` (runtime/scale.py) takes besides a number of pixels
DEFAULT_PEAK, DEFAULT_FILL = 0.47, 0.09  # the SAMCell paper's thresholds, for models and exports that give none
