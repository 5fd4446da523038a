"""Config keys that became derived, shared or without effect, still readable in old files.

fvcore ignores a registered deprecated key when it merges a file, so a value that the model could
no longer honour would be lost silently; ``load_config`` therefore checks each one here against the
value the current keys give: the same value loads with a ``FutureWarning``, another is refused
naming both keys. A key without effect loads with the warning whatever its value.
"""
import warnings
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Tuple

from fvcore.common.config import CfgNode


class DeprecatedKey(NamedTuple):
    """key: the old dotted key; replacement: what gives its value now (or why it has no effect); value: that
    value in a config, None for a key without effect."""

    key: str
    replacement: str
    value: Optional[Callable[[CfgNode], Any]]


def _half(width: int) -> float | int:
    return width // 2 if width % 2 == 0 else width / 2


DEPRECATED_KEYS: Tuple[DeprecatedKey, ...] = (
    DeprecatedKey("MODEL.POSITION_ENCODING.NUM_POS_FEATS", "MODEL.TRANSFORMER.D_MODEL / 2",
                  lambda cfg: _half(cfg.MODEL.TRANSFORMER.D_MODEL)),
    # the matching cost and the loss are one focal loss, as in the official implementation
    DeprecatedKey("MODEL.MATCHER.FOCAL_ALPHA", "MODEL.CRITERION.FOCAL_ALPHA", lambda cfg: cfg.MODEL.CRITERION.FOCAL_ALPHA),
    DeprecatedKey("MODEL.MATCHER.FOCAL_GAMMA", "MODEL.CRITERION.FOCAL_GAMMA", lambda cfg: cfg.MODEL.CRITERION.FOCAL_GAMMA),
    DeprecatedKey("MODEL.TRANSFORMER.IM2COL_STEP", "the op's im2col_step, a hint that no kernel needs", None),
)


_BY_KEY = {deprecated.key: deprecated for deprecated in DEPRECATED_KEYS}


class DeprecatedValue(NamedTuple):
    """A deprecated key found in ``source`` (a file, or the command-line overrides) with its value."""

    key: str
    value: Any
    source: str


def register_deprecated_keys(cfg: CfgNode) -> None:
    """Let fvcore's merges skip the deprecated keys of ``cfg`` (the root of the defaults)."""
    for deprecated in DEPRECATED_KEYS:
        cfg.register_deprecated_key(deprecated.key)


def pop_deprecated(values: Dict[str, Any], source: str, prefix: str = "") -> List[DeprecatedValue]:
    """Remove the deprecated keys from the nested mapping ``values`` (in place) and return them."""
    found = []
    for key in list(values):
        full_key = f"{prefix}{key}"
        if full_key in _BY_KEY:
            found.append(DeprecatedValue(full_key, CfgNode._decode_cfg_value(values.pop(key)), source))
        elif isinstance(values[key], dict):
            found += pop_deprecated(values[key], source, f"{full_key}.")
    return found


def check_deprecated(found: List[DeprecatedValue], cfg: CfgNode) -> None:
    """Warn for each deprecated value that equals what ``cfg`` derives for it; refuse any other.

    Raises:
        ValueError: naming the key, its file and the key that replaces it, when the values differ.
    """
    for key, value, source in found:
        deprecated = _BY_KEY[key]
        if deprecated.value is None:
            warnings.warn(f"{key} in {source} is deprecated and has no effect ({deprecated.replacement}); remove it",
                          FutureWarning, stacklevel=3)
            continue
        current = deprecated.value(cfg)
        if value != current:
            raise ValueError(
                f"{key} (set to {value!r} in {source}) is no longer a config key: its value is now "
                f"{deprecated.replacement} = {current!r}; remove it, or set {deprecated.replacement.split()[0]} instead"
            )
        warnings.warn(f"{key} in {source} is deprecated and has no effect (it equals {deprecated.replacement}); "
                      f"remove it", FutureWarning, stacklevel=3)
