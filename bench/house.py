"""The shape of the house, as JSON: import cycles, arrows that run back up the layers, imports hidden in
functions, the largest functions and the files over the ~400-line rule.

    python bench/house.py [ROOT] [--check]

The layers are the architecture of the README: a package may import from its own layer (without a cycle)
and from the layers below, never from above. ``--check`` exits 1 when there is a cycle or an upward arrow
(``tests/test_layers.py`` runs it on every test run).
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
from collections import defaultdict
from pathlib import Path

# Folders and the import names they install as (pyproject's package-dir).
ROOTS = {"toolchain": "kdtool", "kernels": "kdtool.kernels", "export": "kdtool.export", "profiles": "kdtool.profiles"}

# Bottom to top. A package is `kdtool.X` (a top-level module counts as a package of its own).
LAYERS = [
    ("helpers", ["kdtool", "kdtool.fields", "kdtool.errors", "kdtool.signals", "kdtool.stamps", "kdtool.paths",
                 "kdtool.atomic", "kdtool.progress", "kdtool.metrics"]),
    ("data", ["kdtool.data", "kdtool.questions", "kdtool.tokenizer_training", "kdtool.students"]),
    ("losses and kernels", ["kdtool.losses", "kdtool.kernels"]),
    ("models and bundles", ["kdtool.models", "kdtool.bundle"]),
    ("engines", ["kdtool.engines"]),
    ("tasks, prediction, scoring, profiling",
     ["kdtool.tasks", "kdtool.predict", "kdtool.answer", "kdtool.validate", "kdtool.profiles"]),
    ("export", ["kdtool.export"]),
    ("training and compression", ["kdtool.distill", "kdtool.strategies", "kdtool.prune"]),
    ("recipes and serving", ["kdtool.recipes", "kdtool.serve", "kdtool.deploy"]),
    ("front ends", ["kdtool.demo", "kdtool.cli"]),
]
LAYER_OF = {pkg: i for i, (_, pkgs) in enumerate(LAYERS) for pkg in pkgs}
FILE_LIMIT = 400


def modules(root: Path) -> dict[str, Path]:
    found = {}
    for folder, name in ROOTS.items():
        for path in sorted((root / folder).rglob("*.py")):
            rel = path.relative_to(root / folder).with_suffix("").parts
            if folder == "toolchain" and rel[0] in ("kernels", "export", "profiles"):
                continue
            parts = rel[:-1] if rel[-1] == "__init__" else rel
            found[".".join((name, *parts))] = path
    return found


def _resolve(name: str, mods: dict) -> str | None:
    while name and name not in mods:
        name = name.rpartition(".")[0]
    return name or None


def imports(mods: dict[str, Path]):
    """Yield (module, imported module, inside a function?) for every internal import."""
    for mod, path in mods.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        pkg = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        nested = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
                  for n in ast.walk(f)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = pkg.split(".")
                    base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
                targets = [base + "." + a.name for a in node.names] + [base]
            else:
                continue
            seen = set()
            for target in targets:
                r = _resolve(target, mods) if target.startswith("kdtool") else None
                # a module reaching into its own package's face (__init__) is not counted
                if r and r != mod and not mod.startswith(r + ".") and r not in seen:
                    seen.add(r)
                    yield mod, r, id(node) in nested


def package(mod: str) -> str:
    return ".".join(mod.split(".")[:2])


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one member (Tarjan, iterative)."""
    index, low, on, stack, out = {}, {}, set(), [], []

    def enter(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on.add(node)

    for start in sorted(edges):
        if start in index:
            continue
        enter(start)
        work = [(start, iter(sorted(edges.get(start, ()))))]
        while work:
            node, it = work[-1]
            nxt = next(it, None)
            if nxt is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    comp = []
                    while not comp or comp[-1] != node:
                        comp.append(stack.pop())
                        on.discard(comp[-1])
                    if len(comp) > 1:
                        out.append(sorted(comp))
            elif nxt not in index:
                enter(nxt)
                work.append((nxt, iter(sorted(edges.get(nxt, ())))))
            elif nxt in on:
                low[node] = min(low[node], index[nxt])
    return out


def functions(mods: dict[str, Path]):
    for mod, path in mods.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                yield f"{mod}.{node.name}", node.end_lineno - node.lineno + 1


def survey(root: Path) -> dict:
    mods = modules(root)
    hidden = defaultdict(lambda: True)  # an arrow is hidden when every import making it sits inside a function
    for a, b, inside in imports(mods):
        hidden[a, b] &= inside
    edges = [(a, b, inside) for (a, b), inside in hidden.items()]
    file_graph, pkg_graph = defaultdict(set), defaultdict(set)
    upward, unknown = [], set()
    for a, b, _ in edges:
        file_graph[a].add(b)
        pa, pb = package(a), package(b)
        if pa != pb:
            pkg_graph[pa].add(pb)
            if pa not in LAYER_OF or pb not in LAYER_OF:
                unknown |= {p for p in (pa, pb) if p not in LAYER_OF}
            elif LAYER_OF[pb] > LAYER_OF[pa]:
                upward.append(f"{a} -> {b}")
    sizes = sorted(functions(mods), key=lambda f: -f[1])
    lines = {str(p.relative_to(root)): len(p.read_text(encoding="utf-8").splitlines()) for p in mods.values()}
    return {
        "modules": len(mods),
        "arrows": len(edges),
        "arrows_only_inside_functions": sum(1 for *_, inside in edges if inside),
        "file_cycles": cycles(file_graph),
        "package_cycles": cycles(pkg_graph),
        "upward_arrows": sorted(set(upward)),
        "packages_without_a_layer": sorted(unknown),
        "largest_functions": [{"name": n, "lines": k} for n, k in sizes[:5]],
        "files_over_limit": {p: n for p, n in sorted(lines.items(), key=lambda x: -x[1]) if n > FILE_LIMIT},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", nargs="?", default=str(Path(__file__).resolve().parents[1]))
    parser.add_argument("--check", action="store_true", help="exit 1 on a cycle, an upward arrow or an unplaced package")
    args = parser.parse_args()
    report = survey(Path(args.root))
    print(json.dumps(report, indent=2))
    bad = report["file_cycles"] or report["package_cycles"] or report["upward_arrows"] or report["packages_without_a_layer"]
    return 1 if args.check and bad else 0


if __name__ == "__main__":
    sys.exit(main())
