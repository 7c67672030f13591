"""A tiny Detoxify checkpoint for the tests, in Detoxify's own `.ckpt` format.

The released weights (a bert-base-sized model, 400+ MB) cannot be downloaded
where the tests run, so `build()` makes a checkpoint the same way Detoxify's
training does: a dict with `config` (`arch.args`: model_type, model_name,
tokenizer_name, num_classes; `dataset.args.classes`: the Jigsaw class names)
and `state_dict` (the weights of `transformers.BertForSequenceClassification`),
written with `torch.save`. The model is a 2-layer BERT with a word-level
vocabulary, trained for a few seconds on a handful of sentences so that
insults score high and plain questions low: enough to check that scores
flow through the real Detoxify code path and into drop reasons.

Next to it, `hf/` holds the base config and tokenizer files, what
`huggingface_config_path` points at for offline use.
"""
from __future__ import annotations

from pathlib import Path

CLASSES = ["toxic", "severe_toxic", "obscene", "threat", "insult", "identity_hate"]

TOXIC = [
    "you are a stupid idiot",
    "shut up you moron",
    "i hate you, you worthless idiot",
    "you are a dumb stupid loser",
    "go away you pathetic moron",
    "what a disgusting idiot you are",
    "you are so stupid and ugly",
    "stupid idiot, nobody likes you",
]
CLEAN = [
    "how do i bake bread",
    "what is a peanut gallery",
    "can you help me plan a trip to paris",
    "the weather is nice today",
    "please tell me how to cook rice",
    "thanks for the help with my homework",
    "what are some good books to read",
    "how do plants grow in the spring",
]


def build(folder: Path, steps: int = 120) -> tuple[Path, Path]:
    """Writes `folder/tiny.ckpt` and `folder/hf/`; returns both paths."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    hf = folder / "hf"
    hf.mkdir(exist_ok=True)
    words = sorted({w.strip(",.") for t in TOXIC + CLEAN for w in t.split()} | set("abcdefghijklmnopqrstuvwxyz"))
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words, *(f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz")]
    (hf / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    config = BertConfig(
        vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=512, num_labels=len(CLASSES),
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    )
    config.save_pretrained(hf)
    tokenizer = BertTokenizer(str(hf / "vocab.txt"), do_lower_case=True)
    tokenizer.save_pretrained(hf)

    torch.manual_seed(0)
    # Tiny gradients late in training turn into denormal floats, which are 100x slower on a CPU.
    flushing = torch.set_flush_denormal(True)
    model = BertForSequenceClassification(config)
    texts = TOXIC + CLEAN
    # Toxic sentences are toxic and insults; the other classes stay low.
    labels = torch.tensor([[1.0, 0.0, 0.0, 0.0, 1.0, 0.0]] * len(TOXIC) + [[0.0] * 6] * len(CLEAN))
    batch = tokenizer(texts, return_tensors="pt", padding=True)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(steps):
        optimizer.zero_grad()
        logits = model(**batch).logits
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, labels)
        loss.backward()
        optimizer.step()
    model.eval()
    if flushing:
        torch.set_flush_denormal(False)
    checkpoint = {
        "config": {
            "arch": {
                "args": {
                    "model_type": "bert-base-uncased",  # as in the released `original` checkpoint: a hub name
                    "model_name": "BertForSequenceClassification",
                    "tokenizer_name": "BertTokenizer",
                    "num_classes": len(CLASSES),
                }
            },
            "dataset": {"args": {"classes": CLASSES}},
        },
        "state_dict": model.state_dict(),
    }
    path = folder / "tiny.ckpt"
    torch.save(checkpoint, path)
    return path, hf
