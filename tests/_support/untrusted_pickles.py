"""A pickled object whose unpickling runs code: the stand-in for a booby-trapped checkpoint."""


def _touch(path: str) -> dict:
    """The payload: create the marker file (its existence shows that the code ran)."""
    with open(path, "w") as f:
        f.write("code ran")
    return {}


class Payload:
    """Unpickling this runs _touch(marker); a loader's refusal names ``_touch``."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (_touch, (self.marker,))
