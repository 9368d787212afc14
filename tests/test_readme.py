"""The README's quick start: its command runs as written and prints what the README shows."""

from __future__ import annotations

import contextlib
import io
import json
import re

from conftest import REPO


def _readme_block() -> tuple[list[str], dict]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    quick = re.search(r"## Quick start\s+```bash\n(.*?)\n```", text, re.S).group(1).splitlines()
    shown = re.search(r"What the quick-start command prints.*?```json\n(.*?)\n```", text, re.S).group(1)
    return quick, json.loads(shown)


def test_quick_start_prints_what_the_readme_shows(tmp_path, monkeypatch):
    from pipeline.cli import main

    quick, shown = _readme_block()
    install_and_run = quick[0]
    command = install_and_run.split("&&", 1)[1].split()
    assert command[:2] == ["vidcurate", "run"] and quick[1] == "python -m pytest -q"
    args = command[1:]
    args[args.index("--output") + 1] = str(tmp_path / "example")
    monkeypatch.chdir(REPO)  # the README's paths are relative to the checkout
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(args) == 0
    printed = json.loads(buf.getvalue())
    printed.pop("wall_seconds")
    shown.pop("wall_seconds")
    assert printed == shown


def test_layout_shows_a_real_registry_entry():
    """The README's "how to add a stage" example is the OCR entry as it is in the registry."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    layout = text[text.index("## Layout"):]
    example = re.search(r"```python\n(.*?)\n```", layout, re.S).group(1)
    code = (REPO / "transforms" / "stages.py").read_text(encoding="utf-8")
    squeeze = lambda s: re.sub(r"\s+", "", s)  # noqa: E731
    assert squeeze(example).rstrip(",") in squeeze(code)
    for module in re.findall(r"^(?:pipeline|transforms)/\S+\.py", layout, re.M):
        assert (REPO / module).exists(), module
