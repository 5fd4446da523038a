"""Input checks for multi-scale deformable attention, run before any kernel."""
import weakref

import torch


def _shape(t: torch.Tensor) -> str:
    return "(" + ", ".join(str(s) for s in t.shape) + ")"


def check_ms_deform_attn_inputs(
    value: torch.Tensor,
    spatial_shapes: torch.Tensor,
    level_start_index: torch.Tensor,
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
) -> None:
    """Raise ValueError/TypeError naming the argument when inputs do not fit the op.

    Shapes, dtypes and devices are always checked. The values of
    ``spatial_shapes`` and ``level_start_index`` are checked in eager mode only
    (they are data, unknown while tracing); the kernels additionally guard every
    read, so a bad index can never crash them.
    """
    tensors = {
        "value": value,
        "spatial_shapes": spatial_shapes,
        "level_start_index": level_start_index,
        "sampling_locations": sampling_locations,
        "attention_weights": attention_weights,
    }
    for name, tensor in tensors.items():
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(f"ms_deform_attn: {name} must be a torch.Tensor, got {type(tensor).__name__}")
    if value.dim() != 4:
        raise ValueError(f"ms_deform_attn: value must be (N, S, M, D), got shape {_shape(value)}")
    batch, positions, heads, _ = value.shape
    if spatial_shapes.dim() != 2 or spatial_shapes.shape[1] != 2:
        raise ValueError(f"ms_deform_attn: spatial_shapes must be (L, 2), got shape {_shape(spatial_shapes)}")
    levels = spatial_shapes.shape[0]
    if level_start_index.shape != (levels,):
        raise ValueError(
            f"ms_deform_attn: level_start_index must be (L,) = ({levels},), got shape {_shape(level_start_index)}"
        )
    for name in ("spatial_shapes", "level_start_index"):
        if tensors[name].dtype not in (torch.int64, torch.int32):
            raise TypeError(f"ms_deform_attn: {name} must be int64 (or int32), got {tensors[name].dtype}")
    if (
        sampling_locations.dim() != 6
        or sampling_locations.shape[0] != batch
        or sampling_locations.shape[2] != heads
        or sampling_locations.shape[3] != levels
        or sampling_locations.shape[5] != 2
    ):
        raise ValueError(
            f"ms_deform_attn: sampling_locations must be (N, Lq, M, L, P, 2) = ({batch}, Lq, {heads}, {levels}, P, 2), "
            f"got shape {_shape(sampling_locations)}"
        )
    queries, points = sampling_locations.shape[1], sampling_locations.shape[4]
    expected = (batch, queries, heads, levels, points)
    if tuple(attention_weights.shape) != expected:
        raise ValueError(
            f"ms_deform_attn: attention_weights must be (N, Lq, M, L, P) = {expected}, "
            f"got shape {_shape(attention_weights)}"
        )
    if not value.is_floating_point():
        raise TypeError(f"ms_deform_attn: value must be a floating-point tensor, got {value.dtype}")
    for name in ("sampling_locations", "attention_weights"):
        if tensors[name].dtype != value.dtype:
            raise TypeError(f"ms_deform_attn: {name} must have value's dtype {value.dtype}, got {tensors[name].dtype}")
    for name, tensor in tensors.items():
        if tensor.device != value.device:
            raise ValueError(f"ms_deform_attn: {name} is on {tensor.device} but value is on {value.device}")
    if torch.compiler.is_compiling() or value.device.type == "meta":
        return
    _check_levels_once(spatial_shapes, level_start_index, positions)


# Models pass the same level tensors to every attention layer of a forward pass;
# reading them once (a device-to-host copy on GPU) instead of per layer avoids
# a synchronisation per layer. Entries: id(spatial_shapes) -> (weakref, key).
_checked_levels: dict[int, tuple[weakref.ref, tuple]] = {}


def _check_levels_once(spatial_shapes: torch.Tensor, level_start_index: torch.Tensor, positions: int) -> None:
    key = (id(level_start_index), spatial_shapes._version, level_start_index._version, positions)
    entry = _checked_levels.get(id(spatial_shapes))
    if entry is not None and entry[0]() is spatial_shapes and entry[1] == key:
        return
    _check_levels(spatial_shapes, level_start_index, positions)
    if len(_checked_levels) > 64:  # stale ids of tensors gone since
        for stale in [k for k, (ref, _) in _checked_levels.items() if ref() is None]:
            del _checked_levels[stale]
    _checked_levels[id(spatial_shapes)] = (weakref.ref(spatial_shapes), key)


def _check_levels(spatial_shapes: torch.Tensor, level_start_index: torch.Tensor, positions: int) -> None:
    shapes = spatial_shapes.tolist()
    starts = level_start_index.tolist()
    if any(h <= 0 or w <= 0 for h, w in shapes):
        raise ValueError(f"ms_deform_attn: spatial_shapes must be positive (H, W) rows, got {shapes}")
    expected_starts = [0]
    for h, w in shapes[:-1]:
        expected_starts.append(expected_starts[-1] + h * w)
    if starts != expected_starts:
        raise ValueError(
            f"ms_deform_attn: level_start_index {starts} disagrees with spatial_shapes {shapes}: "
            f"expected {expected_starts}"
        )
    total = sum(h * w for h, w in shapes)
    if total != positions:
        raise ValueError(
            f"ms_deform_attn: spatial_shapes {shapes} cover {total} positions but value has S = {positions}"
        )
