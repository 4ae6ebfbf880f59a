"""ECG2AF output heads: what each name a published file may declare means, and how to decode it.

A head name is ML4H's ``TensorMap.output_name()`` = ``output_<map name>_<interpretation>``. The
2021 file (``…quadruple_task_mgh_v2021_05_21.h5``) was trained with the tensor maps
``survival.mgb_afib_wrt_instance2``, ``demographics.age_2_wide``, ``demographics.af_dummy`` and
``demographics.sex_dummy3``; the 2024 model (``ecg2af_quintuplet_v2024_01_13.keras``, published May
2025) with ``mgb_afib_wrt_instance2``, ``mgb_death_wrt_instance2``, ``demographics.age_in_days``,
``demographics.af_dummy2`` and ``demographics.sex_dummy1``. The decoding of each kind follows the
authors' model-zoo notebook: survival curves give ``1 − cumprod(pred[:n/2])[-1]``, categorical heads
are probabilities in channel-map order, continuous heads are un-normalised by their tensor map's
normaliser when it has an inverse.

The heads are read from the file's own config (``declared_heads``), so a file is decoded by what it
declares, never by position; a head that is not in this table is refused by name.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

DAYS_IN_5_YEARS = 365 * 5
DAYS_IN_10_YEARS = 365 * 10


@dataclass(frozen=True)
class Head:
    name: str
    kind: str  # "survival" | "categorical" | "continuous"
    units: int
    tensor_map: str
    era: str  # "2021", "2024", "2021+2024"
    event: str = ""  # survival: what the curve is about
    days_window: int = 0  # survival: follow-up window
    classes: tuple[str, ...] = ()  # categorical: channel-map order
    channel_names: tuple[str, ...] = ()  # categorical: the tensor map's own channel keys
    mean: float | None = None  # continuous: Standardize(mean, std); None = no inverse published
    std: float | None = None
    note: str = ""

    @property
    def intervals(self) -> int:
        return self.units // 2


HEADS: dict[str, Head] = {h.name: h for h in (
    Head("output_survival_curve_af_survival_curve", "survival", 50, "survival.mgb_afib_wrt_instance2",
         "2021+2024", event="incident atrial fibrillation", days_window=DAYS_IN_5_YEARS),
    Head("output_death_event_survival_curve", "survival", 50, "survival.mgb_death_wrt_instance2", "2024",
         event="death", days_window=DAYS_IN_10_YEARS),
    Head("output_sex_from_wide_categorical", "categorical", 2, "demographics.sex_dummy3 / sex_dummy", "2021",
         classes=("female", "male"), channel_names=("female", "male")),
    Head("output_sex_categorical", "categorical", 2, "demographics.sex_dummy1", "2024",
         classes=("female", "male"), channel_names=("Sex_Female_0_0", "Sex_Male_0_0")),
    Head("output_af_in_read_categorical", "categorical", 2, "demographics.af_dummy / af_dummy2", "2021+2024",
         classes=("no_atrial_fibrillation", "atrial_fibrillation"),
         channel_names=("no_atrial_fibrillation|no_af_in_read", "atrial_fibrillation|af_in_read")),
    Head("output_age_from_wide_csv_continuous", "continuous", 1, "demographics.age_2_wide", "2021",
         mean=63.35798891483556, std=7.554638350423902),
    Head("output_age_in_days_continuous", "continuous", 1, "demographics.age_in_days", "2024",
         note="trained with ZeroMeanStd1 normalisation, which has no inverse: the authors print the raw "
              "value and publish no scale, so it is not converted to years"),
)}


class HeadError(Exception):
    """A model file declares a head Lightbox does not know how to decode (message names it)."""


@dataclass
class DeclaredHeads:
    """The heads a file declares, in the file's own output order, with their declared units."""
    names: list[str]
    units: dict[str, int] = field(default_factory=dict)

    @property
    def known(self) -> list[Head]:
        return [HEADS[n] for n in self.names if n in HEADS]

    @property
    def era(self) -> str:
        eras = {HEADS[n].era for n in self.names if n in HEADS}
        if "2024" in eras:
            return "2024"
        if "2021" in eras:
            return "2021"
        return "2021+2024" if eras else "unknown"


def _layer_units(layer: dict) -> int | None:
    cfg = layer.get("config") or {}
    u = cfg.get("units")
    if isinstance(u, int):
        return u
    return None


