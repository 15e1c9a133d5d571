#!/usr/bin/env python3
"""Writes a random-weight GGUF model from a header and a fill plan (gguf/fixtures/bulk-random-model.ts).

    fill-gguf.py HEADER PLAN.json OUTPUT.gguf [--procs N]

F32 tensors get their plan value; F16 tensors random sign and mantissa bits under the plan's exponent, drawn from
numpy's PCG64 seeded with (seed, tensor index, chunk index): the same plan gives the same bytes whatever N is.
Written to OUTPUT.tmp and renamed into place. Prints one JSON line: bytes, seconds, GB/s.
"""

import argparse
import json
import multiprocessing
import os
import sys
import time

import numpy as np

CHUNK = 1 << 26  # elements per work item (128 MiB of F16)


def fail(message):
    print(f"fill-gguf: {message}", file=sys.stderr)
    sys.exit(2)


def fill_chunk(job):
    path, seed, index, tensor, chunk = job
    start = chunk * CHUNK
    count = min(CHUNK, tensor["elements"] - start)
    if tensor["type"] == "f32":
        data = np.full(count, tensor["value"], dtype="<f4")
    else:
        rng = np.random.Generator(np.random.PCG64([seed, index, chunk]))
        data = rng.bit_generator.random_raw((count + 3) // 4).view("<u2")[:count]
        np.bitwise_and(data, 0x83FF, out=data)
        np.bitwise_or(data, tensor["exponentBits"] << 10, out=data)
    fd = os.open(path, os.O_WRONLY)
    try:
        view = memoryview(data).cast("B")
        offset = tensor["offset"] + start * data.itemsize
        while len(view) > 0:
            written = os.pwrite(fd, view, offset)
            view = view[written:]
            offset += written
    finally:
        os.close(fd)
    return count * data.itemsize


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("header")
    parser.add_argument("plan")
    parser.add_argument("output")
    parser.add_argument("--procs", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    with open(args.plan, encoding="utf-8") as f:
        plan = json.load(f)
    if plan.get("format") != "rescale-gguf-fill-1":
        fail(f"{args.plan} is not a fill plan (format {plan.get('format')!r}); make it with npm run bench:gpu:pack")
    with open(args.header, "rb") as f:
        header = f.read()
    if len(header) != plan["headerBytes"] or header[:4] != b"GGUF":
        fail(f"{args.header} does not match {args.plan} ({len(header)} bytes, plan says {plan['headerBytes']})")
    for tensor in plan["tensors"]:
        if tensor["type"] == "f16" and not 1 <= tensor.get("exponentBits", 0) <= 30:
            fail(f"{args.plan}: tensor {tensor['name']} has no valid exponentBits")

    started = time.perf_counter()
    temporary = args.output + ".tmp"
    with open(temporary, "wb") as f:
        f.write(header)
        f.truncate(plan["bytes"])
    jobs = [
        (temporary, plan["seed"], index, tensor, chunk)
        for index, tensor in enumerate(plan["tensors"])
        for chunk in range((tensor["elements"] + CHUNK - 1) // CHUNK)
    ]
    # Largest first, so the last processes do not wait on one big tensor.
    jobs.sort(key=lambda job: -min(CHUNK, job[3]["elements"] - job[4] * CHUNK))
    with multiprocessing.get_context("fork").Pool(max(1, args.procs)) as pool:
        written = sum(pool.imap_unordered(fill_chunk, jobs, chunksize=1))
    os.replace(temporary, args.output)
    seconds = time.perf_counter() - started
    print(json.dumps({
        "model": os.path.basename(args.output),
        "bytes": plan["bytes"],
        "dataBytesWritten": written,
        "seconds": round(seconds, 3),
        "gbPerSecond": round(plan["bytes"] / 1e9 / seconds, 3),
        "procs": args.procs,
    }))


if __name__ == "__main__":
    main()
