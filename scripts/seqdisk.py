"""A synthetic one-tenant disk trace whose key space outgrows a fixed successor-table
bound: docs/RESULTS.md "Successor tables: a memory budget".

    .venv/bin/python scripts/seqdisk.py OUT.csv.gz [--requests N] [--keys K] [--seed S]

Sequential runs (1 to 200 blocks, uniform) from uniformly random start blocks of K,
N requests in all (defaults 1,000,000 and 345,000, as issue 12's workstation disk: one
tenant, mostly sequential, ~345k distinct keys). Every key's successor is the next
block, so a table that keeps every row predicts it; a bound below the key count
forgets rows before their run comes back.
"""

from __future__ import annotations

import argparse
import gzip
import random
import sys


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--requests", type=int, default=1_000_000)
    parser.add_argument("--keys", type=int, default=345_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    with gzip.open(args.out, "wt") as f:
        f.write("ts,tenant,key,size\n")
        i = 0
        while i < args.requests:
            start = rng.randrange(args.keys)
            for key in range(start, min(args.keys, start + rng.randint(1, 200))):
                f.write(f"{i},disk,{key},1\n")
                i += 1
                if i >= args.requests:
                    break
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
