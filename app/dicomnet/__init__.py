"""The DICOM node in the app: settings, node state in the status bar, query/retrieve, send to PACS, priors.

``store`` is Qt-free (the study store's schema step and methods for received instances, used headless by
``lightbox node``); the other modules are the Qt side over ``inference.dicomnet``.
"""
