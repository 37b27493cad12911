"""The project's own implementation of the Numenta Anomaly Benchmark scoring.

Written from NAB's published rules (Lavin & Ahmad 2015, NAB v1.x):

* every labelled anomaly has a window of rows; the first
  ``min(floor(0.15 n), 750)`` rows of a file are probation and ignored;
* a row is a detection when ``score >= threshold``;
* a window earns ``A_TP * S(p) / S(-1)`` for its *earliest* detection, where
  ``S(y) = 2 / (1 + exp(5 y)) - 1`` and ``p = -(end - i + 1) / width``;
  an undetected window costs ``-A_FN``; later detections in a window are free;
* a detection outside every window costs ``A_FP * S(d)`` with
  ``d = (i - end_prev) / (width_prev - 1)`` relative to the preceding window
  (``S = -1`` beyond ``d > 3``), or ``-A_FP`` if no window precedes it;
* one threshold per profile is optimised over the whole corpus;
* ``normalised = 100 (raw - null) / (perfect - null)``, null = every scored
  window missed, perfect = every window detected at its first row.

The threshold sweep is event based: as the threshold falls, a window's value
only changes at its "record" rows (rows whose score beats every earlier score
in the window), and each false-positive row adds its weight once.  Sorting
these events once gives the raw score for every threshold in O(n log n).
"""

from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

import numpy as np

PROFILES: dict[str, dict[str, float]] = {
    "standard": {"tp": 1.0, "fp": 0.11, "fn": 1.0},
    "reward_low_FP_rate": {"tp": 1.0, "fp": 0.22, "fn": 1.0},
    "reward_low_FN_rate": {"tp": 1.0, "fp": 0.11, "fn": 2.0},
}


def sigmoid_weight(y) -> np.ndarray:
    """NAB's scaled sigmoid S(y) = 2/(1+e^{5y}) - 1, and -1 for y > 3."""
    y = np.asarray(y, dtype=float)
    with np.errstate(over="ignore"):
        s = 2.0 / (1.0 + np.exp(5.0 * y)) - 1.0
    return np.where(y > 3.0, -1.0, s)


def probation_rows(n: int) -> int:
    return min(int(math.floor(0.15 * n)), 750)


@dataclass
class NabFile:
    name: str                         # "<category>/<file>.csv"
    timestamps: np.ndarray            # unix seconds (float64)
    values: np.ndarray
    windows: list[tuple[int, int]]    # inclusive row ranges, sorted
    probation: int = 0
    win_id: np.ndarray = field(default=None, repr=False)    # -1 outside
    tp_w: np.ndarray = field(default=None, repr=False)      # (0, 1]
    fp_w: np.ndarray = field(default=None, repr=False)      # [-1, 0)

    @property
    def category(self) -> str:
        return self.name.split("/", 1)[0]

    def geometry(self) -> "NabFile":
        """Per-row window id, TP weight and FP weight (profile independent)."""
        n = len(self.values)
        self.probation = probation_rows(n)
        self.win_id = np.full(n, -1, dtype=np.int64)
        self.tp_w = np.zeros(n)
        self.fp_w = np.full(n, -1.0)
        s1 = float(sigmoid_weight(-1.0))
        for k, (a, b) in enumerate(self.windows):
            width = b - a + 1
            rows = np.arange(a, b + 1)
            self.win_id[a:b + 1] = k
            self.tp_w[a:b + 1] = sigmoid_weight(-(b - rows + 1) / width) / s1
            stop = self.windows[k + 1][0] if k + 1 < len(self.windows) else n
            if stop > b + 1:
                if width < 2:
                    raise ValueError(f"{self.name}: width-1 window cannot "
                                     "weight the false positives after it")
                after = np.arange(b + 1, stop)
                self.fp_w[b + 1:stop] = sigmoid_weight((after - b) / (width - 1))
        return self


def _to_unix(stamps: Sequence[str]) -> np.ndarray:
    t = np.array([s.strip().replace(" ", "T") for s in stamps],
                 dtype="datetime64[us]")
    return t.astype("int64") / 1e6


def load_nab(root: str, windows_file: str | None = None) -> list[NabFile]:
    """Read ``root/data/<cat>/*.csv`` and ``root/labels/combined_windows.json``."""
    windows_file = windows_file or os.path.join(root, "labels",
                                                "combined_windows.json")
    with open(windows_file) as fh:
        labels = json.load(fh)
    files = []
    for name in sorted(labels):
        with open(os.path.join(root, "data", name), newline="") as fh:
            rows = list(csv.reader(fh))
        head = [h.strip() for h in rows[0]]
        it, iv = head.index("timestamp"), head.index("value")
        body = [r for r in rows[1:] if r]
        ts = _to_unix([r[it] for r in body])
        values = np.array([float(r[iv]) for r in body])
        wins = []
        for start, end in labels[name]:
            a = np.flatnonzero(ts == _to_unix([start])[0])
            b = np.flatnonzero(ts == _to_unix([end])[0])
            if len(a) != 1 or len(b) != 1 or b[0] < a[0]:
                raise ValueError(f"{name}: bad window {start}..{end}")
            wins.append((int(a[0]), int(b[0])))
        wins.sort()
        files.append(NabFile(name, ts, values, wins).geometry())
    return files


