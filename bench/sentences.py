"""The deterministic benchmark sentences, shared by the Python benches.

`sentences(count)` gives, word for word, the sentences of models/examples/bench.rs. This module
imports nothing, so that benches run with the system python3 can use it too.
"""

# Exactly the list in models/examples/bench.rs, in the same order.
WORDS = (
    "brand", "logo", "primary", "palette", "teal", "banner", "icon", "mobile",
    "typography", "bold", "headline", "vector", "illustration", "mountain", "template",
    "letterhead", "dark", "mode", "wordmark", "guidelines", "spacing", "colour", "asset",
    "library", "campaign", "social", "media", "print", "poster", "gradient", "white",
    "background",
)
WORDS_PER_SENTENCE = 12

# The one short sentence whose latency every bench measures.
LATENCY_SENTENCE = "Primary logo on a white background"


def sentences(count):
    """`count` deterministic sentences, word for word those of models/examples/bench.rs."""
    state = 0x2545F491
    result = []
    for _ in range(count):
        words = []
        for _ in range(WORDS_PER_SENTENCE):
            state = (state * 1_664_525 + 1_013_904_223) & 0xFFFFFFFF
            words.append(WORDS[(state >> 16) % len(WORDS)])
        result.append(" ".join(words))
    return result
