"""Load test of ``kdtool answer --input FILE.jsonl``: many questions in one process.

Builds a tiny random RoBERTa QA model (or takes ``--model``), writes N questions over varied
Spanish contexts, runs ``kdtool answer`` as a real subprocess and samples its peak resident memory
(VmHWM) when 10% of the lines and when all of them are written. Prints JSON: peak RSS at both
points, lines answered, lines that parse, seconds. Memory should stay flat: the answers are
streamed out in chunks, nothing grows with N.

    python bench/answer_load.py --questions 10000
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness import rss_mb

ROOT = Path(__file__).resolve().parents[1]


def make_model(root: Path) -> Path:
    sys.path.insert(0, str(ROOT / "tests"))
    import tiny  # the tests' real tiny components: a trained BPE tokenizer and a random QA model

    from kdtool.tokenizer_training import train_tokenizer

    squad = tiny.tiny_squad(n_articles=20)
    tok = train_tokenizer(tiny.corpus_texts(squad) * 3, "bpe", vocab_size=800)
    return tiny.tiny_qa_model(root / "model", tok, "roberta")


def write_questions(path: Path, n: int) -> None:
    sys.path.insert(0, str(ROOT / "tests"))
    import tiny

    squad = tiny.tiny_squad(n_articles=max(1, n // 12 + 1))
    rows = [(qa["question"], p["context"]) for a in squad["data"] for p in a["paragraphs"] for qa in p["qas"]]
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(n):
            q, c = rows[i % len(rows)]
            fh.write(json.dumps({"id": f"q{i}", "question": q, "context": c}, ensure_ascii=False) + "\n")


def count_lines(path: Path) -> int:
    try:
        with open(path, "rb") as fh:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 20), b""))
    except FileNotFoundError:
        return 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--questions", type=int, default=10000)
    ap.add_argument("--model", type=Path, default=None, help="A model or bundle dir [default: a tiny random RoBERTa].")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=16)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="kdtool-answer-load-") as tmp:
        tmp = Path(tmp)
        model = args.model or make_model(tmp)
        src, out = tmp / "questions.jsonl", tmp / "answers.jsonl"
        write_questions(src, args.questions)
        cmd = [sys.executable, "-c", "import sys; from kdtool.cli import main; sys.exit(main())", "answer", str(model),
               "--input", str(src), "--output", str(out), "--device", "cpu", "--threads", str(args.threads),
               "--batch-size", str(args.batch_size)]
        env = dict(os.environ, TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS=str(args.threads))
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        checkpoints = sorted({max(1, args.questions // 10), args.questions})
        samples, last_hwm = {}, None
        while proc.poll() is None:
            hwm = rss_mb(proc.pid, "VmHWM")
            last_hwm = hwm or last_hwm
            done = count_lines(out)
            for c in checkpoints:
                if c not in samples and done >= c:
                    samples[c] = {"lines": done, "peak_rss_mb": round(last_hwm, 1), "seconds": round(time.perf_counter() - t0, 1)}
            time.sleep(0.2)
        seconds = time.perf_counter() - t0
        err = proc.stderr.read()
        lines = out.read_text(encoding="utf-8").splitlines() if out.exists() else []
        parsed = sum(1 for x in lines if json.loads(x).get("id"))
        for c in checkpoints:  # the last point may be reached between two samples: the final reading
            samples.setdefault(c, {"lines": len(lines), "peak_rss_mb": round(last_hwm or 0, 1), "seconds": round(seconds, 1)})
        first, final = samples[checkpoints[0]], samples[checkpoints[-1]]
        print(json.dumps({
            "bench": "answer_load", "questions": args.questions, "returncode": proc.returncode,
            "lines_written": len(lines), "lines_parsed": parsed, "seconds": round(seconds, 1),
            "questions_per_second": round(len(lines) / seconds, 1),
            f"peak_rss_mb_at_{checkpoints[0]}": first["peak_rss_mb"], f"peak_rss_mb_at_{checkpoints[-1]}": final["peak_rss_mb"],
            "rss_growth_mb": round(final["peak_rss_mb"] - first["peak_rss_mb"], 1), "samples": samples,
            "stderr_tail": err.strip().splitlines()[-1:] if err.strip() else [],
            "model": "tiny random RoBERTa (2 layers, hidden 64)" if args.model is None else str(args.model),
        }, indent=2))


if __name__ == "__main__":
    main()
