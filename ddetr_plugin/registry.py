"""The seven component registries (fvcore ``Registry``).

A component registers itself with ``@XXX_REGISTRY.register()`` and is chosen in
YAML by its class name under the matching ``NAME`` key, e.g.
``MODEL.BACKBONE.NAME: ResNetBackbone``. Every registered class is constructible
from explicit arguments; a classmethod ``from_config(cfg, **built)`` returns the
keyword arguments it reads from a config, so ``build(REGISTRY, name, cfg)`` is
``cls(**cls.from_config(cfg))``; ``build_from_key("MODEL.MATCHER.NAME", cfg)`` builds the
component a config names, through ``COMPONENT_KEYS``, the one table of which key names which
registry's component.
"""
from typing import Any, Dict

from fvcore.common.registry import Registry

from .config.dotted import config_value

BACKBONE_REGISTRY = Registry("BACKBONE")
BACKBONE_REGISTRY.__doc__ = "Backbones: (B, 3, H, W) -> dict of feature maps, with output_shape()."
POSITION_ENCODING_REGISTRY = Registry("POSITION_ENCODING")
POSITION_ENCODING_REGISTRY.__doc__ = "Position encodings: padding mask (B, H, W) -> (B, C, H, W)."
TRANSFORMER_REGISTRY = Registry("TRANSFORMER")
TRANSFORMER_REGISTRY.__doc__ = "Deformable transformers: multi-level features -> decoder states."
MATCHER_REGISTRY = Registry("MATCHER")
MATCHER_REGISTRY.__doc__ = "Matchers: predictions and targets -> (prediction, target) index pairs."
CRITERION_REGISTRY = Registry("CRITERION")
CRITERION_REGISTRY.__doc__ = "Criteria: predictions and targets -> dict of weighted losses."
POSTPROCESSOR_REGISTRY = Registry("POSTPROCESSOR")
POSTPROCESSOR_REGISTRY.__doc__ = "Postprocessors: raw predictions -> per-image detections."
META_ARCH_REGISTRY = Registry("META_ARCH")
META_ARCH_REGISTRY.__doc__ = "Meta-architectures: the whole detector, built from a config."

COMPONENT_KEYS: Dict[str, Registry] = {
    "MODEL.META_ARCHITECTURE": META_ARCH_REGISTRY,
    "MODEL.BACKBONE.NAME": BACKBONE_REGISTRY,
    "MODEL.POSITION_ENCODING.NAME": POSITION_ENCODING_REGISTRY,
    "MODEL.TRANSFORMER.NAME": TRANSFORMER_REGISTRY,
    "MODEL.MATCHER.NAME": MATCHER_REGISTRY,
    "MODEL.CRITERION.NAME": CRITERION_REGISTRY,
    "MODEL.POSTPROCESSOR.NAME": POSTPROCESSOR_REGISTRY,
}


def get_component(registry: Registry, name: str) -> type:
    """The class registered as ``name``; an unknown name lists the registered ones."""
    if name not in registry:
        choices = ", ".join(sorted(name for name, _ in registry))
        raise KeyError(f"no component named {name!r} in the {registry._name} registry; registered: {choices}")
    return registry.get(name)


def build(registry: Registry, name: str, cfg, **built: Any):
    """Construct ``name`` from ``cfg``; ``built`` passes already-built submodules/values through."""
    cls = get_component(registry, name)
    return cls(**cls.from_config(cfg, **built))


def component_for_key(key: str, cfg) -> type:
    """The class that config key ``key`` (one of ``COMPONENT_KEYS``) names in ``cfg``.

    Raises:
        KeyError: starting with ``key``, when the name is not registered; it lists the registered ones.
    """
    try:
        return get_component(COMPONENT_KEYS[key], config_value(cfg, key))
    except KeyError as e:
        raise KeyError(f"{key}: {e.args[0]}") from None


def build_from_key(key: str, cfg, **built: Any):
    """Construct the component that config key ``key`` names in ``cfg``; ``built`` as in ``build``."""
    cls = component_for_key(key, cfg)
    return cls(**cls.from_config(cfg, **built))
