"""Bridge: the writers' old import path, for tests outside tests/runs/ until they import the new modules."""

from .image_files import label_dtype, write_labels  # noqa: F401
from .outputs import OUTPUTS, RUN_JSON  # noqa: F401
from .training_pairs import write_training_pair  # noqa: F401
