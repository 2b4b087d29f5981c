"""Texts per second of the pretrained MiniLM text encoder at several sequence lengths.

Two workloads per max_length: ``titles`` (short item titles, ~6-12 tokens; embed() cuts
each batch to its longest text, so these cost the same at any max_length) and ``full``
(texts long enough to fill max_length: the worst case).

    .venv/bin/python benchmarks/bench_text_encoder.py --n 256 --json benchmarks/out/text_encoder.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tfrs_multiscene  # noqa: E402,F401  (before TensorFlow)
from tfrs_multiscene.text.minilm import load_minilm  # noqa: E402

WORDS = ("vintage leather wallet slim bifold card holder women men organic cotton shirt "
         "wireless noise cancelling headphones bluetooth stainless steel kitchen knife "
         "set ceramic coffee mug handmade wooden toy train classic jazz vinyl record "
         "crème brûlée café recipe book hiking backpack waterproof tent camping").split()


def make_texts(n: int, words_per_text: int, seed: int) -> list:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(words_per_text)) + f" #{i}" for i in range(n)]


def measure(encoder, texts, batch_size: int, repeats: int) -> float:
    encoder.embed(texts[:batch_size], batch_size=batch_size, progress=False)  # warm-up/trace
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        encoder.embed(texts, batch_size=batch_size, progress=False)
        best = min(best, time.perf_counter() - start)
    return len(texts) / best


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=256, help="texts per measurement")
    parser.add_argument("--lengths", type=int, nargs="+", default=[16, 32, 64])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--json", default="benchmarks/out/text_encoder.json")
    args = parser.parse_args(argv)

    results = []
    for max_length in args.lengths:
        encoder = load_minilm(max_length=max_length)
        workloads = {"titles": make_texts(args.n, 6, seed=1),
                     "full": make_texts(args.n, max_length, seed=2)}
        for workload, texts in workloads.items():
            rate = measure(encoder, texts, args.batch_size, args.repeats)
            results.append({"max_length": max_length, "workload": workload,
                            "texts_per_second": round(rate, 1)})
            print(f"minilm max_length={max_length:3d} {workload:6s}: {rate:8.1f} texts/s", flush=True)
    report = {"encoder": "all-MiniLM-L6-v2", "n_texts": args.n, "batch_size": args.batch_size,
              "cpus": os.cpu_count(), "machine": platform.machine(), "python": sys.version.split()[0],
              "results": results}
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")
    return report


if __name__ == "__main__":
    main()
