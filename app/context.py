"""What every view is handed: the store, the weights registry and the job runner."""
from __future__ import annotations

from dataclasses import dataclass

from app.jobs import Jobs
from app.store import Store
from inference.registry import Registry


@dataclass
class AppContext:
    store: Store
    registry: Registry
    jobs: Jobs
