"""Times fairlearn's MetricFrame on the CSV written by the `audit_1m` example,
with the metric set of `shared/fixtures/fairness/ref_fairlearn.py` (binary).

Usage: python fairlearn_1m.py PREDICTIONS_CSV
"""
import sys, time
import pandas as pd
from fairlearn.metrics import (MetricFrame, selection_rate, true_positive_rate, false_positive_rate,
    true_negative_rate, false_negative_rate, count, demographic_parity_difference, demographic_parity_ratio,
    equalized_odds_difference, equalized_odds_ratio, equal_opportunity_difference, equal_opportunity_ratio)
from sklearn.metrics import accuracy_score, balanced_accuracy_score, precision_score, roc_auc_score

t0 = time.perf_counter()
df = pd.read_csv(sys.argv[1], keep_default_na=False)
t1 = time.perf_counter()
yt, yp, sf = df["y_true"], df["y_pred"], df["group"]
metrics = {"accuracy": accuracy_score, "balanced_accuracy": balanced_accuracy_score, "selection_rate": selection_rate,
           "true_positive_rate": true_positive_rate, "false_positive_rate": false_positive_rate,
           "true_negative_rate": true_negative_rate, "false_negative_rate": false_negative_rate,
           "precision": lambda a, b: precision_score(a, b, zero_division=0), "count": count}
mf = MetricFrame(metrics=metrics, y_true=yt, y_pred=yp, sensitive_features=sf)
for how in ("between_groups", "to_overall"):
    mf.difference(method=how); mf.ratio(method=how)
mf.group_min(); mf.group_max()
auc = MetricFrame(metrics={"roc_auc": roc_auc_score}, y_true=yt, y_pred=df["y_score"], sensitive_features=sf)
auc.difference(); auc.ratio()
scalars = [demographic_parity_difference(yt, yp, sensitive_features=sf),
           demographic_parity_ratio(yt, yp, sensitive_features=sf),
           equalized_odds_difference(yt, yp, sensitive_features=sf, agg="worst_case"),
           equalized_odds_difference(yt, yp, sensitive_features=sf, agg="mean"),
           equalized_odds_ratio(yt, yp, sensitive_features=sf, agg="worst_case"),
           equalized_odds_ratio(yt, yp, sensitive_features=sf, agg="mean"),
           equal_opportunity_difference(yt, yp, sensitive_features=sf),
           equal_opportunity_ratio(yt, yp, sensitive_features=sf)]
t2 = time.perf_counter()
print(f"rows: {len(df)}")
print(f"read csv: {(t1 - t0) * 1e3:.1f} ms")
print(f"MetricFrame (same metric set, roc_auc, scalar functions): {(t2 - t1) * 1e3:.1f} ms")
print(f"  demographic_parity_difference = {scalars[0]:.6f}, roc_auc overall = {auc.overall['roc_auc']:.6f}")
