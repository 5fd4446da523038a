"""The rename-table mechanism and the head-alias helpers both converters use."""
import pytest
import torch

from ddetr_plugin.checkpoint.renaming import (
    KeyRule,
    RenameTable,
    UnknownKeysError,
    add_head_aliases,
    drop_batch_norm_counters,
    merge_head_aliases,
)

TABLE = RenameTable("test", [
    KeyRule("enc.layers.{i}.norm1", "model.enc.{i}.self_norm"),
    KeyRule("enc.layers.{i}.linear1", "model.enc.{i}.mlp.fc1"),
    KeyRule("enc.layers.{i}.linear1", "model.enc.{i}.fc1"),  # an older spelling
    KeyRule("proj", "model.proj"),
    KeyRule("proj_norm", "model.proj_norm"),
])


def test_placeholders_and_suffixes_carry_over():
    assert TABLE.to_ours("model.enc.12.self_norm.weight") == "enc.layers.12.norm1.weight"
    assert TABLE.from_ours("enc.layers.3.norm1.bias") == "model.enc.3.self_norm.bias"
    assert TABLE.to_ours("model.proj.0.weight") == "proj.0.weight"


def test_reading_accepts_every_spelling_and_writing_uses_the_first():
    assert TABLE.to_ours("model.enc.0.fc1.weight") == TABLE.to_ours("model.enc.0.mlp.fc1.weight")
    assert TABLE.from_ours("enc.layers.0.linear1.weight") == "model.enc.0.mlp.fc1.weight"


def test_a_rule_matches_whole_path_components_only():
    # "proj" must not swallow "proj_norm", nor "enc.layers.1" match "enc.layers.10"
    assert TABLE.to_ours("model.proj_norm.weight") == "proj_norm.weight"
    assert TABLE.to_ours("model.projection.weight") is None
    assert TABLE.from_ours("enc.layers.x.norm1.weight") is None


def test_unknown_keys_are_named():
    state = {"model.proj.weight": torch.zeros(1), "model.mask_head.weight": torch.zeros(1)}
    with pytest.raises(UnknownKeysError, match="'model.mask_head.weight'"):
        TABLE.rename_to_ours(state)


def test_two_keys_mapping_to_one_name_is_an_error():
    state = {"model.enc.0.fc1.weight": torch.zeros(1), "model.enc.0.mlp.fc1.weight": torch.ones(1)}
    with pytest.raises(ValueError, match="two keys map to 'enc.layers.0.linear1.weight'"):
        TABLE.rename_to_ours(state)


def test_rules_need_the_same_placeholders_on_both_sides():
    with pytest.raises(ValueError, match="same placeholders"):
        RenameTable("bad", [KeyRule("a.{i}", "b")])


def test_aliases_fill_missing_heads_and_must_agree_with_present_ones():
    head, other = torch.randn(3), torch.randn(3)
    merged = merge_head_aliases({"dec.bbox_embed.0.w": head, "dec.class_embed.1.w": other, "x": head}, "dec.")
    assert set(merged) == {"bbox_embed.0.w", "class_embed.1.w", "x"}
    assert merged["class_embed.1.w"] is other
    same = merge_head_aliases({"bbox_embed.0.w": head, "dec.bbox_embed.0.w": head.clone()}, "dec.")
    assert list(same) == ["bbox_embed.0.w"]
    with pytest.raises(ValueError, match="'dec.bbox_embed.0.w' should duplicate 'bbox_embed.0.w'"):
        merge_head_aliases({"bbox_embed.0.w": head, "dec.bbox_embed.0.w": other}, "dec.")


def test_added_aliases_cover_only_the_named_heads():
    state = {"class_embed.0.w": torch.zeros(1), "bbox_embed.0.w": torch.ones(1), "query_embed.weight": torch.ones(1)}
    aliased = add_head_aliases(state, "dec.", ["bbox_embed"])
    assert set(aliased) == set(state) | {"dec.bbox_embed.0.w"}
    assert aliased["dec.bbox_embed.0.w"] is state["bbox_embed.0.w"]


def test_batch_norm_counters_are_dropped():
    state = {"bn.running_mean": torch.zeros(1), "bn.num_batches_tracked": torch.tensor(3)}
    assert list(drop_batch_norm_counters(state)) == ["bn.running_mean"]
