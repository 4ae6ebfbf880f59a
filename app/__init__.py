"""Lightbox desktop app (PySide6). Views are thin; files and models are inference/'s job.

``app.store`` and ``app.report`` do not import Qt, so the batch CLI can use them headless.
"""
