"""preprocessor_config.json for HF's ``DeformableDetrImageProcessor``, matching our test-time input.

Ours (``data.transforms.eval_augmentation`` and ``DeformableDETR.preprocess_images``): bilinear
antialiased resize of the uint8 image, short side INPUT.MIN_SIZE_TEST, long side at most
INPUT.MAX_SIZE_TEST; then ``(pixel - MODEL.PIXEL_MEAN) / MODEL.PIXEL_STD`` on the 0-255 scale;
zero padding bottom/right. HF's processor does the same with ``shortest_edge`` /
``longest_edge``, a 1/255 rescale and the mean and std divided by 255. One difference is
HF's: when the long-side cap applies, HF computes the long side from the unrounded short
side, so it can come out one pixel longer than ours (the official rule); images already at
the test size (as the quick-start's) are not resampled by either.
"""
from typing import Any, Dict

PREPROCESSOR_FILE = "preprocessor_config.json"
PIL_BILINEAR = 2  # PIL.Image.Resampling.BILINEAR, the "resample" HF stores


def preprocessor_config(cfg) -> Dict[str, Any]:
    """The ``DeformableDetrImageProcessor`` settings of ``cfg``'s test-time input."""
    return {
        "image_processor_type": "DeformableDetrImageProcessor",
        "format": "coco_detection",
        "do_resize": True,
        "size": {"shortest_edge": int(cfg.INPUT.MIN_SIZE_TEST), "longest_edge": int(cfg.INPUT.MAX_SIZE_TEST)},
        "resample": PIL_BILINEAR,
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        "image_mean": [float(value) / 255 for value in cfg.MODEL.PIXEL_MEAN],
        "image_std": [float(value) / 255 for value in cfg.MODEL.PIXEL_STD],
        "do_convert_annotations": True,
        "do_pad": True,
    }
