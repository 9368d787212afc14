"""The structure the code promises: transforms/ never imports pipeline/, no import cycles, small
modules, and one declaration per stage that the schemas, filters and config agree with."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest

from pipeline.config import Config, FiltersConfig
from transforms.rows import CLIP_COLUMNS, ClipRow, ErrorRow, VideoRow
from transforms.stages import STAGES, labelled_columns, parse_stages

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("pipeline", "transforms", "model_training")


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """Project modules ``path`` imports, at module level or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for name in names:
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name:
                found.add(name)
    return found


def test_transforms_never_import_pipeline():
    modules = _modules()
    upward = {m: sorted(i for i in _imports(p, modules) if i.startswith("pipeline"))
              for m, p in modules.items() if m.startswith("transforms")}
    assert {m: i for m, i in upward.items() if i} == {}


def test_no_import_cycles():
    modules = _modules()
    graph = {m: _imports(p, modules) - {m} for m, p in modules.items()}
    graph = {m: {i for i in deps if i != m.rpartition(".")[0]} for m, deps in graph.items()}  # a package's own __init__
    state: dict[str, int] = {}
    cycles = []

    def visit(m, stack):
        state[m] = 1
        for d in sorted(graph.get(m, ())):
            if state.get(d) == 1:
                cycles.append(stack[stack.index(d):] + [d] if d in stack else [m, d])
            elif d not in state:
                visit(d, stack + [d])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert cycles == []


@pytest.mark.parametrize("pkg", ["pipeline", "transforms"])
def test_modules_stay_small(pkg):
    long = {str(p.relative_to(ROOT)): n for p in (ROOT / pkg).rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 300}
    assert long == {}


def test_rows_are_the_parquet_schemas():
    for cls in (VideoRow, ClipRow, ErrorRow):
        assert [f.name for f in dataclasses.fields(cls)] != []
        assert sorted(f.name for f in dataclasses.fields(cls)) == sorted(cls.schema.names)
    assert ClipRow.schema.names == [n for n, _ in CLIP_COLUMNS]
    with pytest.raises(ValueError, match="unknown column"):
        ClipRow.from_dict({"clip_id": "x", "video_id": "y", "source": "z", "not_a_column": 1})


def test_every_stage_is_declared_once_and_the_rest_reads_it():
    cfg = Config()
    names = [s.name for s in STAGES]
    assert len(names) == len(set(names))
    filter_settings = {f.name for f in dataclasses.fields(FiltersConfig)}
    for stage in STAGES:
        if stage.section:
            assert dataclasses.is_dataclass(getattr(cfg, stage.section)), stage.name
        for b in stage.bounds:
            assert b.setting in filter_settings and b.kind in ("min", "max", "exclude"), b
            assert b.kind != "exclude" or labelled_columns().get(b.column), b  # labels to check settings against
        for column in stage.columns:
            assert column.name in ClipRow.schema.names
            assert ClipRow.schema.field(column.name).type == column.type
        if stage.is_model:
            assert stage.frames(cfg) and stage.steps(cfg) and stage.preflight is not None
    assert parse_stages("motion,ocr") == ("probe", "cuts", "motion", "ocr")  # required stages always run
    with pytest.raises(ValueError, match="choose from probe, cuts, motion, camera, dedup, ocr, clip, caption"):
        parse_stages("probe,flow")


def test_the_default_run_does_not_import_torch():
    """The driver and the analysis steps stay light: torch (and RunInference, which imports it)
    load only when a model stage runs (1.3 s of CPU at start-up otherwise, measured)."""
    import subprocess
    import sys

    code = ("import sys, pipeline.cli, pipeline.run, pipeline.analysis, pipeline.media, pipeline.filtering; "
            "print(sorted(m for m in ('torch', 'open_clip', 'easyocr', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
