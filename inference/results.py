"""Result: typed outputs + the provenance every number on screen or paper must carry."""
from __future__ import annotations

import datetime as _dt
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

NOT_CLINICAL = "NOT A CLINICAL RESULT"
DISCLAIMER = "For education and decision support; not a diagnosis."


def now_iso() -> str:
    """Local time to the second, ISO 8601: how every stored timestamp is written."""
    return _dt.datetime.now().isoformat(timespec="seconds")


@dataclass
class Result:
    model_id: str
    weights_sha256: str  # "" for analyses that use no weights
    runtime: str  # onnxruntime | torch | keras | numpy
    device: str
    seconds: float
    outputs: dict[str, Any]  # JSON-able numbers and short lists — what is shown, stored and exported
    clinical: bool  # False: computed from non-official weights -> stamped NOT A CLINICAL RESULT
    created: str = field(default_factory=now_iso)
    notes: list[str] = field(default_factory=list)
    arrays: dict[str, np.ndarray] = field(default_factory=dict, repr=False)  # masks, curves (not JSON)
    id: int | None = None  # set once stored
    # compact binary payloads the store keeps beside the row (Store.result_blob), e.g. an endoscopy
    # analysis's per-frame polyp masks; loaded on demand, never with the row
    blobs: dict[str, bytes] = field(default_factory=dict, repr=False)

    @property
    def stamp(self) -> str:
        return "" if self.clinical else NOT_CLINICAL

    def provenance(self) -> str:
        w = f"weights {self.weights_sha256[:12]}" if self.weights_sha256 else "needs no weights"
        tags = self.outputs.get("_provenance") or []  # a pipeline's own caveats, e.g. "approximate normalisation"
        extra = "".join(f" · {t}" for t in tags if isinstance(t, str))
        return f"{self.model_id} · {w} · {self.runtime} on {self.device} · {self.seconds:.2f} s{extra}"

    def to_row(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("arrays")
        d.pop("id")
        d.pop("blobs")
        return d


def jsonable(obj: Any) -> Any:
    """numpy scalars/arrays -> plain Python, recursively."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj

