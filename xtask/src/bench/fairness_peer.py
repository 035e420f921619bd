"""fairlearn peer for Valor's `fair/audit_<n>_rows` benchmarks, one size per process.

Written to the bench data folder and run by `cargo xtask bench` with the peers'
python, once per size, so each size's peak RSS is that size's own (the shared
bench_fairness.py times 10k and 1M rows in one process, whose peak is the
1M-row one). Times exactly what bench_fairness.py's `construct+difference+ratio`
times: MetricFrame(metrics={accuracy, selection_rate, true_positive_rate,
false_positive_rate}) on the pandas Series of `fair_<n>.csv` (fair_data.py,
seed 42, read with pandas.read_csv), then .difference() and .ratio(); one
untimed warm-up, then --reps timed with anchor_common.measure.
Usage: python fairness_peer.py --anchor DIR --datadir DIR --rows N [--reps R] [--out F]
"""
import argparse, os, sys

ap = argparse.ArgumentParser()
ap.add_argument("--anchor", required=True)
ap.add_argument("--datadir", required=True)
ap.add_argument("--rows", type=int, required=True)
ap.add_argument("--reps", type=int, default=5)
ap.add_argument("--out", default=None)
args = ap.parse_args()
sys.path.insert(0, args.anchor)
import anchor_common as ac
import fair_data

quiet = ac.wait_quiet()
import pandas as pd
import fairlearn
from sklearn.metrics import accuracy_score
from fairlearn.metrics import (MetricFrame, selection_rate, true_positive_rate,
                               false_positive_rate)

METRICS = {"accuracy": accuracy_score, "selection_rate": selection_rate,
           "true_positive_rate": true_positive_rate, "false_positive_rate": false_positive_rate}
n = args.rows
path = os.path.join(args.datadir, f"fair_{n}.csv")
if not os.path.exists(path):
    fair_data.write_csv(path, n, seed=42)
df = pd.read_csv(path)
yt, yp, s = df.y_true, df.y_pred, df.group


def full():
    mf = MetricFrame(metrics=METRICS, y_true=yt, y_pred=yp, sensitive_features=s)
    mf.difference(); mf.ratio()


m = ac.measure(full, args.reps, warmup=1)
res = {"bench": "fairlearn", "rows": n, "fairlearn": fairlearn.__version__,
       "pandas": pd.__version__, "quiet": quiet, "construct+difference+ratio": m,
       "peak_rss_mib": round(ac.peak_rss_mib(), 1), "loadavg_after": ac.loadavg()}
ac.emit(res, args.out)
