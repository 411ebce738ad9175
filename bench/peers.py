#!/usr/bin/env python3
"""Embedding throughput and latency of the reference implementations of all-MiniLM-L6-v2.

    bench/peers.py [--model-dir DIR] [--cache-dir DIR] [--threads N] [--sentences S]
                   [--batches 1,8,32] [--latency-runs R] [--impl NAME ...]

Run it with the virtualenv that bench/setup-peers.sh creates. It measures, on the CPU with a
fixed number of threads, float32 throughout:

- sentence-transformers: `SentenceTransformer.encode` on PyTorch;
- onnxruntime: an ONNX export of the same BERT (legacy TorchScript exporter, cached in
  --cache-dir), tokenised with the `tokenizers` package (padding to the longest sentence of the
  batch, truncation at the model's max_seq_length), mean-pooled and L2-normalised in numpy.
  Before it is measured, its embeddings are checked against sentence-transformers'.

Throughput: the same deterministic 12-word sentences as models/examples/bench.rs, embedded in
chunks of each batch size after one untimed warm-up batch. Latency: one short sentence embedded
--latency-runs times, one at a time, after one warm-up. Both timings include tokenisation (the
Rust bench tokenises up front; for these sentences it is a small share of the work).

Output: one JSON object per line on stdout, either
    {"impl", "threads", "batch", "sentences_per_s", "sentences"}   or
    {"impl", "threads", "latency_p50_ms", "latency_p99_ms", "runs"}.
Progress and the first two sentences go to stderr.
"""

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

from sentences import LATENCY_SENTENCE, sentences

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODEL_DIR = REPO_ROOT / "var" / "models" / "all-MiniLM-L6-v2"
DEFAULT_CACHE_DIR = Path(os.environ.get("BENCH_CACHE", "/work/bench-cache"))

ST_IMPL = "sentence-transformers"
ORT_IMPL = "onnxruntime"
IMPLS = (ST_IMPL, ORT_IMPL)

ONNX_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
ONNX_OUTPUT = "last_hidden_state"
ONNX_OPSET = 17
MIN_COSINE = 0.9999


class SentenceTransformersPeer:
    """sentence-transformers on PyTorch, CPU, float32."""

    name = ST_IMPL

    def __init__(self, model_dir, threads):
        import torch
        from sentence_transformers import SentenceTransformer

        torch.set_num_threads(threads)
        self.model = SentenceTransformer(str(model_dir), device="cpu")

    def embed(self, texts):
        return self.model.encode(
            texts,
            batch_size=len(texts),
            normalize_embeddings=True,
            show_progress_bar=False,
        )


class OnnxRuntimePeer:
    """onnxruntime on the exported BERT, with tokenisation and pooling outside the graph."""

    name = ORT_IMPL

    def __init__(self, onnx_path, model_dir, threads):
        import onnxruntime

        self.tokenizer = load_tokenizer(model_dir)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(
            str(onnx_path), options, providers=["CPUExecutionProvider"]
        )

    def embed(self, texts):
        encodings = self.tokenizer.encode_batch(texts)
        feeds = {
            "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
            "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64),
        }
        (hidden,) = self.session.run([ONNX_OUTPUT], feeds)
        return mean_pool_normalised(hidden, feeds["attention_mask"])


def max_seq_length(model_dir):
    """The truncation length sentence-transformers uses for this model."""
    config = json.loads((model_dir / "sentence_bert_config.json").read_text())
    return config["max_seq_length"]


def load_tokenizer(model_dir):
    """tokenizer.json, re-configured to pad to the longest sentence and truncate like
    sentence-transformers (the file itself pads and truncates to a fixed 128)."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    padding = tokenizer.padding
    tokenizer.enable_padding(
        pad_id=padding["pad_id"],
        pad_type_id=padding["pad_type_id"],
        pad_token=padding["pad_token"],
    )
    tokenizer.enable_truncation(max_seq_length(model_dir))
    return tokenizer


def mean_pool_normalised(hidden, attention_mask):
    """Mean of the token vectors under the attention mask, scaled to unit length."""
    mask = attention_mask[:, :, np.newaxis].astype(hidden.dtype)
    summed = (hidden * mask).sum(axis=1)
    pooled = summed / np.maximum(mask.sum(axis=1), 1e-9)
    return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)


def export_onnx(model_dir, path):
    """Export the model's BERT to `path` with dynamic batch and sequence axes."""
    import torch
    from transformers import AutoModel

    class NamedInputs(torch.nn.Module):
        """Takes the three BERT inputs by position, passes them to the model by name."""

        def __init__(self, bert):
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask, token_type_ids):
            output = self.bert(
                input_ids=input_ids,
                attention_mask=attention_mask,
                token_type_ids=token_type_ids,
            )
            return output.last_hidden_state

    bert = AutoModel.from_pretrained(str(model_dir), dtype=torch.float32).eval()
    # Sentences of different lengths, so that the traced graph is that of a padded batch (some
    # transformers versions drop the attention mask of a batch without padding).
    encodings = load_tokenizer(model_dir).encode_batch(sentences(2) + [LATENCY_SENTENCE])
    example = tuple(
        torch.tensor([getattr(e, field) for e in encodings], dtype=torch.int64)
        for field in ("ids", "attention_mask", "type_ids")
    )
    axes = {name: {0: "batch", 1: "sequence"} for name in ONNX_INPUTS + (ONNX_OUTPUT,)}
    partial = path.with_name(path.name + ".partial")
    with torch.no_grad():
        torch.onnx.export(
            NamedInputs(bert),
            example,
            str(partial),
            input_names=list(ONNX_INPUTS),
            output_names=[ONNX_OUTPUT],
            dynamic_axes=axes,
            opset_version=ONNX_OPSET,
            dynamo=False,
        )
    os.replace(partial, path)


