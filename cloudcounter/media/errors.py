"""Media errors: each carries a stable code, turned into a signalling error at the edge."""

from __future__ import annotations

from cloudcounter.errors import CloudCounterError


class MediaError(CloudCounterError):
    code = "media_error"
    http_status = 500


class UnsupportedCodec(MediaError):
    """The offer has an audio or video section without Opus or VP8."""

    code = "unsupported_codec"
    http_status = 400


class InvalidOffer(MediaError):
    """The SDP offer cannot be parsed or carries no audio and no video."""

    code = "invalid_offer"
    http_status = 400


class MediaStateError(MediaError):
    """The call's media is in a state that does not allow this (closed, leg answered)."""

    code = "media_invalid_state"
    http_status = 409


class SeamBroken(MediaError):
    """An aiortc internal that cloudcounter.media.seam adapts has moved (upgrade?)."""

    code = "media_seam_broken"


class RecordingFailed(MediaError):
    """The recorder could not write (disk full, unwritable directory)."""

    code = "recording_failed"
    retryable = False
