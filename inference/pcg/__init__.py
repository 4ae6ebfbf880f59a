"""Heart sounds (phonocardiogram): features, segmentation, the classifier network and its training.

Pure Python + numpy/scipy except ``model`` and ``train`` (PyTorch, imported only when training).
"""
