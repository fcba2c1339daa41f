"""Rendering a profile (the JSON dict of :meth:`ProfileResult.to_dict`) as a table, Markdown or a plot.

Everything here reads the saved JSON form only, so a report can be redrawn from a file written
on the target device without the models.
"""

from __future__ import annotations

import io
from pathlib import Path

from kdtool.atomic import atomic_write_bytes

DASH = "-"


def _ms(x: float | None) -> str:
    if x is None:
        return DASH
    return f"{x:.0f}" if x >= 100 else f"{x:.1f}" if x >= 10 else f"{x:.2f}"


def _count(n: int | None) -> str:
    if n is None:
        return DASH
    for div, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if n >= div:
            return f"{n / div:.1f}{unit}"
    return str(n)


def _mib(n: int | None) -> str:
    return DASH if n is None else f"{n / 2**20:.1f} MiB"


def _speedup(x: float | None) -> str:
    return DASH if x is None else f"{x:.2f}x"


def _memory(row: dict) -> str:
    mem = row.get("memory") or {}
    if mem.get("cuda_peak_bytes") is not None:
        return f"{_mib(mem['cuda_peak_bytes'])} (GPU)"
    if mem.get("rss_peak_bytes") is None:
        return DASH
    return f"{_mib(mem['rss_peak_bytes'])} (+{mem['rss_peak_delta_bytes'] / 2**20:.1f})"


def _note(row: dict) -> str:
    if row["status"] == "error":
        return f"error: {row['error']}"
    return "interrupted" if row["status"] == "interrupted" else ""


def _where(env: dict) -> str:
    return env["gpu"] if env.get("gpu") else f"{env['cpu']}, {env['threads']} thread{'s' if env['threads'] != 1 else ''}"


def header_lines(r: dict) -> list[str]:
    env, s = r["environment"], r["settings"]
    device = _where(env)
    prof = s["profile"]
    lines = [f"kdtool {r['kdtool_version']} profile on {s['device']} ({device}); profile: {prof}",
             f"torch {env['torch']}, transformers {env['transformers']}, onnxruntime {env['onnxruntime']}, "
             f"python {env['python']}; load average {env.get('load_average')}",
             f"{s['runs']} timed runs after {s['warmup']} warm-up per model and shape, interleaved across models; "
             f"reference: {r['reference']}"]
    if s.get("latency_budget_ms"):
        lines.append(f"latency budget {s['latency_budget_ms']} ms (checked against p90)")
    if r["interrupted"]:
        lines.append("INTERRUPTED: partial results below")
    return lines


def model_table(r: dict) -> tuple[list[str], list[list[str]]]:
    head = ["#", "model", "kind", "precision", "device", "params", "size", "load RSS", "max len", "path"]
    rows = [[str(m["index"]) + (" (ref)" if m["is_reference"] else ""), m["name"], m["kind"], m.get("precision") or DASH,
             m["device"],
             _count(m.get("parameters")), _mib(m.get("size_bytes")), _mib(m.get("load_rss_delta_bytes")),
             str(m.get("max_length") or DASH), m["path"]] for m in r["models"]]
    return head, rows


def fixed_table(r: dict) -> tuple[list[str], list[list[str]]]:
    head = ["batch", "seq", "model", "p50 ms", "p90 ms", "p99 ms", "mean ± std ms", "q/s", "speed-up", "peak RSS (+run)", "note"]
    rows = []
    for row in r["fixed"]:
        lat = row.get("latency_ms") or {}
        spread = f"{_ms(lat['mean'])} ± {_ms(lat['std'])}" if lat else DASH
        qps = row.get("throughput_qps")
        rows.append([str(row["batch_size"]), str(row["seq_len"]), row["model"], _ms(lat.get("p50")), _ms(lat.get("p90")),
                     _ms(lat.get("p99")), spread, DASH if qps is None else f"{qps:.1f}", _speedup(row.get("speedup")),
                     _memory(row), _note(row) + (" over budget" if row.get("within_budget") is False else "")])
    return head, rows


def data_table(r: dict) -> tuple[list[str], list[list[str]]]:
    head = ["batch", "model", "questions", "windows", "tokens min/med/p90/max", "p50 ms/q", "p90 ms/q", "p99 ms/q",
            "q/s", "speed-up", "note"]
    lengths = {x["model_index"]: x for x in r["data"]["lengths"]}
    rows = []
    for row in r["data"]["rows"]:
        lat, ln = row.get("question_latency_ms") or {}, lengths[row["model_index"]]
        qps = row.get("questions_per_second")
        rows.append([str(row["batch_size"]), row["model"], str(row["questions"]), str(row["windows"]),
                     DASH if ln.get("error") else f"{ln['min']}/{ln['median']:g}/{ln['p90']:g}/{ln['max']}",
                     _ms(lat.get("p50")), _ms(lat.get("p90")),
                     _ms(lat.get("p99")), DASH if qps is None else f"{qps:.1f}", _speedup(row.get("speedup")), _note(row)])
    return head, rows


def _text_table(head: list[str], rows: list[list[str]]) -> str:
    cols = [i for i in range(len(head)) if head[i] != "note" or any(r[i] for r in rows)]
    widths = {i: max(len(head[i]), *(len(r[i]) for r in rows)) if rows else len(head[i]) for i in cols}
    left = {"model", "kind", "precision", "device", "path", "note", "#"}

    def line(cells):
        return "  ".join(cells[i].ljust(widths[i]) if head[i] in left else cells[i].rjust(widths[i]) for i in cols).rstrip()

    return "\n".join([line(head), "  ".join("-" * widths[i] for i in cols)] + [line(r) for r in rows])


