"""Split files for `bench/constraint.md`: Valor (`valor train --train/--valid/--test`) and
fairlearn's ExponentiatedGradient (`../shared/bench/bench_reductions.py --train/--test`) are
measured on identical rows. Nothing is copied into the repository: the files go to --out.

Usage (the peers' Python, which has pandas and numpy):
  ~/.cache/valor-peers-venv/bin/python bench/constraint_prep.py --valor target/debug/valor \
      --adult ../shared/datasets/adult --out /tmp/constraint-bench

Writes, under --out:
  builtin/{train,valid,test}.csv  `valor data gen --rows 6000 --seed 1`, plus `label_bin`
                                  (`growth` or `rest`); rows dealt by a seeded permutation
                                  (numpy default_rng(SEED), --split-seed, 7 by default)
                                  70% / 10% / 20%.
  builtin-valid1200/...           the same rows and permutation dealt 60% / 20% / 20%: the
                                  same test rows and peer_train.csv, 600 of Valor's training
                                  rows moved to validation (1,200 rows), for bounds that 600
                                  validation rows resolve poorly (`valor train` warns).
  adult/{train,valid,test}.csv    UCI Adult: train and valid drawn without overlap from
                                  adult.data (8,000 and 2,000 rows), test from adult.test
                                  (5,000 rows), numpy default_rng(SEED); columns with `_` for `-`,
                                  surrounding spaces and adult.test's trailing `.` removed, `?`
                                  kept as a value; `income` is `>50K` or `<=50K`.
  */peer_train.csv                train + valid (the peer selects nothing, so it trains on both).
  */all.csv                       the three files' rows with a `split` column (train, valid,
                                  test), for `valor train --split-col split`: the same rows.
"""
import argparse
import os
import subprocess

import numpy as np
import pandas as pd

ADULT_COLUMNS = [
    "age", "workclass", "fnlwgt", "education", "education_num", "marital_status",
    "occupation", "relationship", "race", "sex", "capital_gain", "capital_loss",
    "hours_per_week", "native_country", "income",
]


def write_splits(out, train, valid, test, peer=None):
    """`peer`: the peer's training rows (default train + valid, in that order)."""
    os.makedirs(out, exist_ok=True)
    for name, frame in [("train", train), ("valid", valid), ("test", test)]:
        frame.to_csv(os.path.join(out, f"{name}.csv"), index=False)
    peer = pd.concat([train, valid]) if peer is None else peer
    peer.to_csv(os.path.join(out, "peer_train.csv"), index=False)
    # The same rows in one file with a split column (`valor train --split-col split`).
    pd.concat([train.assign(split="train"), valid.assign(split="valid"),
               test.assign(split="test")]).to_csv(os.path.join(out, "all.csv"), index=False)
    print(f"{out}: train {len(train)}, valid {len(valid)}, test {len(test)} rows")


def builtin(valor, out, seed):
    raw = os.path.join(out, "builtin-6000.csv")
    subprocess.run([valor, "data", "gen", "--rows", "6000", "--seed", "1", "--out", raw,
                    "--overwrite"], check=True)
    data = pd.read_csv(raw, dtype=str, keep_default_na=False)
    data["label_bin"] = np.where(data["label"] == "growth", "growth", "rest")
    order = np.random.default_rng(seed).permutation(len(data))
    peer = None
    for name, train_share, valid_share in [("builtin", 0.7, 0.1),
                                           ("builtin-valid1200", 0.6, 0.2)]:
        n_train, n_valid = int(train_share * len(data)), int(valid_share * len(data))
        train, valid, test = (data.iloc[np.sort(p)]
                              for p in np.split(order, [n_train, n_train + n_valid]))
        # The peer trains on the same rows in the same order for both layouts.
        peer = pd.concat([train, valid]) if peer is None else peer
        write_splits(os.path.join(out, name), train, valid, test, peer)


def adult(folder, out, seed):
    def read(name, skip):
        frame = pd.read_csv(os.path.join(folder, name), header=None, names=ADULT_COLUMNS,
                            skiprows=skip, dtype=str, skipinitialspace=True,
                            keep_default_na=False)
        frame = frame[frame["income"].str.len() > 0]  # a blank last line
        frame["income"] = frame["income"].str.rstrip(".")
        return frame.reset_index(drop=True)

    data, test = read("adult.data", 0), read("adult.test", 1)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(data))
    train_rows, valid_rows = np.sort(order[:8000]), np.sort(order[8000:10000])
    test_rows = np.sort(rng.permutation(len(test))[:5000])
    write_splits(os.path.join(out, "adult"), data.iloc[train_rows], data.iloc[valid_rows],
                 test.iloc[test_rows])


ap = argparse.ArgumentParser()
ap.add_argument("--valor", help="the valor binary (for `valor data gen`; without it the built-in "
                "data is skipped)")
ap.add_argument("--adult", required=True, help="folder with adult.data and adult.test")
ap.add_argument("--out", required=True)
ap.add_argument("--split-seed", type=int, default=7,
                help="seed of the permutations that deal the rows (7: the files bench/constraint.md "
                "measures unless it names another)")
args = ap.parse_args()
os.makedirs(args.out, exist_ok=True)
if args.valor:
    builtin(args.valor, args.out, args.split_seed)
adult(args.adult, args.out, args.split_seed)
