"""Drives the daemon with the official `openai` Python package, as a client application would.

Usage: openai_client.py BASE_URL API_KEY FIXTURE_JSON

Embeds every reference text twice (the SDK's default encoding, which is base64, and
encoding_format="float") and checks each vector against the PyTorch reference. Exits non-zero
with the first mismatch.
"""

import json
import math
import sys

import openai


def cosine(a, b):
    dot = sum(x * y for x, y in zip(a, b))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def main():
    base_url, api_key, fixture_path = sys.argv[1:4]
    with open(fixture_path) as fixture:
        cases = json.load(fixture)["cases"]
    texts = [case["text"] for case in cases]

    client = openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=0)
    for encoding in (openai.NOT_GIVEN, "float"):
        response = client.embeddings.create(
            model="all-MiniLM-L6-v2", input=texts, encoding_format=encoding
        )
        assert len(response.data) == len(cases), response
        for case, item in zip(cases, response.data):
            similarity = cosine(item.embedding, case["embedding"])
            assert similarity >= 0.9999, f"{case['text']!r}: cosine {similarity}"
        expected_tokens = sum(len(case["token_ids"]) for case in cases)
        assert response.usage.prompt_tokens == expected_tokens, response.usage

    try:
        client.embeddings.create(model="all-MiniLM-L6-v2", input="x", dimensions=64)
    except openai.BadRequestError as error:
        assert error.status_code == 400
    else:
        raise AssertionError("dimensions=64 was accepted")

    print(f"openai SDK {openai.__version__}: {len(cases)} cases match the reference")


if __name__ == "__main__":
    main()
