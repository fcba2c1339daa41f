"""The house keeps its shape: no import cycles between files or packages, no arrow from a lower layer up to
a higher one (the layers are the README's architecture, written down in bench/house.py)."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HOUSE = ROOT / "bench" / "house.py"


def survey(root: Path) -> tuple[int, dict]:
    done = subprocess.run([sys.executable, str(HOUSE), str(root), "--check"], capture_output=True, text=True, check=False)
    return done.returncode, json.loads(done.stdout)


def test_the_tree_has_no_cycles_and_no_upward_arrows():
    rc, report = survey(ROOT)
    assert report["file_cycles"] == [] and report["package_cycles"] == []
    assert report["upward_arrows"] == []
    assert report["packages_without_a_layer"] == []
    assert rc == 0


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_the_check_finds_a_cycle_hidden_in_a_function_and_an_upward_arrow(tmp_path):
    _write(tmp_path, {
        "toolchain/__init__.py": "",
        "toolchain/errors.py": "",
        "toolchain/data/__init__.py": "def f():\n    from kdtool.questions import x\n",
        "toolchain/questions.py": "from kdtool.data import f\n",
        "toolchain/models/__init__.py": "from kdtool.cli import main\n",
        "toolchain/cli/__init__.py": "main = 1\n",
    })
    rc, report = survey(tmp_path)
    assert rc == 1
    assert report["file_cycles"] == [["kdtool.data", "kdtool.questions"]]
    assert report["upward_arrows"] == ["kdtool.models -> kdtool.cli"]
