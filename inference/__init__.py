"""Lightbox inference layer: readers, preprocessing, models, runtimes and pipelines.

Pure Python + numpy (+ the ML frameworks). Never imports Qt: the batch CLI, the bench command
and the tests use exactly the code the app uses.
"""

__version__ = "0.1.0"
