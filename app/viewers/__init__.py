"""One viewer per modality, imported lazily (a viewer's heavy imports load when first needed)."""
from __future__ import annotations

import importlib

VIEWERS = {
    "ecg": "app.viewers.ecg:EcgViewer",
    "pcg": "app.viewers.pcg:PcgViewer",
    "echo": "app.viewers.echo:EchoViewer",
    "xray": "app.viewers.xray:XrayViewer",
    "endo": "app.viewers.endo:EndoViewer",
}


def viewer_class(modality: str):
    """The viewer class for a modality; the generic viewer where none is built yet."""
    spec = VIEWERS.get(modality)
    if spec:
        mod_name, cls_name = spec.split(":")
        try:
            return getattr(importlib.import_module(mod_name), cls_name)
        except ModuleNotFoundError as e:
            if e.name != mod_name:
                raise
    from app.viewers.base import GenericViewer

    return GenericViewer
