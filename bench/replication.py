"""Drives bench/replication.sh; each subcommand prints one JSON object on standard output.

  durable BASE KEY PROJECT SECONDS RATE
      Writes one canvas with `Prefer: durability=replicated` RATE times a second for SECONDS
      (beside the wrk load) and reports the latencies: commit to "in S3" for the daemon.
  litestream-steady DB S3_ENDPOINT BUCKET PREFIX RATE SECONDS
      Inserts the same kind of row into DB (WAL mode, synchronous=FULL, one transaction per
      row) RATE times a second, records each commit's time, and meanwhile lists the bucket
      every 50 ms (directly at moto, not through the counting proxy) for new level-0 LTX files (db/0000/).
      Each new file's 100-byte header is read (a ranged GET): its timestamp (offset 32, ms,
      big-endian) is when Litestream read the WAL for it. A commit is durable when the first
      file whose timestamp is at or after the commit appears in the listing.
  fill-daemon BASE KEY PROJECT MIB / fill-sqlite DB MIB
      Inserts MIB documents of 1 MiB (random base64: both sides compress them alike).
  wait-litestream S3_ENDPOINT BUCKET PREFIX
      Returns once no new LTX file has appeared for 3 s.
"""

import base64
import json
import random
import os
import sqlite3
import statistics
import sys
import threading
import time
import http.client
from urllib.parse import urlsplit

import boto3


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def summary(latencies):
    return {
        "n": len(latencies),
        "p50_ms": round(statistics.median(latencies) * 1000, 1),
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 1),
        "max_ms": round(max(latencies) * 1000, 1),
    }


class Api:
    def __init__(self, base, key):
        parts = urlsplit(base)
        self.host, self.port = parts.hostname, parts.port
        self.key = key
        self.connection = None

    def post(self, path, body, headers=()):
        if self.connection is None:
            self.connection = http.client.HTTPConnection(self.host, self.port, timeout=60)
        all_headers = {"Authorization": f"Bearer {self.key}",
                       "Content-Type": "application/json", **dict(headers)}
        self.connection.request("POST", path, body=body, headers=all_headers)
        response = self.connection.getresponse()
        data = response.read()
        if response.status >= 300:
            raise RuntimeError(f"{response.status}: {data[:200]!r}")
        return response, data


def document(n):
    return json.dumps({"title": f"load {n}", "document": {"layers": [
        {"type": "text", "text": f"Spring campaign {n}", "x": 10, "y": 20}]}})


def durable(base, key, project, seconds, rate):
    api = Api(base, key)
    latencies, interval = [], 1 / float(rate)
    deadline = time.monotonic() + float(seconds)
    next_at = time.monotonic()
    n = 0
    while time.monotonic() < deadline:
        n += 1
        # A random pause puts each sample at a random point of the one-second upload cycle;
        # without it every sample would start just after an upload and wait a whole cycle.
        time.sleep(random.uniform(0, 1.0))
        started = time.monotonic()
        response, _ = api.post(f"/api/v1/projects/{project}/canvases", document(n),
                               [("Prefer", "durability=replicated")])
        assert response.getheader("Preference-Applied") == "durability=replicated"
        latencies.append(time.monotonic() - started)
        next_at += interval
        time.sleep(max(0, next_at - time.monotonic()))
    print(json.dumps(summary(latencies)))


def s3(endpoint):
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id="bench", aws_secret_access_key="bench")


def ltx_keys(client, bucket, prefix, level="0"):
    keys, token = [], None
    while True:
        args = {"Bucket": bucket, "Prefix": f"{prefix}/{int(level):04x}/"}
        if token:
            args["ContinuationToken"] = token
        page = client.list_objects_v2(**args)
        keys += [item["Key"] for item in page.get("Contents", [])]
        if not page.get("IsTruncated"):
            return keys
        token = page["NextContinuationToken"]


def open_sqlite(path):
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("PRAGMA busy_timeout=5000")
    db.execute("CREATE TABLE IF NOT EXISTS canvases (id INTEGER PRIMARY KEY, body TEXT)")
    return db


def litestream_steady(path, endpoint, bucket, prefix, rate, seconds):
    client = s3(endpoint)
    seen = set(ltx_keys(client, bucket, prefix))
    appeared = []  # (header timestamp s, appearance time s)
    stop = threading.Event()

    def poll():
        while not stop.is_set():
            keys = ltx_keys(client, bucket, prefix)
            now = time.time()
            for key in keys:
                if key not in seen:
                    seen.add(key)
                    head = client.get_object(Bucket=bucket, Key=key, Range="bytes=0-99")
                    header = head["Body"].read()
                    stamp = int.from_bytes(header[32:40], "big", signed=True) / 1000
                    appeared.append((stamp, now))
            time.sleep(0.05)

    poller = threading.Thread(target=poll)
    poller.start()
    db = open_sqlite(path)
    commits, interval = [], 1 / float(rate)
    started = time.monotonic()
    deadline = started + float(seconds)
    next_at = started
    n = 0
    while time.monotonic() < deadline:
        n += 1
        db.execute("INSERT INTO canvases (body) VALUES (?)", (document(n),))
        commits.append(time.time())
        next_at += interval
        delay = next_at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    elapsed = time.monotonic() - started
    time.sleep(3)
    stop.set()
    poller.join()
    appeared.sort()
    stamps_ok = all(abs(stamp - seen_at) < 10 for stamp, seen_at in appeared)
    latencies = []
    for committed in commits:
        later = [seen_at for stamp, seen_at in appeared if stamp >= committed]
        if later:
            latencies.append(min(later) - committed)
    result = summary(latencies)
    result.update(rate=round(len(commits) / elapsed), files=len(appeared),
                  header_timestamps_plausible=stamps_ok, unmatched=len(commits) - len(latencies))
    print(json.dumps(result))


def big_body(n):
    return base64.b64encode(os.urandom(768 * 1024)).decode()  # 1 MiB of text


def fill_daemon(base, key, project, mib):
    def worker(indexes):
        api = Api(base, key)
        for n in indexes:
            body = json.dumps({"title": f"big {n}", "document": {"blob": big_body(n)}})
            api.post(f"/api/v1/projects/{project}/canvases", body)

    started = time.monotonic()
    threads = [threading.Thread(target=worker, args=(range(i, int(mib), 2),)) for i in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    api = Api(base, key)  # one durable write: everything before it is in S3 when it returns
    api.post(f"/api/v1/projects/{project}/canvases", document(0),
             [("Prefer", "durability=replicated")])
    print(json.dumps({"seconds": round(time.monotonic() - started, 1)}))


def fill_sqlite(path, mib):
    db = open_sqlite(path)
    started = time.monotonic()
    for n in range(int(mib)):
        body = json.dumps({"title": f"big {n}", "document": {"blob": big_body(n)}})
        db.execute("INSERT INTO canvases (body) VALUES (?)", (body,))
    print(json.dumps({"seconds": round(time.monotonic() - started, 1)}))


def wait_litestream(endpoint, bucket, prefix):
    client = s3(endpoint)
    started = time.monotonic()
    last, count = time.monotonic(), -1
    while time.monotonic() - last < 3:
        now = len(ltx_keys(client, bucket, prefix))
        if now != count:
            count, last = now, time.monotonic()
        time.sleep(0.2)
    print(json.dumps({"seconds": round(time.monotonic() - started - 3, 1)}))


commands = {"durable": durable, "litestream-steady": litestream_steady,
            "fill-daemon": fill_daemon, "fill-sqlite": fill_sqlite,
            "wait-litestream": wait_litestream}
commands[sys.argv[1]](*sys.argv[2:])