def cached_onnx(model_dir, cache_dir):
    """Path of the cached ONNX export of `model_dir`, exporting it first if it is missing."""
    path = cache_dir / f"{model_dir.name}.onnx"
    if not path.exists():
        log(f"exporting {model_dir} to {path}")
        cache_dir.mkdir(parents=True, exist_ok=True)
        export_onnx(model_dir, path)
    return path


def verify_onnx(onnx_peer, reference_peer):
    """Abort unless the ONNX embeddings match the reference's, in a padded batch and alone."""
    worst = 1.0
    for texts in (sentences(3) + [LATENCY_SENTENCE], [LATENCY_SENTENCE]):
        cosines = np.sum(onnx_peer.embed(texts) * reference_peer.embed(texts), axis=1)
        worst = min(worst, float(cosines.min()))
    if worst < MIN_COSINE:
        sys.exit(f"ONNX export disagrees with sentence-transformers: cosine {worst:.6f}")
    log(f"ONNX export matches sentence-transformers (lowest cosine {worst:.7f})")


def sentences_per_second(peer, texts, batch):
    """Embed `texts` in chunks of `batch` after one untimed warm-up chunk."""
    peer.embed(texts[:batch])
    started = time.perf_counter()
    for start in range(0, len(texts), batch):
        peer.embed(texts[start : start + batch])
    return len(texts) / (time.perf_counter() - started)


def latencies_ms(peer, runs):
    """Sorted times, in milliseconds, of embedding the latency sentence alone `runs` times."""
    peer.embed([LATENCY_SENTENCE])
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        peer.embed([LATENCY_SENTENCE])
        times.append((time.perf_counter() - started) * 1000)
    return sorted(times)


def percentile(sorted_values, percent):
    """Nearest-rank percentile of already sorted values."""
    rank = math.ceil(percent / 100 * len(sorted_values))
    return sorted_values[max(rank, 1) - 1]


def benchmark(peer, texts, args):
    """Print one throughput line per batch size, then one latency line."""
    for batch in args.batches:
        rate = sentences_per_second(peer, texts, batch)
        emit(impl=peer.name, threads=args.threads, batch=batch,
             sentences_per_s=round(rate, 1), sentences=len(texts))
    times = latencies_ms(peer, args.latency_runs)
    emit(impl=peer.name, threads=args.threads,
         latency_p50_ms=round(percentile(times, 50), 3),
         latency_p99_ms=round(percentile(times, 99), 3), runs=len(times))


def emit(**fields):
    print(json.dumps(fields), flush=True)


def log(message):
    print(message, file=sys.stderr, flush=True)


def batch_sizes(text):
    sizes = [int(size) for size in text.split(",")]
    if any(size < 1 for size in sizes):
        raise argparse.ArgumentTypeError("batch sizes must be positive")
    return sizes


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, default=DEFAULT_MODEL_DIR)
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE_DIR,
                        help="where the ONNX export is kept (default $BENCH_CACHE or "
                             "/work/bench-cache)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sentences", type=int, default=1024)
    parser.add_argument("--batches", type=batch_sizes, default=[1, 8, 32])
    parser.add_argument("--latency-runs", type=int, default=200)
    parser.add_argument("--impl", action="append", choices=IMPLS, dest="impls",
                        help="repeatable; default: all")
    args = parser.parse_args()
    if not (args.model_dir / "config.json").is_file():
        parser.error(f"no model in {args.model_dir}; run models/fetch.sh first")
    if min(args.threads, args.sentences, args.latency_runs) < 1:
        parser.error("--threads, --sentences and --latency-runs must be positive")
    args.impls = args.impls or list(IMPLS)
    return args


def main():
    args = parse_args()
    # The tokenizers' Rust thread pool reads this when it first starts.
    os.environ["RAYON_NUM_THREADS"] = str(args.threads)
    texts = sentences(args.sentences)
    log(f"sentence 0: {texts[0]}")
    if len(texts) > 1:
        log(f"sentence 1: {texts[1]}")

    reference = SentenceTransformersPeer(args.model_dir, args.threads)
    peers = [reference] if ST_IMPL in args.impls else []
    if ORT_IMPL in args.impls:
        onnx_path = cached_onnx(args.model_dir, args.cache_dir)
        onnx_peer = OnnxRuntimePeer(onnx_path, args.model_dir, args.threads)
        verify_onnx(onnx_peer, reference)
        peers.append(onnx_peer)

    for peer in peers:
        log(f"measuring {peer.name}")
        benchmark(peer, texts, args)


if __name__ == "__main__":
    main()
