"""Drives bench/replication.sh: durable writes alone and concurrently, with latencies and the
number of S3 uploads (segments) they caused."""

import json
import re
import statistics
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor


def call(base, key, method, path, body, durable):
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    if durable:
        headers["Prefer"] = "durability=replicated"
    request = urllib.request.Request(
        base + path, data=json.dumps(body).encode(), method=method, headers=headers
    )
    started = time.perf_counter()
    with urllib.request.urlopen(request) as response:
        applied = response.headers.get("Preference-Applied")
        payload = json.loads(response.read())
    return time.perf_counter() - started, applied, payload


def segments(bucket_url):
    with urllib.request.urlopen(bucket_url + "?list-type=2&prefix=appliance/") as response:
        text = response.read().decode()
    return len(re.findall(r"<Key>[^<]*/segments/[^<]*</Key>", text))


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def report(name, latencies, uploads, elapsed):
    print(
        f"{name}: {len(latencies)} writes in {elapsed:.2f} s, "
        f"p50 {statistics.median(latencies) * 1000:.0f} ms, "
        f"p99 {percentile(latencies, 0.99) * 1000:.0f} ms, "
        f"max {max(latencies) * 1000:.0f} ms, {uploads} segment uploads"
    )


def main():
    base, key, bucket_url, writers, per_writer = sys.argv[1:6]
    writers, per_writer = int(writers), int(per_writer)
    _, _, project = call(base, key, "POST", "/api/v1/projects", {"name": "bench"}, True)
    path = f"/api/v1/projects/{project['id']}/canvases"

    def write(index, durable=True):
        body = {"title": f"canvas {index}", "document": {"layers": [index]}}
        latency, applied, _ = call(base, key, "POST", path, body, durable)
        assert not durable or applied == "durability=replicated", applied
        return latency

    before = segments(bucket_url)
    started = time.perf_counter()
    alone = [write(index) for index in range(20)]
    report("one writer", alone, segments(bucket_url) - before, time.perf_counter() - started)

    before = segments(bucket_url)
    started = time.perf_counter()
    with ThreadPoolExecutor(writers) as pool:
        together = list(pool.map(write, range(writers * per_writer)))
    report(
        f"{writers} writers",
        together,
        segments(bucket_url) - before,
        time.perf_counter() - started,
    )

    started = time.perf_counter()
    plain = [write(index, durable=False) for index in range(20)]
    report("one writer, no wait", plain, 0, time.perf_counter() - started)


main()
