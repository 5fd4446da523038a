"""The one error type for bad datasets: annotation files, records and image files."""


class DatasetError(ValueError):
    """A dataset problem the user must fix; the message names the file and, where it
    applies, the image or annotation id and the field."""
