"""Logits that transformers + PEFT compute for a LoRA adapter on a base model.

Usage: python peft_logits.py BASE_DIR ADAPTER_DIR TEXTS_JSON MAX_LEN
TEXTS_JSON is a JSON list of strings. Prints {"logits": [[...], ...], "peft": version} on stdout.
Used by crates/valor-cli/tests/it/lora.rs (the PEFT round trip of an adapter `valor train --lora`
wrote); run with the peers' environment (../shared/bench/setup.sh).
"""
import json, os, sys
os.environ.setdefault("HF_HUB_OFFLINE", "1")
import torch, peft
from safetensors import safe_open
from transformers import AutoTokenizer, BertForSequenceClassification
from peft import PeftModel

base, adapter, texts_path, max_len = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
texts = json.load(open(texts_path, encoding="utf-8"))
with safe_open(os.path.join(adapter, "adapter_model.safetensors"), "pt") as f:
    num_labels = f.get_tensor("base_model.model.classifier.bias").shape[0]
model = BertForSequenceClassification.from_pretrained(base, num_labels=num_labels)
model = PeftModel.from_pretrained(model, adapter)
model.eval()
tok = AutoTokenizer.from_pretrained(base)
enc = tok(texts, padding=True, truncation=True, max_length=max_len, return_tensors="pt")
with torch.no_grad():
    logits = model(**enc).logits
print(json.dumps({"logits": logits.tolist(), "peft": peft.__version__}))
