"""leakloc: localize spinal CSF leaks on dynamic CT myelography."""

__version__ = "0.1.0"


class InputError(Exception):
    """Input the tool cannot use. The message is one line naming what is wrong and where.

    The CLI prints it on stderr and exits with status 2.
    """


class AnalysisError(InputError):
    """A study that was read but cannot be analysed (no contrast, no canal, anchor mismatch)."""
