"""The failures vidcurate reports in words a user understands. A :class:`VideoError` is an input
that cannot be turned into clips (its ``error_type`` names the class of problem); the Beam layer
turns it into an error row. :class:`ModelUnavailable` is a model whose weights cannot be found."""


class ModelUnavailable(RuntimeError):
    """A model's weights cannot be found; the message names the model and how to provide them."""


class VideoError(Exception):
    """An input cannot be turned into clips. ``error_type`` (the class name) names the class of
    problem in the ``errors`` table; ``message`` says what is wrong in words a user understands."""

    error_type = "VideoError"

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.error_type = cls.__name__

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class UnreadableInput(VideoError):
    """Missing, not readable (permissions), or a remote store that does not answer."""


class EmptyFile(VideoError):
    """A file of 0 bytes."""


class NotAVideo(VideoError):
    """Data FFmpeg cannot read as a container, or a directory."""


class NoVideoStream(VideoError):
    """A container without a video stream (audio only, or nothing)."""


class UnsupportedCodec(VideoError):
    """A video codec FFmpeg does not know."""


class CorruptVideo(VideoError):
    """A container that opens but whose video cannot be decoded (or is shorter than recorded)."""


class LimitExceeded(VideoError):
    """Outside the configured limits: duration, file size, resolution, aspect ratio."""


class TooShort(VideoError):
    """Fewer frames than ``limits.min_frames``."""