def declared_heads(model_config: dict) -> DeclaredHeads:
    """Output layer names (and their Dense units) from a Keras functional model config (Keras 2
    ``output_layers: [[name, node, tensor], …]`` or Keras 3's same list / nested forms)."""
    cfg = model_config.get("config", model_config)
    outs = cfg.get("output_layers")
    if outs is None:
        raise HeadError("the model file declares no output layers (not a functional Keras model)")
    if isinstance(outs, list) and outs and isinstance(outs[0], str):
        outs = [outs]  # a single output stored flat: [name, node, tensor]
    names = []
    for o in outs:
        if isinstance(o, (list, tuple)) and o and isinstance(o[0], str):
            names.append(o[0])
        elif isinstance(o, dict) and "config" in o:  # Keras 3 keras-tensor form
            hist = (o.get("config") or {}).get("keras_history") or []
            if hist:
                names.append(str(hist[0]))
    by_name = {layer.get("name") or (layer.get("config") or {}).get("name"): layer for layer in cfg.get("layers", [])}
    units = {n: u for n in names if (u := _layer_units(by_name.get(n, {}))) is not None}
    return DeclaredHeads(names, units)


def check_heads(declared: DeclaredHeads, source: str = "the model file") -> None:
    """Refuse, naming the head, a file with a head Lightbox cannot decode, a known head with the
    wrong width, or no AF survival head at all."""
    unknown = [n for n in declared.names if n not in HEADS]
    if unknown:
        raise HeadError(f"{source} declares output head{'s' if len(unknown) > 1 else ''} "
                        f"{', '.join(repr(n) for n in unknown)} that Lightbox cannot decode (known ECG2AF heads: "
                        f"{', '.join(sorted(HEADS))}); refusing to guess what "
                        f"{'they mean' if len(unknown) > 1 else 'it means'}")
    for n in declared.names:
        u = declared.units.get(n)
        if u is not None and u != HEADS[n].units:
            raise HeadError(f"{source}: head {n!r} has {u} outputs; ECG2AF's {HEADS[n].tensor_map} has "
                            f"{HEADS[n].units}")
    if "output_survival_curve_af_survival_curve" not in declared.names:
        raise HeadError(f"{source} has no 'output_survival_curve_af_survival_curve' head: it is not an "
                        f"ECG2AF model (heads: {', '.join(declared.names) or 'none'})")


def _row(outputs: dict[str, np.ndarray], name: str, index: int) -> np.ndarray:
    return np.asarray(outputs[name], dtype=np.float64)[index].reshape(-1)


def decode_head(head: Head, pred: np.ndarray) -> dict[str, Any]:
    """One head of one ECG, decoded as the authors' notebook does."""
    p = np.asarray(pred, dtype=np.float64).reshape(-1)
    if head.kind == "survival":
        n = head.intervals
        surv = np.cumprod(p[:n])
        width = head.days_window / n  # the training tensor's interval width (days_window / intervals)
        return {"risk": float(1.0 - surv[-1]), "survival": [float(v) for v in surv],
                "days": [round((i + 1) * width, 1) for i in range(n)], "years": head.days_window / 365}
    if head.kind == "categorical":
        return {"probabilities": {c: float(v) for c, v in zip(head.classes, p)}}
    raw = float(p[0])
    if head.mean is not None and head.std is not None:
        return {"raw": raw, "value": raw * head.std + head.mean}
    return {"raw": raw, "value": None}


def decode(outputs: dict[str, np.ndarray], index: int = 0) -> dict[str, Any]:
    """Every head present in ``outputs`` (keyed by head name) for ECG ``index`` of a batch.

    Returns the flat keys Lightbox shows (``af_risk_5y`` …) plus ``heads``: each head's decoding.
    Keys whose head the file does not have are None (e.g. ``age_years`` for the 2024 model, whose age
    head has no published scale; ``death_risk_10y`` for the 2021 model).
    """
    unknown = [n for n in outputs if n not in HEADS]
    if unknown:
        raise HeadError(f"output head {', '.join(repr(n) for n in unknown)} is not a known ECG2AF head")
    per = {n: decode_head(HEADS[n], _row(outputs, n, index)) for n in outputs}
    af = per.get("output_survival_curve_af_survival_curve")
    if af is None:
        raise HeadError("no 'output_survival_curve_af_survival_curve' head among the outputs")
    sex = per.get("output_sex_from_wide_categorical") or per.get("output_sex_categorical")
    afr = per.get("output_af_in_read_categorical")
    age = per.get("output_age_from_wide_csv_continuous") or per.get("output_age_in_days_continuous")
    death = per.get("output_death_event_survival_curve")
    return {
        "af_risk_5y": af["risk"],
        "survival_days": af["days"],
        "af_free_survival": af["survival"],
        "sex_male_probability": sex["probabilities"]["male"] if sex else None,
        "sex_female_probability": sex["probabilities"]["female"] if sex else None,
        "age_years": age["value"] if age else None,
        "age_head_raw": age["raw"] if age else None,
        "af_in_read_probability": afr["probabilities"]["atrial_fibrillation"] if afr else None,
        "death_risk_10y": death["risk"] if death else None,
        "heads": per,
    }
