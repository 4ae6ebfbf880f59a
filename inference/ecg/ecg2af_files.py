"""The published ECG2AF files (broadinstitute/ml4h ``model_zoo/ECG2AF``): which leads each takes, how its input
is normalised, and how that was established.

Four files, each its own manifest entry (``weights/manifest.toml``):

=================  ===========================================  ======  ==========================
model id           file                                          leads   input normalisation
=================  ===========================================  ======  ==========================
``ecg2af-2024``    ``ecg2af_quintuplet_v2024_01_13.keras``       12      per-ECG z-score, eps 1e-6
``ecg2af``         ``ecg_5000_survival_curve_af_quadruple_…``   12      ZeroMeanStd1 (eps 1e-7)
``ecg2af-strip-I`` ``strip_I_survival_curve_af_v2021_06_15.h5``  I       ZeroMeanStd1 (eps 1e-7)
``ecg2af-strip-II````strip_II_survival_curve_af_v2021_06_15.h5`` II      ZeroMeanStd1 (eps 1e-7)
=================  ===========================================  ======  ==========================

The 2024 file is ML4H's main model since May 2025 (README, commit 05717d1e). All take 10 s at 500 Hz
(5000 samples); the strips are one column, (5000, 1).

How the normalisation was established, from ml4h's git history (the mirror of broadinstitute/ml4h):

- **2021 12-lead file** (trained at MGB, file dated 2021-05-21). ML4H's *training* tensor map for it
  (``ecg_5000_std`` with ``age_from_wide_csv`` and ``survival_curve_af``) is not in the public history:
  ``git log --all -S"'ecg_5000_std'"`` first finds a definition on 2021-06-21. At the file's date the public
  MGB maps named ``partners_ecg_<n>_std`` normalised with ``Standardize(mean=0, std=2000)`` ("_std normalizes
  with Standardize mean = 0, std = 2000", ``ml4h/tensormap/mgb/dynamic.py`` since 8d20a14f, 2020-08-25, still
  so at b31ff7e4, 2021-05-21), and the legacy wide-file ECG loader divided raw voltages by 2000
  (``tensor_from_wide(..., population_normalize=2000)``) -- that is the "older MGB Standardize(0, 2000)".
  But the authors' own input map for this file, ``ecg.ecg_rest_mgb`` = ``TensorMap('ecg_5000_std', shape=(5000,
  12), channel_map=ECG_REST_MGB_LEADS, normalization=ZeroMeanStd1())``, was written one month after the
  file by the same author (b8ab60e8, 2021-06-21, "change"; in the same commit a separate map
  ``ecg_rest_mgb_2500_raw`` keeps ``Standardize(0, 2000)``, so the choice was deliberate), was written to run
  this file on UK Biobank ECGs (the paper's external validation set), and is the input map the model zoo names
  for exactly this
  file (README of 611cb5e9, 2023-09-18: ``--input_tensors ecg.ecg_rest_mgb``; notebook 72fa8fc0/982b56be
  imports ``ecg_rest_mgb``). A model trained on /2000 inputs fed ZeroMeanStd1 inputs (10-20x larger) would
  not have validated. Established: **ZeroMeanStd1** over the whole (5000, 12) tensor, ``(x - mean) / (std +
  1e-7)`` (``ml4h.defines.EPS``). ``Standardize(0, 2000)`` stays selectable per file in the manifest
  (``normalisation = "standardize_0_2000"``: raw µV / 2000, i.e. mV / 2) should the authors say otherwise.
- **Strip I / strip II files** (2021-06-15): the authors' maps ``ecg_rest_mgb_strip_I`` /
  ``ecg_rest_mgb_strip_II`` (``'ecg_strip_I'`` / ``'ecg_strip_II'``, shape (5000, 1), ``ZeroMeanStd1()``;
  first in 83ee2a11, 2021-07-09); the model-zoo notebook (72fa8fc0) feeds ``strip_I_…h5`` a (1, 5000, 1)
  array. Established: **ZeroMeanStd1** over the one lead.
- **2024 file** (``ecg2af_quintuplet_v2024_01_13``): trained by ML4H's ``train_xdl`` recipe (957c9396,
  2023-10-16: ``ECGDataDescription(..., transforms=[standardize_by_sample_ecg])``, ``(ecg - mean) / (std +
  1e-6)``) and run by the authors' deployment script for exactly this file
  (``docker/ml4h_deploy/process_files.py``, d22bd280, 2025-04-17: ``ecg_array -= ecg_array.mean(); ecg_array /=
  (ecg_array.std() + 1e-6)``). Established: **per-ECG z-score with eps 1e-6** (the same as ZeroMeanStd1 but
  for the epsilon).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LEADS_12 = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")

#: normalisation name -> (description, function of one ECG's (5000, k) float mV array)
NORMALISATIONS = {
    "zero_mean_std1": "ZeroMeanStd1: (x - mean) / (std + 1e-7) over the whole input tensor of one ECG",
    "zscore_eps1e-6": "per-ECG z-score: (x - mean) / (std + 1e-6) over the whole input tensor (ML4H train_xdl, "
                      "deployment script)",
    "standardize_0_2000": "Standardize(mean=0, std=2000) on raw µV: x_µV / 2000 = x_mV / 2 (older MGB maps)",
}


def normalise(x: np.ndarray, how: str = "zero_mean_std1") -> np.ndarray:
    """Normalise one ECG (n, k) or a batch (b, n, k), per ECG, as the file was trained."""
    x = np.asarray(x, dtype=np.float32)
    if how == "standardize_0_2000":
        return (x * np.float32(1000.0 / 2000.0)).astype(np.float32)
    eps = {"zero_mean_std1": 1e-7, "zscore_eps1e-6": 1e-6}.get(how)
    if eps is None:
        raise ValueError(f"unknown ECG2AF normalisation {how!r} (known: {', '.join(NORMALISATIONS)})")
    axes = tuple(range(x.ndim - 2, x.ndim))
    mean = x.mean(axis=axes, keepdims=True)
    std = x.std(axis=axes, keepdims=True)
    return ((x - mean) / (std + eps)).astype(np.float32)


@dataclass(frozen=True)
class PublishedFile:
    model_id: str
    file: str
    sha256: str
    size: int
    leads: tuple[str, ...]
    input_name: str
    normalisation: str
    era: str
    established: str  # one line for the screen / report: what was established and how

    @property
    def is_strip(self) -> bool:
        return len(self.leads) == 1

    @property
    def short(self) -> str:
        return f"strip {self.leads[0]}" if self.is_strip else f"12-lead {self.era}"


FILES: dict[str, PublishedFile] = {f.model_id: f for f in (
    PublishedFile("ecg2af-2024", "ecg2af_quintuplet_v2024_01_13.keras",
                  "de38e009be5613ebb31ee1969bc1cab648d0f11c865e8afbd60e4bb7784f5627", 43797442, LEADS_12,
                  "input_ecg_5000_std_continuous", "zscore_eps1e-6", "2024",
                  "per-ECG z-score (eps 1e-6), as ML4H trains (train_xdl, 957c9396) and deploys this file "
                  "(docker/ml4h_deploy, d22bd280)"),
    PublishedFile("ecg2af", "ecg_5000_survival_curve_af_quadruple_task_mgh_v2021_05_21.h5",
                  "ece878a5ed4f1523735a35648a8fa2a3086261d2bf38a5db16c8f3d0fc34c667", 220080440, LEADS_12,
                  "input_ecg_5000_std_continuous", "zero_mean_std1", "2021",
                  "ZeroMeanStd1: the authors' input map for this file, ecg.ecg_rest_mgb (b8ab60e8, 2021-06-21; "
                  "named by the model zoo, 611cb5e9), not the older MGB Standardize(0, 2000) '_std' maps"),
    PublishedFile("ecg2af-strip-I", "strip_I_survival_curve_af_v2021_06_15.h5",
                  "d4c6b591d12b8fa4c1c0115adab442c68c7c33ce98c9071e66f7dd4f33f03296", 219883672, ("I",),
                  "input_ecg_strip_I_continuous", "zero_mean_std1", "2021",
                  "ZeroMeanStd1 over lead I: the authors' map ecg_rest_mgb_strip_I (83ee2a11, 2021-07-09)"),
    PublishedFile("ecg2af-strip-II", "strip_II_survival_curve_af_v2021_06_15.h5",
                  "ef58a4b7294d91cb4e4686e6fd4ee72098719d55c43b9b0d487b34066923e0da", 219947384, ("II",),
                  "input_ecg_strip_II_continuous", "zero_mean_std1", "2021",
                  "ZeroMeanStd1 over lead II: the authors' map ecg_rest_mgb_strip_II (83ee2a11, 2021-07-09)"),
)}

#: ECG2AF model ids in the order the app offers them (the 2024 file is ML4H's main model)
MODEL_IDS = tuple(FILES)


def is_ecg2af(model_id: str | None) -> bool:
    return bool(model_id) and model_id in FILES


def published(model_id: str) -> PublishedFile:
    try:
        return FILES[model_id]
    except KeyError:
        raise ValueError(f"{model_id!r} is not an ECG2AF model (known: {', '.join(FILES)})") from None


def normalisation_for(model_id: str, entry_inputs: dict | None = None) -> str:
    """The file's normalisation: the manifest's ``inputs.normalisation`` when set, else the established one."""
    how = (entry_inputs or {}).get("normalisation") if entry_inputs else None
    return str(how) if how else published(model_id).normalisation
