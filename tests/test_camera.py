"""Camera-motion tags: synthetic camera moves over a still picture (known parameters), real static
cameras, the label filter, and the stage through `vidcurate run` and `stats`."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
from conftest import shared
from media import write_video

from pipeline.config import Config, ConfigError, load_config, with_changes
from transforms.analyze import analyze_video, clip_rows

W, H, FPS = 320, 180, 25
CAMERA = ("probe", "cuts", "motion", "camera")
_rng = np.random.default_rng(7)
SCENE = cv2.resize(cv2.GaussianBlur(_rng.integers(0, 255, (135, 240, 3), dtype=np.uint8), (0, 0), 1.5),
                   (960, 540), interpolation=cv2.INTER_CUBIC)  # a textured still, larger than the view


def view(cx: float, cy: float, zoom: float = 1.0, angle: float = 0.0) -> np.ndarray:
    """The W x H picture a camera centred on (cx, cy) of SCENE sees (zoom > 1: closer)."""
    m = cv2.getRotationMatrix2D((cx, cy), angle, zoom)
    m[:, 2] += (W / 2 - cx, H / 2 - cy)
    return cv2.warpAffine(SCENE, m, (W, H), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


PAN = 1.0  # pixels per frame (the flow pairs are 12 frames apart at 25 fps)
MOVES = {  # label -> frame i -> picture
    "static": lambda i: view(480, 270),
    "pan_right": lambda i: view(440 + PAN * i, 270),  # the camera turns right: the picture moves left
    "pan_left": lambda i: view(520 - PAN * i, 270),
    "tilt_down": lambda i: view(480, 230 + PAN * i),
    "tilt_up": lambda i: view(480, 310 - PAN * i),
    "zoom_in": lambda i: view(480, 270, 1.0 * math.exp(0.006 * i)),
    "zoom_out": lambda i: view(480, 270, 1.6 * math.exp(-0.006 * i)),
    "rotate": lambda i: view(480, 270, 1.3, 0.25 * i),
}


def camera_of(path: str, cfg=None):
    cfg = cfg or Config()
    rows = clip_rows(analyze_video(path, cfg, CAMERA), cfg)
    assert len(rows) == 1
    return rows[0]


@pytest.mark.parametrize("label", sorted(MOVES))
def test_synthetic_camera_moves_get_their_label(tmp_path, label):
    path = write_video(str(tmp_path / f"{label}.mp4"), n=75, fps=FPS, frame=lambda i, w, h: MOVES[label](i))
    row = camera_of(path)
    assert row.camera_motion == label, (row.camera_pan, row.camera_tilt, row.camera_zoom, row.camera_rotation)
    assert row.camera_fit > 0.8


def test_fitted_rates_match_the_known_motion(tmp_path):
    pan = camera_of(write_video(str(tmp_path / "pan.mp4"), n=75, frame=lambda i, w, h: MOVES["pan_right"](i)))
    # 1 px per frame at 25 fps over a 320 px picture: the picture moves left by 7.8% of its width per second.
    assert pan.camera_pan == pytest.approx(-PAN * FPS / W * 100, rel=0.1)
    assert abs(pan.camera_tilt) < 1 and abs(pan.camera_zoom) < 0.02
    zoom = camera_of(write_video(str(tmp_path / "zoom.mp4"), n=75, frame=lambda i, w, h: MOVES["zoom_in"](i)))
    assert zoom.camera_zoom == pytest.approx(0.006 * FPS, rel=0.15)  # log scale per second
    rot = camera_of(write_video(str(tmp_path / "rot.mp4"), n=75, frame=lambda i, w, h: MOVES["rotate"](i)))
    # Degrees per second; Farneback smooths the larger displacements at the edges: about 16% low.
    assert abs(rot.camera_rotation) == pytest.approx(0.25 * FPS, rel=0.2)


def test_shaky_camera(tmp_path):
    path = write_video(str(tmp_path / "shaky.mp4"), n=75,  # a hand-held wobble around one point
                       frame=lambda i, w, h: view(480 + 6 * math.sin(1.3 * i), 270 + 5 * math.sin(0.7 * i + 1)))
    assert camera_of(path).camera_motion == "shaky"


@pytest.mark.parametrize("name", ["intel_bottle_detection.mp4", "intel_car_detection.mp4"])
def test_real_static_cameras_are_static(name):
    cfg = Config()
    rows = clip_rows(analyze_video(shared(name), cfg, CAMERA), cfg)
    labelled = [r.camera_motion for r in rows if r.camera_motion]
    assert labelled and set(labelled) == {"static"}


def test_label_filter_and_its_config_check():
    from transforms.filters import apply_filters
    from transforms.rows import ClipRow

    cfg = with_changes(Config(), filters={"exclude_camera_motion": ["shaky"], "min_motion": None})
    row = ClipRow(clip_id="c", video_id="v", source="s", duration_s=4.0, width=320, height=180, fps=25.0,
                  reject_reasons=[], camera_motion="shaky")
    assert apply_filters(row, cfg).reject_reasons == ["camera_motion"]
    assert apply_filters(row.replace(camera_motion="pan_left"), cfg).keep
    assert apply_filters(row.replace(camera_motion=None), cfg).keep  # no label (too short): not excluded
    with pytest.raises(ConfigError, match="unknown label"):
        load_config(None, ["filters.exclude_camera_motion=[wobbly]"])


def test_camera_stage_through_run_and_stats(tmp_path):
    from pipeline.run import run
    from pipeline.stats import render_stats, stats
    from pipeline.tables import read_table

    d = tmp_path / "in"
    d.mkdir()
    write_video(str(d / "pan.mp4"), n=75, frame=lambda i, w, h: MOVES["pan_left"](i))
    write_video(str(d / "still.mp4"), n=75, frame=lambda i, w, h: MOVES["static"](i))
    cfg = with_changes(Config(), filters={"min_motion": None, "exclude_camera_motion": ["static"]})
    summary = run(str(d), str(tmp_path / "out"), cfg, stages="probe,cuts,camera", no_clips=True)
    assert summary["stages"] == ["probe", "cuts", "motion", "camera"]  # camera builds on motion's flow
    clips = {r["source"].rsplit("/", 1)[1]: r for r in read_table(str(tmp_path / "out"), "clips").to_pylist()}
    assert clips["pan.mp4"]["camera_motion"] == "pan_left" and clips["pan.mp4"]["keep"]
    assert clips["still.mp4"]["reject_reasons"] == ["camera_motion"]
    s = stats(str(tmp_path / "out"))
    assert s["camera_motion"] == {"pan_left": {"clips": 1, "kept": 1}, "static": {"clips": 1, "kept": 0}}
    assert "camera motion" in render_stats(s)
    from pipeline.report import build_report

    assert "<h2>Camera motion</h2>" in build_report(str(tmp_path / "out"))


def test_segments_give_the_same_camera_columns(tmp_path):
    """A video analyzed in segments (on several workers) carries the per-pair fits across."""
    from transforms.segments import analyze_in_segments

    cfg = Config()
    path = write_video(str(tmp_path / "pan.mp4"), n=100, frame=lambda i, w, h: MOVES["pan_left"](i))
    whole = clip_rows(analyze_video(path, cfg, CAMERA), cfg)
    split = clip_rows(analyze_in_segments(path, cfg, 1.0, CAMERA), cfg)
    columns = [c for c in whole[0].schema.names if c.startswith("camera_")]
    assert [[getattr(r, c) for c in columns] for r in split] == [[getattr(r, c) for c in columns] for r in whole]
    assert whole[0].camera_motion == "pan_left"
