"""Runs Data-Juicer's own video operators on local files (inside Data-Juicer's venv).

    python dj_driver.py split|motion|ocr --procs 2 --workdir DIR FILE...

split: ``video_split_by_scene_mapper`` (ContentDetector 27, min_scene_len 15, ffmpeg re-encode
of every scene); motion: ``video_motion_score_filter`` (Farneback at 2 fps, defaults);
ocr: ``video_ocr_area_ratio_filter`` (3 frames, English only: the offline EasyOCR weights).
Prints JSON: seconds of work (imports excluded) and per-file results.
"""

import os
import sys

from pool import run_and_print

STAGE = WORKDIR = None


def work(path):
    from data_juicer.utils.constant import Fields

    sample = {"videos": [path], "text": "<__dj__video>", Fields.stats: {}}
    if STAGE == "split":
        from data_juicer.ops.mapper.video_split_by_scene_mapper import VideoSplitBySceneMapper

        out = VideoSplitBySceneMapper(save_dir=WORKDIR).process_single(sample)
        return {"file": path, "clips": len(out["videos"])}
    if STAGE == "motion":
        from data_juicer.ops.filter.video_motion_score_filter import VideoMotionScoreFilter

        out = VideoMotionScoreFilter().compute_stats_single(sample)
        return {"file": path, "motion": [float(x) for x in out[Fields.stats].get("video_motion_score", [])]}
    from data_juicer.ops.filter.video_ocr_area_ratio_filter import VideoOcrAreaRatioFilter

    out = VideoOcrAreaRatioFilter(languages_to_detect=["en"]).compute_stats_single(sample)
    return {"file": path, "ocr": [float(x) for x in out[Fields.stats].get("video_ocr_area_ratio", [])]}


def init(stage, workdir):
    global STAGE, WORKDIR
    STAGE, WORKDIR = stage, workdir


if __name__ == "__main__":
    stage, procs, workdir, files = sys.argv[1], int(sys.argv[3]), sys.argv[5], sys.argv[6:]
    os.makedirs(workdir, exist_ok=True)
    import data_juicer.ops  # noqa: F401 - import cost excluded from the timing
    run_and_print(work, files, procs, initializer=init, initargs=(stage, workdir))
