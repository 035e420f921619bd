"""HF tokenizers (Python) peer for Valor's `tokenize/minilm_100k_sentences` benchmark.

Written to the bench data folder and run by `cargo xtask bench` with the peers'
python. Loads the MiniLM tokenizer.json, truncation at 128, no padding (Valor's
TextTokenizer settings), reads the `text` column of the same CSV Valor reads,
and times `encode_batch` over all rows with anchor_common.measure (1 warm-up,
--reps timed). Threads: RAYON_NUM_THREADS / RAYON_RS_NUM_CPUS set by the harness.
Usage: python tokenize_peer.py --anchor DIR --tokenizer FILE --csv FILE [--reps 5] [--out F]
"""
import argparse, csv, os, sys

ap = argparse.ArgumentParser()
ap.add_argument("--anchor", required=True)
ap.add_argument("--tokenizer", required=True)
ap.add_argument("--csv", required=True)
ap.add_argument("--reps", type=int, default=5)
ap.add_argument("--out", default=None)
args = ap.parse_args()
sys.path.insert(0, args.anchor)
import anchor_common as ac

quiet = ac.wait_quiet()
import tokenizers
from tokenizers import Tokenizer

tok = Tokenizer.from_file(args.tokenizer)
tok.enable_truncation(max_length=128)
tok.no_padding()
with open(args.csv, newline="") as f:
    texts = [row["text"] for row in csv.DictReader(f)]
m = ac.measure(lambda: tok.encode_batch(texts, add_special_tokens=True), args.reps, warmup=1)
n_tokens = sum(len(e.ids) for e in tok.encode_batch(texts))
res = {"bench": "tokenize", "sentences": len(texts), "tokens": n_tokens,
       "tokenizers": tokenizers.__version__, "quiet": quiet, "encode_batch": m,
       "rayon_threads": os.environ.get("RAYON_NUM_THREADS"),
       "peak_rss_mib": round(ac.peak_rss_mib(), 1), "loadavg_after": ac.loadavg()}
ac.emit(res, args.out)
