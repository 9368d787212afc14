"""A clip's audio: the source's audio for the clip's time span, re-encoded to AAC and muxed
with the clip's video (``clips.keep_audio``)."""

from __future__ import annotations

import os
import tempfile

import av
import numpy as np

from transforms.containers import opened


def with_audio(source: str, video_path: str, clip: dict, out_dir: str, cfg) -> str:
    # (the merged temp file goes beside ``video_path``, a local temp file; ``out_dir`` may be a URL)
    """Remux the clip's video with the source's audio for the same time span, as AAC.

    Clip times count from the source's first video frame; audio is cut on the container's
    clock at the clip's first frame (its pts), so a stream that starts later or earlier than the
    video stays in sync, to the sample."""
    fd, merged = tempfile.mkstemp(prefix=".tmp-", suffix=".mp4", dir=os.path.dirname(video_path) or ".")
    os.close(fd)
    with av.open(video_path) as vin, opened(source, cfg.input.remote_attempts, cfg.input.remote_timeout_s) as src, \
            av.open(merged, "w", format="mp4") as out:
        if not src.streams.audio:
            os.remove(merged)
            return video_path
        vsrc = src.streams.video[0]
        if clip.start_pts is not None and clip.start_pts >= 0 and vsrc.time_base:
            t0 = float(clip.start_pts * vsrc.time_base)
        else:
            t0 = float((vsrc.start_time or 0) * (vsrc.time_base or 0)) + clip.start_time
        t1 = t0 + (clip.end_time - clip.start_time)
        vstream_in = vin.streams.video[0]
        vout = out.add_stream_from_template(vstream_in)
        ain = src.streams.audio[0]
        rate = ain.codec_context.sample_rate or 44100
        aout = out.add_stream("aac", rate=rate)
        for packet in vin.demux(vstream_in):
            if packet.dts is None:
                continue
            packet.stream = vout
            out.mux(packet)
        src.seek(max(0, int((t0 - 1.0) / ain.time_base)) if ain.time_base else 0, stream=ain, backward=True)
        resampler = av.AudioResampler(format="fltp", layout="stereo", rate=rate)
        chunks, first_t = [], None
        for frame in src.decode(ain):
            if frame.time is None:
                continue
            if frame.time >= t1:
                break
            for rf in resampler.resample(frame):
                if first_t is None:
                    first_t = rf.time if rf.time is not None else frame.time
                chunks.append(rf.to_ndarray())
        if chunks and first_t is not None:
            samples = np.concatenate(chunks, axis=1)
            a = max(0, int(round((t0 - first_t) * rate)))
            b = max(a, int(round((t1 - first_t) * rate)))
            pad = max(0, int(round((first_t - t0) * rate)))  # audio starts after the clip: silence first
            samples = np.concatenate([np.zeros((samples.shape[0], pad), samples.dtype), samples[:, a:b]], axis=1)
            encode_samples(out, aout, samples[:, : int(round((t1 - t0) * rate))], rate, flush=False)
        encode_samples(out, aout, np.zeros((2, 0), np.float32), rate)
    os.remove(video_path)
    return merged


def encode_samples(out, stream, samples: np.ndarray, rate: int, flush: bool = True) -> None:
    """Encode float32 samples (channels, n; 1 = mono, 2 = stereo) into ``stream`` in frames of
    1024, then (``flush``) drain the encoder."""
    layout, fmt = ("mono", "flt") if samples.shape[0] == 1 else ("stereo", "fltp")
    for i in range(0, samples.shape[1], 1024):
        af = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples[:, i:i + 1024]), format=fmt, layout=layout)
        af.sample_rate = rate
        af.pts = i
        for packet in stream.encode(af):
            out.mux(packet)
    if flush:
        for packet in stream.encode(None):
            out.mux(packet)