def _markdown_table(head: list[str], rows: list[list[str]]) -> str:
    def esc(c: str) -> str:
        return c.replace("|", "\\|")

    out = ["| " + " | ".join(head) + " |", "|" + "|".join(" --- " for _ in head) + "|"]
    return "\n".join(out + ["| " + " | ".join(esc(c) for c in r) + " |" for r in rows])


def _sections(r: dict):
    yield "Models", model_table(r)
    yield "Latency at fixed shapes (random tokens, full attention)", fixed_table(r)
    if r.get("data"):
        d = r["data"]
        yield (f"Latency per question over real lengths: {d['questions_used']} of {d['questions_in_file']} questions "
               f"of {d['file']} ({d['selection']}), dynamic padding, length-sorted batches"), data_table(r)


def format_table(r: dict) -> str:
    """The terminal report: a header and one aligned table per section."""
    parts = ["\n".join(header_lines(r))]
    for title, (head, rows) in _sections(r):
        parts.append(f"{title}\n{_text_table(head, rows)}")
    return "\n\n".join(parts) + "\n"


def format_markdown(r: dict) -> str:
    parts = ["# Latency profile", "\n".join(f"- {x}" for x in header_lines(r))]
    for title, (head, rows) in _sections(r):
        parts.append(f"## {title}\n\n{_markdown_table(head, rows)}")
    return "\n\n".join(parts) + "\n"


def render_plot(r: dict) -> bytes:
    """PNG bytes: p50 latency against sequence length per model and batch size (bars up to p90),
    and the speed-up of every other model against the reference per shape."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = r["models"]
    colors = plt.get_cmap("tab10")
    batch_sizes = sorted({row["batch_size"] for row in r["fixed"]})
    styles = ["-", "--", ":", "-."]
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 6), gridspec_kw={"width_ratios": [1, 1.15]})
    ys = []
    for m in models:
        for k, b in enumerate(batch_sizes):
            pts = sorted((row["seq_len"], row["latency_ms"]) for row in r["fixed"]
                         if row["model_index"] == m["index"] and row["batch_size"] == b and row.get("latency_ms"))
            if not pts:
                continue
            x = [p[0] for p in pts]
            p50, p90 = [p[1]["p50"] for p in pts], [p[1]["p90"] for p in pts]
            ys += p50
            label = m["name"] + (" (ref)" if m["is_reference"] else "") + (f", batch {b}" if len(batch_sizes) > 1 else "")
            spread = [b - a for a, b in zip(p50, p90, strict=True)]
            left.errorbar(x, p50, yerr=[[0.0] * len(x), spread], fmt="o" + styles[k % len(styles)],
                          color=colors(m["index"] % 10), label=label, capsize=3, elinewidth=0.8, markersize=5)
    if ys and max(ys) / max(min(ys), 1e-9) > 20:
        left.set_yscale("log")
    left.set_xticks(sorted({row["seq_len"] for row in r["fixed"]}))
    left.set_xlabel("sequence length (tokens)")
    left.set_ylabel("latency per batch (ms): p50, bar up to p90")
    left.set_title("Latency against sequence length")
    left.grid(True, alpha=0.3)
    if ys:
        n = len(left.get_legend_handles_labels()[1])
        left.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=min(3, n), frameon=False)
    _speedup_panel(right, r, colors)
    env = r["environment"]
    fig.suptitle(f"kdtool profile on {r['settings']['device']} ({_where(env)}); {r['settings']['runs']} runs per shape"
                 + (" - INTERRUPTED" if r["interrupted"] else ""), fontsize=11)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def _speedup_panel(ax, r: dict, colors) -> None:
    others = [m for m in r["models"] if not m["is_reference"]]
    groups = [(f"b{row['batch_size']}\ns{row['seq_len']}", row) for row in r["fixed"]]
    if r.get("data"):
        groups += [(f"b{row['batch_size']}\nreal", row) for row in r["data"]["rows"]]
    labels = list(dict.fromkeys(g for g, _ in groups))
    ax.set_title(f"Speed-up against {r['reference']} (p50 ratio)")
    if not others or not labels:
        ax.text(0.5, 0.5, "only the reference was profiled", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return
    width = 0.8 / len(others)
    for k, m in enumerate(others):
        value = {g: row.get("speedup") for g, row in groups if row["model_index"] == m["index"]}
        xs = [i + (k - (len(others) - 1) / 2) * width for i in range(len(labels))]
        hs = [value.get(g) or 0.0 for g in labels]
        bars = ax.bar(xs, hs, width * 0.95, color=colors(m["index"] % 10), label=m["name"])
        for bar, g in zip(bars, labels, strict=True):
            v = value.get(g)
            ax.annotate("n/a" if v is None else f"{v:.1f}x", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                        ha="center", va="bottom", fontsize=7, xytext=(0, 4 if v is None else 2), textcoords="offset points",
                        color="dimgray" if v is None else "black",
                        rotation=90 if v is not None and len(labels) * len(others) > 24 else 0)
    ax.axhline(1.0, color="black", linestyle="--", linewidth=1, label=f"{r['reference']} (1x)")
    ax.set_xticks(range(len(labels)), labels, fontsize=8)
    ax.set_xlabel("shape (b = batch size, s = sequence length, real = SQuAD lengths)")
    ax.set_ylabel("speed-up (x)")
    ax.margins(y=0.12)
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=min(4, len(others) + 1), frameon=False)


def write_plot(r: dict, path: Path) -> None:
    atomic_write_bytes(Path(path), render_plot(r))
