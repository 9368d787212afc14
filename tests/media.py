"""Videos the tests make: moving content in every default container, rotated phone-style files,
variable frame rate, late audio, truncated downloads. Every frame of the moving pattern is
distinct, so a clip that starts or ends one frame off fails an exact comparison."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np


def moving(i: int, w: int = 320, h: int = 180) -> np.ndarray:
    """Frame ``i`` of a smoothly drifting colour pattern (no cuts, real motion)."""
    y, x = np.mgrid[0:h, 0:w]
    r = (x * 2 + i * 3) % 256
    g = (y * 3 + i * 2) % 256
    b = ((x + y) // 2 + i) % 256
    img = np.stack([r, g, b], -1).astype(np.uint8)
    img[(i * 4) % (h - 16):(i * 4) % (h - 16) + 16, (i * 7) % (w - 16):(i * 7) % (w - 16) + 16] = 255
    return img


def cuts_video(i: int, w: int = 320, h: int = 180, shot_len: int = 75) -> np.ndarray:
    """A moving pattern with a hard cut every ``shot_len`` frames (each shot a new palette)."""
    shot = i // shot_len
    img = moving(i, w, h)
    return np.ascontiguousarray(np.roll(img, shot, axis=2) // (1 + shot % 3) + 40 * (shot % 2))


CONTAINERS = {  # extension -> (format, codec)
    ".mp4": ("mp4", "libx264"), ".mov": ("mov", "libx264"), ".mkv": ("matroska", "libx264"),
    ".webm": ("webm", "libvpx-vp9"), ".avi": ("avi", "mpeg4"), ".m4v": ("mp4", "libx264"),
    ".mpg": ("mpeg", "mpeg2video"), ".mpeg": ("mpeg", "mpeg2video"), ".ts": ("mpegts", "libx264"),
    ".flv": ("flv", "flv"), ".wmv": ("asf", "wmv2"),
}


def write_video(path: str, n: int = 150, fps: int = 25, gop: int = 50, frame=moving, fmt: str | None = None,
                codec: str | None = None, rotation: int | None = None, options: dict | None = None,
                container_options: dict | None = None, size=(320, 180)) -> str:
    ext = "." + path.rsplit(".", 1)[1]
    fmt = fmt or CONTAINERS[ext][0]
    codec = codec or CONTAINERS[ext][1]
    with av.open(path, "w", format=fmt, options=container_options or {}) as out:
        s = out.add_stream(codec, rate=Fraction(fps))
        s.width, s.height, s.pix_fmt = size[0], size[1], "yuv420p"
        s.codec_context.gop_size = gop
        opts = {"g": str(gop), "keyint_min": str(gop)} if codec == "libx264" else {}
        if codec == "libx264":
            opts |= {"preset": "ultrafast", "crf": "12"}
        if codec in ("mpeg4", "mpeg2video", "wmv2", "flv"):
            s.codec_context.bit_rate = 4_000_000
        if codec == "libvpx-vp9":
            opts |= {"deadline": "realtime", "cpu-used": "8", "crf": "20", "b": "0"}
        s.options = opts | (options or {})
        if rotation is not None:
            s.set_display_rotation(rotation)
        mux_video(out, s, (frame(i, *size) for i in range(n)))
    return path


def mux_video(out, stream, images, first_pts: int = 0) -> None:
    """Encode RGB uint8 pictures (pts first_pts, first_pts + 1, ...) into ``stream`` and flush."""
    for i, img in enumerate(images):
        f = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
        f.pts = first_pts + i
        for p in stream.encode(f):
            out.mux(p)
    for p in stream.encode(None):
        out.mux(p)


def mux_audio(out, stream, samples: np.ndarray, rate: int) -> None:
    """Encode float32 samples (channels, n) into ``stream`` and flush (vidcurate's own encoder
    loop: what the tests check is where audio is cut, not how frames are chunked)."""
    from transforms.clip_audio import encode_samples

    encode_samples(out, stream, samples, rate)


def write_vfr(path: str, parts=((60, 10.0), (15, 20.0)), size=(160, 90), cut_between: bool = False) -> str:
    """Parts of ``(fps, seconds)`` in order: one continuous shot whose frame rate changes, or
    (``cut_between``) a hard cut into a new shot at every part."""
    with av.open(path, "w", format="mp4") as out:
        s = out.add_stream("libx264", rate=60)
        s.width, s.height, s.pix_fmt = size[0], size[1], "yuv420p"
        s.codec_context.time_base = Fraction(1, 600)
        s.options = {"preset": "ultrafast", "crf": "18"}
        t, i = 0.0, 0
        for part, (fps, seconds) in enumerate(parts):
            for _ in range(int(round(fps * seconds))):
                # The picture drifts with time, not with the frame number: same speed throughout.
                img = moving(int(t * 25), *size)
                if cut_between:
                    img = np.ascontiguousarray(np.roll(img, part + 1, axis=2) // (1 + part % 3) + 50 * (part % 2))
                f = av.VideoFrame.from_ndarray(img, format="rgb24")
                f.pts = int(round(t * 600))
                f.time_base = Fraction(1, 600)
                for p in s.encode(f):
                    out.mux(p)
                t += 1.0 / fps
                i += 1
        for p in s.encode(None):
            out.mux(p)
    return path


def write_with_late_video(path: str, seconds: float = 6.0, fps: int = 25, video_start_s: float = 0.6,
                          mark_s: float = 3.0, rate: int = 48000) -> str:
    """Audio from t=0, video from ``video_start_s``; at ``mark_s`` (container time) the video
    shows a small white square for one frame and the audio has a click."""
    with av.open(path, "w", format="mp4") as out:
        v = out.add_stream("libx264", rate=fps)
        v.width, v.height, v.pix_fmt = 160, 90, "yuv420p"
        v.options = {"preset": "ultrafast", "crf": "18"}
        a = out.add_stream("aac", rate=rate)
        a.layout = "mono"
        first = int(round(video_start_s * fps))
        total = int(round(seconds * fps))
        mark = int(round(mark_s * fps))
        audio = np.zeros(int(seconds * rate), np.float32)
        k = int(mark_s * rate)
        audio[k:k + 48] = 0.9
        images = []
        for i in range(first, total):
            img = moving(i, 160, 90) // 3
            if i == mark:
                img[2:14, 2:14] = 255
            images.append(img)
        mux_video(out, v, images, first_pts=first)
        mux_audio(out, a, audio[None, :], rate)
    return path


def truncate(path: str, out: str, fraction: float) -> str:
    data = open(path, "rb").read()
    with open(out, "wb") as fh:
        fh.write(data[: int(len(data) * fraction)])
    return out


def decode_yuv(path: str) -> list[np.ndarray]:
    """Every frame as its raw yuv420p planes, concatenated (exact comparisons)."""
    out = []
    with av.open(path) as c:
        for f in c.decode(video=0):
            out.append(f.to_ndarray(format="yuv420p"))
    return out


def slide(i: int, w: int = 320, h: int = 180) -> np.ndarray:
    """A presentation slide: a title and bullet lines of dark text on a light background."""
    import cv2

    img = np.full((h, w, 3), (245, 240, 230), np.uint8)
    cv2.rectangle(img, (0, 0), (w, h // 6), (120, 60, 20), -1)
    cv2.putText(img, f"Chapter {i + 1}: open data", (8, h // 8), cv2.FONT_HERSHEY_SIMPLEX, h / 400, (255, 255, 255), 1)
    for k, line in enumerate(("- curated video clips", "- shot boundaries", "- captions and scores")):
        cv2.putText(img, line, (16, h // 3 + k * h // 6), cv2.FONT_HERSHEY_SIMPLEX, h / 450, (30, 30, 30), 1)
    return img


VARIANTS = ("reencode", "half", "webm", "trim", "crop10", "logo", "subtitle", "mirror")


def _logo(img: np.ndarray) -> np.ndarray:
    import cv2

    img = img.copy()
    h, w = img.shape[:2]
    cv2.rectangle(img, (w - w // 8 - 8, 8), (w - 8, 8 + h // 14), (255, 255, 255), -1)
    cv2.putText(img, "TV", (w - w // 8, 4 + h // 14), cv2.FONT_HERSHEY_SIMPLEX, h / 500, (0, 0, 180), 2)
    return img


def _subtitle(img: np.ndarray) -> np.ndarray:
    import cv2

    img = img.copy()
    h, w = img.shape[:2]
    cv2.putText(img, "a burned-in subtitle line", (w // 8, h - h // 12), cv2.FONT_HERSHEY_SIMPLEX, h / 400,
                (255, 255, 255), max(1, h // 200))
    return img


def variant(src: str, dst: str, kind: str, max_s: float | None = None) -> str:
    """A copy of ``src`` as the web makes them: ``reencode`` (H.264 at a much lower quality),
    ``half`` (half the size), ``webm`` (VP9 in WebM), ``trim`` (the first 1.3 s and the last
    0.7 s gone), ``crop10`` (10% of the width and height cut, rescaled back), ``logo`` (a
    station logo in a corner), ``subtitle`` (a burned-in line), ``mirror`` (flipped left-right);
    ``original``: unchanged at high quality. ``max_s``: only the first seconds of ``src``."""
    import cv2

    with av.open(src) as c:
        s = c.streams.video[0]
        rate = s.average_rate or Fraction(25)
        frames = []
        for f in c.decode(s):
            if max_s is not None and float(f.time or 0) >= max_s:
                break
            frames.append((float(f.time or 0), f.to_ndarray(format="rgb24")))
    h, w = frames[0][1].shape[:2]
    end = frames[-1][0]
    pick = [img for t, img in frames if kind != "trim" or 1.3 <= t <= end - 0.7]

    def change(img):
        if kind == "half":
            return cv2.resize(img, (w // 4 * 2, h // 4 * 2), interpolation=cv2.INTER_AREA)
        if kind == "crop10":
            dy, dx = h // 20, w // 20
            return cv2.resize(img[dy:h - dy, dx:w - dx], (w, h), interpolation=cv2.INTER_LINEAR)
        if kind == "logo":
            return _logo(img)
        if kind == "subtitle":
            return _subtitle(img)
        if kind == "mirror":
            return img[:, ::-1]
        return img

    if not pick:
        raise ValueError(f"{src}: too short for a {kind} copy")
    out_imgs = [np.ascontiguousarray(change(img)) for img in pick]
    oh, ow = out_imgs[0].shape[:2]
    fmt, codec = ("webm", "libvpx-vp9") if kind == "webm" else ("mp4", "libx264")
    with av.open(dst, "w", format=fmt) as out:
        st = out.add_stream(codec, rate=rate)
        st.width, st.height, st.pix_fmt = ow, oh, "yuv420p"
        st.options = ({"deadline": "realtime", "cpu-used": "8", "crf": "40", "b": "0"} if codec == "libvpx-vp9"
                      else {"preset": "ultrafast", "crf": {"reencode": "34", "original": "16"}.get(kind, "23")})
        mux_video(out, st, out_imgs)
    return dst
