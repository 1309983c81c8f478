"""The one error the ETL raises for a video it cannot use, with ffmpeg's own last words."""
from __future__ import annotations


class VideoError(Exception):
    """A video that cannot be decoded.

    `reason` is short and stable enough to group failures by ("zero-byte file", "no video stream",
    "truncated file", "not a video file", "decode failed", ...); `log_tail` holds the last lines
    ffmpeg printed, for the failures report.
    """

    def __init__(self, reason: str, log_tail: str = "", path: str | None = None):
        self.reason = reason
        self.log_tail = log_tail
        self.path = path
        where = f"{path}: " if path else ""
        tail = f"\n{log_tail}" if log_tail else ""
        super().__init__(f"{where}{reason}{tail}")

    def __reduce__(self):
        # keep reason/log_tail when the error crosses a process boundary (joblib workers)
        return (type(self), (self.reason, self.log_tail, self.path))


def tail(log: str | bytes, lines: int = 12) -> str:
    """The last `lines` non-empty lines of an ffmpeg log."""
    if isinstance(log, bytes):
        log = log.decode("utf-8", errors="replace")
    kept = [line.rstrip() for line in log.replace("\r", "\n").splitlines() if line.strip()]
    return "\n".join(kept[-lines:])
