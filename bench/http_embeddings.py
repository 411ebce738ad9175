#!/usr/bin/env python3
"""Embedding throughput and latency of a running nexus-canvasd, measured over HTTP.

    bench/http_embeddings.py --url http://127.0.0.1:8000 --key KEY [--label cpu]
                             [--sentences S] [--batches 1,8,32] [--latency-runs R]

It measures what a client sees at `POST /v1/embeddings`: request encoding, the HTTP round trip,
the daemon's queueing, batching and inference, and the decoding of the JSON answer. Requests go
one after another over one keep-alive connection, so connection setup is not measured.

The daemon answers identical inputs from its cache, and this bench sends the same inputs again
(warm-ups, every batch size, the latency sentence), so its figures are only honest when the
daemon runs with the cache off: start it with NEXUS_INFERENCE__CACHE_BYTES=0.

Throughput: the same deterministic 12-word sentences as bench/peers.py and
models/examples/bench.rs, sent in requests of each batch size after one untimed warm-up
request. Latency: one short sentence, one request at a time, --latency-runs times after one
warm-up. Every answer must be 200 with one embedding per input, or the bench stops.

Standard library only: it runs with the system python3. --key is an API key of the daemon
(read scope is enough), sent as `Authorization: Bearer`.

Output: one JSON object per line on stdout, either
    {"impl", "batch", "sentences_per_s", "sentences"}   or
    {"impl", "latency_p50_ms", "latency_p99_ms", "runs"},
with impl "nexus-canvasd over HTTP (LABEL)". Progress goes to stderr.
"""

import argparse
import http.client
import json
import math
import sys
import time
import urllib.parse

from sentences import LATENCY_SENTENCE, sentences

MODEL = "all-MiniLM-L6-v2"
IMPL = "nexus-canvasd over HTTP"
TIMEOUT_S = 60


class EmbeddingsClient:
    """POSTs batches to /v1/embeddings over one persistent connection."""

    def __init__(self, base_url, key):
        url = urllib.parse.urlsplit(base_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"not an http(s) URL: {base_url}")
        connection_class = (
            http.client.HTTPSConnection if url.scheme == "https" else http.client.HTTPConnection
        )
        self.connection = connection_class(url.hostname, url.port, timeout=TIMEOUT_S)
        self.path = url.path.rstrip("/") + "/v1/embeddings"
        self.headers = {
            "Authorization": f"Bearer {key}",
            "Content-Type": "application/json",
            "Accept": "application/json",
        }

    def embed(self, texts):
        """The embeddings of `texts`; exits unless the answer is 200 with one per input."""
        # base64, as the official SDKs ask when their caller names no format.
        body = json.dumps({"model": MODEL, "input": texts, "encoding_format": "base64"})
        try:
            self.connection.request("POST", self.path, body.encode(), self.headers)
            response = self.connection.getresponse()
            answer = response.read()
        except (OSError, http.client.HTTPException) as error:
            sys.exit(f"POST {self.path} failed: {error!r}")
        if response.status != 200:
            self.fail(f"{response.status} {response.reason}", answer)
        data = embeddings_in(answer)
        if data is None or len(data) != len(texts):
            self.fail(f"expected {len(texts)} embeddings, got", answer)
        return data

    def fail(self, problem, answer):
        sys.exit(f"POST {self.path}: {problem}\n{answer.decode(errors='replace')}")


def embeddings_in(answer):
    """The `data` list of an embeddings answer, or None if the answer has none."""
    try:
        data = json.loads(answer)["data"]
    except (ValueError, KeyError, TypeError):
        return None
    return data if isinstance(data, list) else None


def sentences_per_second(client, texts, batch):
    """Send `texts` in requests of `batch` inputs after one untimed warm-up request."""
    client.embed(texts[:batch])
    started = time.perf_counter()
    for start in range(0, len(texts), batch):
        client.embed(texts[start : start + batch])
    return len(texts) / (time.perf_counter() - started)


def latencies_ms(client, runs):
    """Sorted round-trip times, in milliseconds, of `runs` requests for the latency sentence."""
    client.embed([LATENCY_SENTENCE])
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        client.embed([LATENCY_SENTENCE])
        times.append((time.perf_counter() - started) * 1000)
    return sorted(times)


def nearest_rank(sorted_values, percent):
    """The value at the nearest rank for `percent` (as in bench/peers.py) of sorted values."""
    rank = max(1, math.ceil(len(sorted_values) * percent / 100))
    return sorted_values[rank - 1]


def emit(**fields):
    print(json.dumps(fields), flush=True)


def log(message):
    print(message, file=sys.stderr, flush=True)


def batch_sizes(text):
    try:
        sizes = [int(size) for size in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of sizes: {text}") from None
    if any(size < 1 for size in sizes):
        raise argparse.ArgumentTypeError("batch sizes must be positive")
    return sizes


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True,
                        help="base URL of the daemon, e.g. http://127.0.0.1:8000")
    parser.add_argument("--key", required=True, help="API key, sent as Authorization: Bearer")
    parser.add_argument("--sentences", type=int, default=1024)
    parser.add_argument("--batches", type=batch_sizes, default=[1, 8, 32])
    parser.add_argument("--latency-runs", type=int, default=200)
    parser.add_argument("--label", help="appended to the impl name, e.g. cpu or wgpu")
    args = parser.parse_args()
    if min(args.sentences, args.latency_runs) < 1:
        parser.error("--sentences and --latency-runs must be positive")
    return args


def main():
    args = parse_args()
    name = f"{IMPL} ({args.label})" if args.label else IMPL
    try:
        client = EmbeddingsClient(args.url, args.key)
    except ValueError as error:
        sys.exit(str(error))
    texts = sentences(args.sentences)
    log(f"measuring {name} at {args.url}")
    for batch in args.batches:
        rate = sentences_per_second(client, texts, batch)
        emit(impl=name, batch=batch, sentences_per_s=round(rate, 1), sentences=len(texts))
    times = latencies_ms(client, args.latency_runs)
    emit(impl=name, latency_p50_ms=round(nearest_rank(times, 50), 3),
         latency_p99_ms=round(nearest_rank(times, 99), 3), runs=len(times))


if __name__ == "__main__":
    main()
