"""PyTorch eager on a CUDA GPU: the peer of `cargo xtask gpu-check`'s model rows.

One process = one model, one shape, one precision; prints one JSON line.
Same model and inputs as ../shared/bench/bench_bert.py (BertForSequenceClassification,
3 labels, random ids in [0, vocab), all-ones mask; minilm = all-MiniLM-L6-v2 with a fresh
head, base = BERT-base geometry at random init), on the GPU instead of the CPU:
  inference : eval, no_grad forward, logits synchronised (torch.cuda.synchronize)
  training  : train mode (dropout on), forward + cross-entropy + backward + AdamW step
--precision: fp32 (plain), f16 / bf16 = torch.autocast("cuda", dtype) around the forward
and the loss, fp32 weights and AdamW state (PyTorch's mixed precision; f16 training uses
a GradScaler as a PyTorch user would).
"""
import argparse, json, os, statistics, sys, time

ap = argparse.ArgumentParser()
ap.add_argument("--model", choices=["minilm", "base"], required=True)
ap.add_argument("--minilm-dir", default=None)
ap.add_argument("--seq", type=int, default=128)
ap.add_argument("--batch", type=int, default=32)
ap.add_argument("--precision", choices=["fp32", "f16", "bf16"], default="fp32")
ap.add_argument("--warmup", type=int, default=5)
ap.add_argument("--steps", type=int, default=20)
ap.add_argument("--seed", type=int, default=0)
args = ap.parse_args()
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
import torch.nn.functional as F
import transformers
from transformers import BertConfig, BertForSequenceClassification

if not torch.cuda.is_available():
    print(json.dumps({"error": "torch.cuda.is_available() is False"}))
    sys.exit(0)
dev = torch.device("cuda")
torch.manual_seed(args.seed)
if args.model == "minilm":
    model = BertForSequenceClassification.from_pretrained(args.minilm_dir, num_labels=3)
else:
    model = BertForSequenceClassification(BertConfig(num_labels=3))
model.to(dev)
cfg = model.config
dtype = {"fp32": None, "f16": torch.float16, "bf16": torch.bfloat16}[args.precision]

def autocast():
    if dtype is None:
        return torch.autocast("cuda", enabled=False)
    return torch.autocast("cuda", dtype=dtype)

g = torch.Generator().manual_seed(args.seed)
pool = []
for _ in range(4):
    ids = torch.randint(0, cfg.vocab_size, (args.batch, args.seq), generator=g).to(dev)
    pool.append((ids, torch.ones_like(ids), torch.randint(0, 3, (args.batch,), generator=g).to(dev)))

def timed(step, n, warmup):
    for i in range(warmup):
        step(pool[i % 4])
    torch.cuda.synchronize()
    times = []
    for i in range(n):
        t = time.perf_counter()
        step(pool[i % 4])
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return {"median_s": statistics.median(times), "min_s": min(times), "n": n}

model.eval()
def infer(b):
    with torch.no_grad(), autocast():
        return model(input_ids=b[0], attention_mask=b[1]).logits
first = time.perf_counter(); infer(pool[0]); torch.cuda.synchronize(); first = time.perf_counter() - first
inf = timed(infer, args.steps, args.warmup)

model.train()
opt = torch.optim.AdamW(model.parameters(), lr=2e-5)
scaler = torch.amp.GradScaler("cuda", enabled=args.precision == "f16")
def train(b):
    opt.zero_grad(set_to_none=True)
    with autocast():
        logits = model(input_ids=b[0], attention_mask=b[1]).logits
        loss = F.cross_entropy(logits.float(), b[2])
    scaler.scale(loss).backward()
    scaler.step(opt)
    scaler.update()
    return loss
tr = timed(train, args.steps, args.warmup)

print(json.dumps({
    "peer": "pytorch-eager-cuda", "model": args.model, "precision": args.precision,
    "seq": args.seq, "batch": args.batch, "gpu": torch.cuda.get_device_name(0),
    "torch": torch.__version__, "transformers": transformers.__version__,
    "first_forward_s": round(first, 4), "infer": inf, "train": tr,
    "max_memory_mib": round(torch.cuda.max_memory_allocated() / 2**20, 1),
}))