@dataclass
class ProfileScore:
    profile: str
    threshold: float
    normalized: float
    raw: float
    windows_detected: int
    windows_total: int
    fp_rows: int
    per_category: dict[str, dict[str, float]]   # normalized (nan if no
    #                                             windows) and raw
    per_file: dict[str, float]


def _scored(f: NabFile, s: np.ndarray):
    p = f.probation
    s = np.asarray(s, dtype=float)
    if s.shape != (len(f.values),):
        raise ValueError(f"{f.name}: {s.shape} scores for {len(f.values)} rows")
    if np.isnan(s[p:]).any():
        raise ValueError(f"{f.name}: NaN scores after probation")
    return s[p:], f.win_id[p:], f.tp_w[p:], f.fp_w[p:]


def optimise_threshold(files: Sequence[NabFile],
                       scores: Mapping[str, np.ndarray],
                       weights: Mapping[str, float]) -> tuple[float, float]:
    """Best (threshold, raw score); ties go to the highest threshold."""
    ev_s, ev_d = [], []
    base = 0.0
    for f in files:
        s, w, tp, fp = _scored(f, scores[f.name])
        out = w < 0
        ev_s.append(s[out])
        ev_d.append(fp[out] * weights["fp"])
        for k in np.unique(w[~out]):
            idx = np.flatnonzero(w == k)
            sw = s[idx]
            base -= weights["fn"]
            prev_max = np.r_[-np.inf, np.maximum.accumulate(sw)[:-1]]
            rec = np.flatnonzero(sw > prev_max)      # record rows, rising s
            vals = tp[idx][rec] * weights["tp"]
            # falling threshold meets records latest-first: value goes from
            # -fn to vals[-1], then vals[-2], ... (earlier = better)
            before = np.r_[-weights["fn"], vals[::-1][:-1]]
            ev_s.append(sw[rec][::-1])
            ev_d.append(vals[::-1] - before)
    s_all = np.concatenate(ev_s) if ev_s else np.zeros(0)
    d_all = np.concatenate(ev_d) if ev_d else np.zeros(0)
    order = np.argsort(-s_all, kind="stable")
    s_sorted, cum = s_all[order], base + np.cumsum(d_all[order])
    last = np.flatnonzero(np.r_[s_sorted[1:] != s_sorted[:-1], True]) \
        if len(s_sorted) else np.zeros(0, dtype=int)
    thr = np.r_[np.inf, s_sorted[last]]
    raw = np.r_[base, cum[last]]
    k = int(np.argmax(raw))
    return float(thr[k]), float(raw[k])


def score_at(files: Sequence[NabFile], scores: Mapping[str, np.ndarray],
             profile: str, threshold: float) -> ProfileScore:
    """Score every file at one threshold, with per-category normalisation."""
    wts = PROFILES[profile]
    per_file, cat = {}, {}
    detected = total_w = fp_rows = 0
    raw = null = perfect = 0.0
    for f in files:
        s, w, tp, fp = _scored(f, scores[f.name])
        hit = s >= threshold
        fpm = hit & (w < 0)
        fp_rows += int(fpm.sum())
        sc = wts["fp"] * float(fp[fpm].sum())
        f_null = 0.0
        for k in np.unique(w[w >= 0]):
            rows = np.flatnonzero((w == k) & hit)
            f_null -= wts["fn"]
            if len(rows):
                detected += 1
                sc += wts["tp"] * float(tp[rows[0]])
            else:
                sc -= wts["fn"]
        f_perfect = wts["tp"] * len(f.windows)
        total_w += len(f.windows)
        per_file[f.name] = sc
        c = cat.setdefault(f.category, [0.0, 0.0, 0.0])
        c[0] += sc
        c[1] += f_null
        c[2] += f_perfect
        raw, null, perfect = raw + sc, null + f_null, perfect + f_perfect

    def norm(r, nl, pf):
        return 100.0 * (r - nl) / (pf - nl) if pf - nl > 0 else float("nan")

    per_cat = {k: {"normalized": norm(*v), "raw": v[0]}
               for k, v in sorted(cat.items())}
    return ProfileScore(profile, threshold, norm(raw, null, perfect), raw,
                        detected, total_w, fp_rows, per_cat, per_file)


def nab_score(files: Sequence[NabFile], scores: Mapping[str, np.ndarray],
              profiles: Iterable[str] = tuple(PROFILES),
              threshold: float | None = None) -> dict[str, ProfileScore]:
    """Score per profile, at ``threshold`` or at the corpus-optimal one."""
    out = {}
    for prof in profiles:
        thr = threshold
        if thr is None:
            thr, _ = optimise_threshold(files, scores, PROFILES[prof])
        out[prof] = score_at(files, scores, prof, thr)
    return out
