"""Errors raised by the dataset loaders."""


class DatasetUnavailableError(OSError):
    """The data set is not on disk and could not be downloaded (offline, mirror down...).

    The message says where to put the files by hand.
    """
