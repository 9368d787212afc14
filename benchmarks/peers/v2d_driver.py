"""Runs video2dataset's own subsamplers on local files (inside video2dataset's venv).

    python v2d_driver.py cuts|flow --procs 2 FILE...

cuts: ``CutDetectionSubsampler`` with its defaults (ContentDetector, threshold 27, min_scene_len
15, native frame rate) on the video bytes, as video2dataset's cut-detection pass does.
flow: the shipped ``configs/optical_flow.yaml``: decord decoding at 2 fps (8 threads), frames
resized to a 16 px short side, ``OpticalFlowSubsampler`` (OpenCV Farneback, fp16).
Prints JSON: seconds of work (imports excluded) and per-file results.
"""

import sys

from pool import run_and_print


def cuts(path):
    from video2dataset.subsamplers import CutDetectionSubsampler

    with open(path, "rb") as fh:
        data = fh.read()
    _, meta, err = CutDetectionSubsampler(cut_detection_mode="all", framerates=None, threshold=27, min_scene_len=15)(
        {"video": [data]})
    return {"file": path, "scenes": len((meta or {}).get("cuts_original_fps", [])), "error": err}


def flow(path):
    import numpy as np
    from video2dataset.dataloader.transform import VideoResizer
    from video2dataset.dataloader.video_decode import VideoDecorder
    from video2dataset.subsamplers import OpticalFlowSubsampler

    with open(path, "rb") as fh:
        data = fh.read()
    frames, _ = VideoDecorder(fps=2, num_threads=8, return_bytes=True)("video.mp4", data)
    resized = VideoResizer(size=16, key="mp4")({"mp4": frames})["mp4"]
    frames = np.array(resized).astype(np.float32)  # as video2dataset's optical_flow_worker does
    _, metrics, err = OpticalFlowSubsampler(detector="cv2", dtype="fp16")(frames)
    return {"file": path, "motion": metrics[0] if metrics else None, "error": err}


if __name__ == "__main__":
    stage, procs, files = sys.argv[1], int(sys.argv[3]), sys.argv[4:]
    fn = {"cuts": cuts, "flow": flow}[stage]
    import video2dataset.subsamplers  # noqa: F401 - import cost excluded from the timing
    run_and_print(fn, files, procs)
