"""Where the deformable attention looked, in image pixels (from ``forward_raw``'s "intermediates").

The attention reads each level at normalized (x, y) locations of the padded level map. The
model's own frame for positions is the unpadded input image: reference points and predicted
boxes are fractions of it, and a level's valid part spans it (the valid ratio is the
unpadded fraction of the level). So a location maps to input-image pixels as
``location / valid_ratio * (width, height)``: a sample at the centre of valid cell (i, j) of
a level with W_valid x H_valid valid cells lands at ((j + 0.5) / W_valid * width,
(i + 0.5) / H_valid * height). All coordinates here are continuous pixels, 0 at the image's
left/top edge.
"""
import math

import torch


def _image_scale(image_size: torch.Tensor) -> torch.Tensor:
    """(N, 2) rows (height, width) -> (N, 2) factors (width, height) for (x, y)."""
    return image_size.flip(-1).to(torch.float32)


def sampling_points_in_image(
    sampling_locations: torch.Tensor, valid_ratios: torch.Tensor, image_size: torch.Tensor
) -> torch.Tensor:
    """Image pixels of the attention's sampling locations.

    Args:
        sampling_locations: (N, Lq, M, L, P, 2) normalized (x, y) per padded level, as the op reads them.
        valid_ratios: (N, L, 2) unpadded fraction (w, h) of each level.
        image_size: (N, 2) rows (height, width) of each unpadded input image.

    Returns:
        (N, Lq, M, L, P, 2) pixel coordinates (x, y) in the input image.
    """
    batch, _, _, levels = sampling_locations.shape[:4]
    ratios = valid_ratios.to(torch.float32).view(batch, 1, 1, levels, 1, 2)
    scale = _image_scale(image_size).view(batch, 1, 1, 1, 1, 2)
    return sampling_locations.to(torch.float32) / ratios * scale


def reference_points_in_image(reference_points: torch.Tensor, image_size: torch.Tensor) -> torch.Tensor:
    """(N, Q, 2) points or (N, Q, 4) boxes (cx, cy, w, h), normalized to the unpadded image, ->
    (N, Q, 2) pixel coordinates (x, y) of the point (the box centre)."""
    return reference_points[..., :2].to(torch.float32) * _image_scale(image_size)[:, None]


def encoder_query_at(
    x: float, y: float, level: int, spatial_shapes: torch.Tensor, level_start_index: torch.Tensor,
    valid_ratios: torch.Tensor, image_size: torch.Tensor,
) -> tuple[int, tuple[float, float]]:
    """The encoder query of the level-``level`` cell under pixel (x, y) of image 0 of the batch.

    Args:
        x, y: continuous pixel coordinates in the input image.
        spatial_shapes: (L, 2) (H_l, W_l); level_start_index: (L,); valid_ratios: (N, L, 2);
        image_size: (N, 2) (height, width).

    Returns:
        (index into the flattened levels, the cell centre (x, y) in pixels: the query's reference point).

    Raises:
        ValueError: the level does not exist or the pixel is outside the image.
    """
    levels = spatial_shapes.shape[0]
    if not 0 <= level < levels:
        raise ValueError(f"encoder level {level} does not exist; the model has levels 0..{levels - 1}")
    height, width = (float(v) for v in image_size[0])
    if not (0 <= x < width and 0 <= y < height):
        raise ValueError(f"pixel ({x:g}, {y:g}) is outside the {width:g}x{height:g} image")
    rows, columns = (int(v) for v in spatial_shapes[level])
    valid_columns = round(float(valid_ratios[0, level, 0]) * columns)
    valid_rows = round(float(valid_ratios[0, level, 1]) * rows)
    column = min(math.floor(x / width * valid_columns), valid_columns - 1)
    row = min(math.floor(y / height * valid_rows), valid_rows - 1)
    centre = ((column + 0.5) / valid_columns * width, (row + 0.5) / valid_rows * height)
    return int(level_start_index[level]) + row * columns + column, centre


def sample_records(points: torch.Tensor, weights: torch.Tensor) -> list[dict]:
    """The samples of one query as records, heaviest last (the drawing order).

    Args:
        points: (M, L, P, 2) pixels (x, y); weights: (M, L, P).

    Returns:
        [{"x", "y", "head", "level", "point", "weight"}] sorted by increasing weight.
    """
    heads, levels, num_points = weights.shape
    records = [
        {"x": float(points[m, l, p, 0]), "y": float(points[m, l, p, 1]), "head": m, "level": l, "point": p,
         "weight": float(weights[m, l, p])}
        for m in range(heads) for l in range(levels) for p in range(num_points)
    ]
    return sorted(records, key=lambda record: record["weight"])


def decoder_query_attention(
    intermediates: dict, layer: int, query: int, input_size: torch.Tensor, to_original: torch.Tensor
) -> dict:
    """Where decoder layer ``layer``'s cross-attention of ``query`` (image 0) looked.

    Args:
        intermediates: ``forward_raw(..., return_intermediates=True)["intermediates"]``.
        input_size: (1, 2) (height, width) of the unpadded input; to_original: (2,) factors (x, y) from
            input pixels to the pixels to report (e.g. of the image before the test resize).

    Returns:
        {"reference_xy": [x, y], "samples": ``sample_records``}.
    """
    decoder = intermediates["decoder"][layer]
    locations = decoder["sampling_locations"][:1, query:query + 1]
    points = sampling_points_in_image(locations, intermediates["valid_ratios"][:1], input_size)[0, 0] * to_original
    reference = reference_points_in_image(decoder["reference_points"][:1, query:query + 1], input_size)[0, 0]
    return {"reference_xy": (reference * to_original).tolist(),
            "samples": sample_records(points, decoder["attention_weights"][0, query])}


def encoder_pixel_attention(
    intermediates: dict, layer: int, level: int, xy: tuple[float, float], input_size: torch.Tensor,
    to_original: torch.Tensor,
) -> dict:
    """Where encoder layer ``layer``'s self-attention looked for the level-``level`` cell under pixel ``xy``
    (in reported pixels, see ``decoder_query_attention``) of image 0.

    Returns:
        {"query": index into the flattened levels, "reference_xy": the cell centre, "samples": ``sample_records``}.
    """
    x, y = (float(value) / float(factor) for value, factor in zip(xy, to_original))
    query, centre = encoder_query_at(x, y, level, intermediates["spatial_shapes"], intermediates["level_start_index"],
                                     intermediates["valid_ratios"], input_size)
    encoder = intermediates["encoder"][layer]
    locations = encoder["sampling_locations"][:1, query:query + 1]
    points = sampling_points_in_image(locations, intermediates["valid_ratios"][:1], input_size)[0, 0] * to_original
    return {"query": query, "reference_xy": (torch.tensor(centre) * to_original).tolist(),
            "samples": sample_records(points, encoder["attention_weights"][0, query])}
