"""Lightbox inference layer: readers, preprocessing, models, runtimes and pipelines.

Pure Python + numpy (+ the ML frameworks). Never imports Qt: the batch CLI, the bench command
and the tests use exactly the code the app uses.
"""

__version__ = "0.1.0"

import os as _os

# OpenCV prints its decoder complaints ("IHDR chunk shall be first…") straight to stderr; the readers
# turn every such failure into a ReadError with a clear message, so the raw lines are only noise.
# Set OPENCV_LOG_LEVEL yourself to see them.
_os.environ.setdefault("OPENCV_LOG_LEVEL", "SILENT")
