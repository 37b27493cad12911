#!/usr/bin/env python3
"""NAB quality + speed harness for ``perf_alerts.analytics.anomaly``.

    python3 bench/anomaly_quality.py --nab /path/to/NAB-layout-dir \
        [--detector default] [--baseline zscore] \
        [--check-with /work/shared/tools/nab_score.py] [--json out.json]
    python3 bench/anomaly_quality.py --speed     # streaming bank speed only

Reads ``data/<category>/*.csv`` and ``labels/combined_windows.json``, runs
the detector and a baseline side by side (batch, timed), optionally times
the streaming form, and scores both with this project's own implementation
of NAB's scoring (``bench/nab_scoring.py``): the three NAB profiles at the
corpus-optimised threshold and at ``DEFAULT_ANOMALY_THRESHOLD`` (what users
actually get), plus a per-category breakdown.  ``--check-with`` re-scores the
same outputs with an external NAB scorer and fails if any profile differs
by more than 0.01.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
_SRC = os.path.join(os.path.dirname(HERE), "src")
if os.path.isdir(_SRC) and _SRC not in sys.path:
    sys.path.insert(0, _SRC)

import nab_scoring as ns  # noqa: E402
from perf_alerts.analytics import anomaly as an  # noqa: E402


def run_batch(files, detector):
    """Scores for every file and the batch throughput (points/s)."""
    scores = {}
    t0 = time.perf_counter()
    for f in files:
        scores[f.name] = an.anomaly_scores(f.values, f.timestamps,
                                           detector=detector)
    dt = time.perf_counter() - t0
    n = sum(len(f.values) for f in files)
    return scores, n / dt if dt > 0 else float("inf")


def run_streaming(files, detector, batch_scores=None, max_points=None):
    """Points/s of the one-at-a-time form, and max |stream - batch|."""
    n = 0
    worst = 0.0
    t0 = time.perf_counter()
    for f in files:
        det = an.StreamingDetector(detector)
        k = len(f.values) if max_points is None else min(len(f.values),
                                                        max_points - n)
        if k <= 0:
            break
        out = np.fromiter((det.update(v, t) for v, t in
                           zip(f.values[:k].tolist(), f.timestamps[:k].tolist())),
                          dtype=float, count=k)
        n += k
        if batch_scores is not None:
            worst = max(worst, float(np.max(np.abs(
                out - batch_scores[f.name][:k]), initial=0.0)))
    dt = time.perf_counter() - t0
    return (n / dt if dt > 0 else float("inf")), worst, n


def evaluate(files, scores):
    return {"optimised": ns.nab_score(files, scores),
            "default_threshold": ns.nab_score(
                files, scores, threshold=an.DEFAULT_ANOMALY_THRESHOLD)}


def cross_check(path, root, scores, results, tol=0.01):
    """Score the same outputs with an external scorer; return the diffs."""
    spec = importlib.util.spec_from_file_location("_ext_nab_score", path)
    ext = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = ext
    spec.loader.exec_module(ext)
    corpus = ext.load_corpus(root)
    diffs = {}
    for mode, thr in (("optimised", None),
                      ("default_threshold", an.DEFAULT_ANOMALY_THRESHOLD)):
        ref = ext.score(corpus, scores, thresholds=None if thr is None else
                        {p: thr for p in ns.PROFILES})
        for prof, r in ref.items():
            mine = results[mode][prof].normalized
            diffs[(mode, prof)] = (mine, r.normalized, abs(mine - r.normalized))
    bad = {k: v for k, v in diffs.items() if not v[2] <= tol}
    return diffs, bad


def leave_one_category_out(files, scores, profile="standard"):
    """Per category: threshold optimised on the other categories, then
    applied to the held-out one -> (threshold, normalised or raw score)."""
    out = {}
    for cat in sorted({f.category for f in files}):
        train = [f for f in files if f.category != cat]
        test = [f for f in files if f.category == cat]
        thr, _ = ns.optimise_threshold(train, scores, ns.PROFILES[profile])
        r = ns.score_at(test, scores, profile, thr)
        out[cat] = (thr, r.normalized if r.normalized == r.normalized
                    else r.raw)
    return out


def speed(runs=3, series=5000, points=200):
    """Points/s of the vectorised streaming bank (what anomaly rules use; one
    point per series per numpy call, daily view on) and of the batch form,
    for the default and the robust detector; median and range of ``runs``."""
    import statistics

    from perf_alerts.analytics.streaming import LikelihoodBank

    rng = np.random.default_rng(0)
    t0 = 1_800_000_000.0
    x = rng.normal(10, 1, (series, points))
    t = np.tile(t0 + np.arange(points) * 60.0, (series, 1))
    lags = {"daily": x + rng.normal(0, 0.1, x.shape)}
    n = 200_000
    tt = t0 + np.arange(n) * 60.0
    y = 10 + 3 * np.sin(2 * np.pi * tt / 86400.0) + rng.normal(0, 0.5, n)
    for det in ("default", "robust"):
        rates, brates = [], []
        for _ in range(runs):
            bank = LikelihoodBank(series, max_period=3 * 86400.0, detector=det)
            a = time.perf_counter()
            bank.run(np.arange(series), x, t, np.ones(x.shape, bool), lags)
            rates.append(series * points / (time.perf_counter() - a))
            a = time.perf_counter()
            an.anomaly_scores(y, tt, detector=det)
            brates.append(n / (time.perf_counter() - a))
        print(f"{det}: streaming bank ({series:,} series x {points} points) median "
              f"{statistics.median(rates):,.0f} points/s (range {min(rates):,.0f}-"
              f"{max(rates):,.0f}); batch ({n:,}-point series) median "
              f"{statistics.median(brates):,.0f} points/s (range {min(brates):,.0f}-"
              f"{max(brates):,.0f}); {runs} runs")


def _fmt(v):
    return "   n/a" if v != v else f"{v:6.2f}"


def print_report(label_a, res_a, label_b, res_b):
    profs = list(ns.PROFILES)
    print(f"\n{'profile':<20} {'mode':<18} {label_a:>12} {label_b:>12} "
          f"{'diff':>8}   thresholds ({label_a} / {label_b})")
    for mode in ("optimised", "default_threshold"):
        for p in profs:
            a, b = res_a[mode][p], res_b[mode][p]
            print(f"{p:<20} {mode:<18} {a.normalized:12.2f} "
                  f"{b.normalized:12.2f} {a.normalized - b.normalized:8.2f}"
                  f"   {a.threshold:.4f} / {b.threshold:.4f}"
                  f"   det {a.windows_detected}/{a.windows_total} "
                  f"fp {a.fp_rows} / det {b.windows_detected} fp {b.fp_rows}")
    for mode in ("optimised", "default_threshold"):
        a, b = res_a[mode]["standard"], res_b[mode]["standard"]
        print(f"\nper category, standard profile, {mode} threshold "
              f"(normalised; raw for categories without windows)")
        for cat in a.per_category:
            ca, cb = a.per_category[cat], b.per_category[cat]
            if ca["normalized"] == ca["normalized"]:
                print(f"  {cat:<28} {label_a} {_fmt(ca['normalized'])}   "
                      f"{label_b} {_fmt(cb['normalized'])}")
            else:
                print(f"  {cat:<28} {label_a} raw {ca['raw']:7.3f}   "
                      f"{label_b} raw {cb['raw']:7.3f}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--nab", help="NAB-layout directory")
    ap.add_argument("--speed", action="store_true",
                    help="only time the streaming bank and the batch form")
    ap.add_argument("--detector", default="default")
    ap.add_argument("--baseline", default="zscore")
    ap.add_argument("--check-with", default=None,
                    help="external NAB scorer (e.g. nab_score.py) to "
                         "cross-check the scoring against (tolerance 0.01)")
    ap.add_argument("--stream-points", type=int, default=None,
                    help="limit the streaming timing to this many points "
                         "(default: whole corpus; 0 disables)")
    ap.add_argument("--json", default=None, help="write results here")
    args = ap.parse_args(argv)
    if args.speed:
        speed()
        return 0
    if not args.nab:
        ap.error("--nab PATH is required (or --speed)")

    files = ns.load_nab(args.nab)
    n = sum(len(f.values) for f in files)
    print(f"corpus {args.nab}: {len(files)} files, {n} points, "
          f"{sum(len(f.windows) for f in files)} windows; "
          f"DEFAULT_ANOMALY_THRESHOLD={an.DEFAULT_ANOMALY_THRESHOLD}")

    an.anomaly_scores(files[0].values[:100], files[0].timestamps[:100])
    sc_a, pps_a = run_batch(files, args.detector)
    sc_b, pps_b = run_batch(files, args.baseline)
    res_a, res_b = evaluate(files, sc_a), evaluate(files, sc_b)
    print(f"batch speed: {args.detector} {pps_a:,.0f} points/s, "
          f"{args.baseline} {pps_b:,.0f} points/s")
    stream = None
    if args.stream_points != 0:
        pps_s, worst, k = run_streaming(files, args.detector, sc_a,
                                        args.stream_points)
        stream = {"points_per_s": pps_s, "max_abs_diff_vs_batch": worst,
                  "points": k}
        print(f"streaming speed: {args.detector} {pps_s:,.0f} points/s over "
              f"{k} points; max |streaming - batch| = {worst:.3g}")
    print_report(args.detector, res_a, args.baseline, res_b)
    loco = leave_one_category_out(files, sc_a)
    print(f"\nleave-one-category-out, standard profile ({args.detector}; "
          "threshold optimised on the other categories)")
    for cat, (thr, v) in loco.items():
        print(f"  {cat:<28} thr {thr:.4f}   score {v:7.2f}")

    ok = True
    check = None
    if args.check_with:
        check = {}
        for label, sc, res in ((args.detector, sc_a, res_a),
                               (args.baseline, sc_b, res_b)):
            diffs, bad = cross_check(args.check_with, args.nab, sc, res)
            worst = max(d[2] for d in diffs.values())
            check[label] = worst
            print(f"cross-check vs {args.check_with} ({label}): max |diff| "
                  f"= {worst:.2g} over {len(diffs)} scores -> "
                  f"{'OK' if not bad else 'MISMATCH ' + str(bad)}")
            ok &= not bad

    if args.json:
        def dump(res):
            return {m: {p: {k: v for k, v in vars(r).items()
                            if k != "per_file"} for p, r in rr.items()}
                    for m, rr in res.items()}
        with open(args.json, "w") as fh:
            json.dump({"detector": args.detector, "baseline": args.baseline,
                       "points": n, "batch_points_per_s": {
                           args.detector: pps_a, args.baseline: pps_b},
                       "streaming": stream, "results": {
                           args.detector: dump(res_a),
                           args.baseline: dump(res_b)},
                       "cross_check_max_diff": check}, fh, indent=1,
                      default=lambda o: None if isinstance(o, float)
                      and math.isnan(o) else str(o))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
