"""The rename-table mechanism every converter uses: names, aliased heads, stacked modules, batch-norm counters."""
import pytest
import torch

from ddetr_plugin.checkpoint.renaming import (
    KeyRule,
    RenameTable,
    StackRule,
    UnknownKeysError,
    count_indices,
    heads_differ,
    module_rules,
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


def test_module_rules_prefix_each_submodule():
    assert module_rules("enc.{i}", "model.enc.{i}", [("norm1", "self_norm")]) == [
        KeyRule("enc.{i}.norm1", "model.enc.{i}.self_norm")]
    assert module_rules("", "model", [("proj", "proj")]) == [KeyRule("proj", "model.proj")]


ALIASED = RenameTable("aliased", [KeyRule("class_embed", "class_embed"), KeyRule("bbox_embed", "bbox_embed"),
                                  KeyRule("x", "x")], alias_prefix="dec.")


def test_aliases_fill_missing_heads_and_must_agree_with_present_ones():
    head, other = torch.randn(3), torch.randn(3)
    state = {"dec.bbox_embed.0.w": head, "dec.class_embed.1.w": other, "x": head}
    assert ALIASED.aliased_heads(state) == ("class_embed", "bbox_embed")
    merged = ALIASED.rename_to_ours(state)
    assert set(merged) == {"bbox_embed.0.w", "class_embed.1.w", "x"}
    assert merged["class_embed.1.w"] is other
    same = ALIASED.rename_to_ours({"bbox_embed.0.w": head, "dec.bbox_embed.0.w": head.clone()})
    assert list(same) == ["bbox_embed.0.w"]
    with pytest.raises(ValueError, match="'dec.bbox_embed.0.w' should duplicate 'bbox_embed.0.w'"):
        ALIASED.rename_to_ours({"bbox_embed.0.w": head, "dec.bbox_embed.0.w": other})


def test_added_aliases_cover_only_the_named_heads():
    state = {"class_embed.0.w": torch.zeros(1), "bbox_embed.0.w": torch.ones(1), "x.weight": torch.ones(1)}
    aliased = ALIASED.rename_from_ours(state, ["bbox_embed"])
    assert set(aliased) == set(state) | {"dec.bbox_embed.0.w"}
    assert aliased["dec.bbox_embed.0.w"] is state["bbox_embed.0.w"]
    with pytest.raises(ValueError, match="saves no references to the heads"):
        TABLE.rename_from_ours({"proj.weight": torch.zeros(1)}, ["bbox_embed"])


def test_batch_norm_counters_are_dropped_only_where_the_format_has_none():
    state = {"bn.running_mean": torch.zeros(1), "bn.num_batches_tracked": torch.tensor(3)}
    frozen = RenameTable("frozen", [KeyRule("bn", "bn")], batch_norm_counters=False)
    assert list(frozen.rename_to_ours(state)) == list(frozen.rename_from_ours(state)) == ["bn.running_mean"]
    assert list(RenameTable("bn", [KeyRule("bn", "bn")]).rename_to_ours(state)) == list(state)


STACKED = RenameTable("stacked", [KeyRule("layers.{i}.attn", "model.layers.{i}.attention")],
                      stack_rules=[StackRule("model.layers.{i}.attention", ("q", "k", "v"), "in_proj")])


def test_stacked_modules_concatenate_in_part_order_and_split_back():
    parts = {name: torch.randn(2, 4) for name in "qkv"}
    theirs = {f"model.layers.3.attention.{name}.weight": value for name, value in parts.items()}
    theirs["model.layers.3.attention.out.bias"] = torch.randn(4)
    ours = STACKED.rename_to_ours(theirs)
    assert list(ours) == ["layers.3.attn.out.bias", "layers.3.attn.in_proj_weight"]
    assert torch.equal(ours["layers.3.attn.in_proj_weight"], torch.cat([parts["q"], parts["k"], parts["v"]]))
    back = STACKED.rename_from_ours(ours)
    assert set(back) == set(theirs) and all(torch.equal(back[key], theirs[key]) for key in theirs)
    del theirs["model.layers.3.attention.k.weight"]
    with pytest.raises(ValueError, match=r"model.layers.3.attention has \['q', 'v'\] \(weight\); expected q, k, v"):
        STACKED.rename_to_ours(theirs)


def test_heads_differ_compares_later_layers_with_layer_0():
    head = torch.randn(3)
    shared = {"class_embed.0.weight": head, "class_embed.1.weight": head, "bbox_embed.0.w": head}
    assert not heads_differ(shared)
    trained = {**shared, "bbox_embed.1.w": head + 1}
    assert heads_differ(trained) and not heads_differ(trained, ["class_embed"])


def test_count_indices_needs_consecutive_indices():
    assert count_indices({"layers.0.w": 0, "layers.1.w": 0, "layers.1.b": 0, "other.5.w": 0}, "layers.") == 2
    with pytest.raises(ValueError, match=r"layers.\* has indices \[0, 2\]; expected 0..1"):
        count_indices({"layers.0.w": 0, "layers.2.w": 0}, "layers.")
