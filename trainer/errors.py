"""The one exception type for mistakes in what the user gave, shared by every trainer module
(its own file so that the device, data and checkpoint helpers need not import the run
configuration)."""
import contextlib


class RunError(ValueError):
    """A problem with what the user gave (data folder, split, checkpoint file, option value,
    weight file, a resume that does not match): the command line shows its message as a usage
    error (exit 2), without a traceback. Raised directly where user input is checked; any other
    exception is a bug and surfaces with its traceback."""


class DiskFullError(OSError):
    """The disk filled up while a run wrote a file: the command line prints the message (which
    names the file, what is intact and how to go on) and exits with status EXIT_STATUS."""
    EXIT_STATUS = 3


def is_disk_full(e: BaseException) -> bool:
    """ENOSPC / EDQUOT, or torch.save's RuntimeError around a failed write (it wraps the
    OSError of the stream in its own message)."""
    import errno
    if isinstance(e, OSError):
        return e.errno in (errno.ENOSPC, errno.EDQUOT)
    return isinstance(e, RuntimeError) and ("No space left" in str(e) or "write failed" in str(e)
                                             or "Disk quota" in str(e))



@contextlib.contextmanager
def disk_full_as(what, remedy: str):
    """A full disk while writing `what` (a file, or words naming the files) becomes DiskFullError
    with one sentence: the file, then `remedy` (what is intact and how to go on)."""
    try:
        yield
    except (OSError, RuntimeError) as e:
        if not is_disk_full(e):
            raise
        raise DiskFullError(f"no space left on the device while writing {what} ({e}); {remedy}") from None
