"""The one exception type for mistakes in what the user gave, shared by every trainer module
(its own file so that the device, data and checkpoint helpers need not import the run
configuration)."""


class RunError(ValueError):
    """A problem with what the user gave (data folder, split, checkpoint file, option value,
    weight file, a resume that does not match): the command line shows its message as a usage
    error (exit 2), without a traceback. Raised directly where user input is checked; any other
    exception is a bug and surfaces with its traceback."""
