#!/usr/bin/env python3
"""Re-measure ``analytics.anomaly._CAL_REF``: the raw decades that each channel average of the
default detector exceeds with rate 1e-1, 1e-2, 1e-3 on Gaussian noise (the reference curve of
the tail calibration).  Run it after changing the detector's averaging or tail parameters and
paste the printed table.  ``python bench/anomaly_calibration.py [--seeds 40]``"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

_SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
if os.path.isdir(_SRC) and _SRC not in sys.path:
    sys.path.insert(0, _SRC)

from perf_alerts.analytics import anomaly as an  # noqa: E402


def raw_decades(det: an.Likelihood, x: np.ndarray) -> dict[str, np.ndarray]:
    """Uncalibrated decades of every channel average of the plain view, both tail laws."""
    p = det.params
    y = x - x[0]
    n = len(y)
    d_lvl = an._decay(p["level_hl"])
    lvl = an._ew_sum(y, d_lvl) / an._ew_sum(np.ones(n), d_lvl)
    level = y - np.r_[0.0, lvl[:-1]]
    level[0] = 0.0
    out = {}
    for name, e in (("jump", np.r_[0.0, np.diff(y)]), ("level", level)):
        ae = np.abs(e)
        d_sc = an._decay(p["scale_hl"])
        prev = np.r_[0.0, (an._ew_sum(ae, d_sc) / an._ew_sum(np.ones(n), d_sc))[:-1]]
        z = np.minimum(ae / np.maximum(prev, 1e-12), 1e12)
        r = z / (z + p["z_half"])
        for q, (hl, _dec) in enumerate(det._scales()):
            d_av = an._decay(hl)
            avg = an._ew_sum(r * (1.0 - d_av), d_av)
            d_h = an._decay(p["hist_hl"])
            ones = an._ew_sum(np.ones(n), d_h)
            m1 = an._ew_sum(avg, d_h) / ones
            m2 = an._ew_sum(avg * avg, d_h) / ones
            mu = np.r_[0.0, m1[:-1]]
            sd = np.maximum(np.sqrt(np.r_[0.0, np.maximum(m2 - m1 * m1, 0.0)[:-1]]), p["min_std"])
            for gam in (False, True):
                out[f"{name}{q}{'g' if gam else ''}"] = an._decades_batch(det._std_batch(avg, mu, sd, gam))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=40)
    ap.add_argument("--points", type=int, default=50_000)
    args = ap.parse_args()
    det = an.Likelihood()
    acc: dict[str, list[np.ndarray]] = {}
    for seed in range(args.seeds):
        x = 100.0 + np.random.default_rng(seed).standard_normal(args.points)
        for k, v in raw_decades(det, x).items():
            acc.setdefault(k, []).append(v[2000:])
    for k, v in sorted(acc.items()):
        qs = [round(float(np.quantile(np.concatenate(v), 1 - 10.0 ** -j)), 3) for j in (1, 2, 3)]
        print(f'"{k}": ({qs[0]}, {qs[1]}, {qs[2]}),')


if __name__ == "__main__":
    main()
