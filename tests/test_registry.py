"""The one table from config keys to registries, and building a component by its key."""
import pytest
from torch import nn

import ddetr_plugin.modeling  # noqa: F401  (registers the built-in components)
from ddetr_plugin import registry
from ddetr_plugin.config import get_cfg
from ddetr_plugin.modeling.matcher import HungarianMatcher


def test_every_registry_has_exactly_one_key():
    registries = [value for name, value in vars(registry).items() if name.endswith("_REGISTRY")]
    assert sorted(map(id, registry.COMPONENT_KEYS.values())) == sorted(map(id, registries))
    assert all(key == "MODEL.META_ARCHITECTURE" or key.endswith(".NAME") for key in registry.COMPONENT_KEYS)


def test_build_from_key_builds_what_the_config_names():
    cfg = get_cfg()
    cfg.MODEL.MATCHER.COST_BBOX = 3.0
    matcher = registry.build_from_key("MODEL.MATCHER.NAME", cfg)
    assert isinstance(matcher, HungarianMatcher) and matcher.cost_bbox == 3.0


def test_a_user_component_is_built_by_its_key():
    @registry.POSTPROCESSOR_REGISTRY.register()
    class KeepEverything(nn.Module):
        @classmethod
        def from_config(cls, cfg):
            return {}

    try:
        cfg = get_cfg()
        cfg.MODEL.POSTPROCESSOR.NAME = "KeepEverything"
        assert isinstance(registry.build_from_key("MODEL.POSTPROCESSOR.NAME", cfg), KeepEverything)
    finally:
        registry.POSTPROCESSOR_REGISTRY._obj_map.pop("KeepEverything")


def test_an_unknown_name_is_reported_with_its_key_and_the_choices():
    cfg = get_cfg()
    cfg.MODEL.MATCHER.NAME = "NoSuchMatcher"
    with pytest.raises(KeyError, match=r"MODEL\.MATCHER\.NAME: no component named 'NoSuchMatcher'.*HungarianMatcher"):
        registry.build_from_key("MODEL.MATCHER.NAME", cfg)
