"""Save the paper-shape teacher and student (random weights) as Hugging Face directories for ``kdtool profile``.

The shapes are bench/harness.py's (one home): teacher RoBERTa-large (24 x 1024, 16 heads, FFN 4096,
vocab 50262), student 6 x 512, 16 heads, FFN 3072; ``--tiny`` gives its tiny pair for the CPU
dry run. The tokenizer is a small BPE trained on kdtool's built-in sample sentences: the profiler draws
token ids from the tokenizer's vocabulary, and latency does not depend on which ids they are.

    python bench/gpu/make_models.py OUT_DIR [--tiny]     # writes OUT_DIR/teacher and OUT_DIR/student
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/, for the shared harness

from harness import build_model, make_tokenizer  # noqa: E402


def save_models(out: Path, tiny: bool) -> dict[str, Path]:
    tokenizer = make_tokenizer()
    return {name: build_model(out / name, name, tokenizer, tiny) for name in ("teacher", "student")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--tiny", action="store_true")
    args = ap.parse_args()
    for name, path in save_models(args.out, args.tiny).items():
        print(f"{name}: {path}")


if __name__ == "__main__":
    main()
