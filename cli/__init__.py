"""The ``leakloc`` command line (installed as ``leakloc.cli``)."""
