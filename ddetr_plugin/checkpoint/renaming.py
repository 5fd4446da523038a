"""The one mechanism every converter uses: a ``RenameTable`` between our state-dict layout and a format's.

A format is described by one ``RenameTable``: an ordered list of ``KeyRule(ours, theirs)``
pairs of module paths in which ``{name}`` stands for an index. A key converts with the
first rule whose path it starts with; the rest of the key (``.weight``, or a deeper path)
is kept. So specific rules come before general ones, and one of our modules may have
several spellings in the other format (older releases): reading accepts each of them,
writing uses the first. ``module_rules`` writes the rules of a repeated module (a layer,
a block) from the pairs of its submodule names.

Beyond names, a table says what else differs in the tensors a format stores:

- ``alias_prefix``: the official code and HF transformers keep references to the box (and,
  two-stage, class) heads inside the decoder, saved again under this prefix; reading folds
  them into the heads, writing adds them for the heads asked for;
- ``stack_rules``: modules the other format keeps separate where ours stacks their
  parameters (HF's q/k/v projections, our ``nn.MultiheadAttention``'s ``in_proj``);
- ``batch_norm_counters``: False for formats with frozen batch norm, which has no
  ``num_batches_tracked`` (dropped in both directions).
"""
import re
from dataclasses import dataclass
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import torch

StateDict = Dict[str, torch.Tensor]
HEADS = ("class_embed", "bbox_embed")

_PLACEHOLDER = re.compile(r"\{(\w+)\}")
_HEAD_KEY = re.compile(r"(class_embed|bbox_embed)\.(\d+)\.(.*)")


class UnknownKeysError(ValueError):
    """Keys of a checkpoint that a rename table does not know (another model, or a newer format)."""


@dataclass(frozen=True)
class KeyRule:
    """Our module path and the other format's, e.g. ``KeyRule("backbone.body", "backbone.0.body")``."""

    ours: str
    theirs: str


@dataclass(frozen=True)
class StackRule:
    """The other format's modules ``{theirs}.{part}`` whose weights and biases we keep stacked, in
    ``parts`` order, as ``{theirs}.{stacked}_weight`` / ``_bias`` (before renaming), e.g.
    ``StackRule("model.decoder.layers.{i}.self_attn", ("q_proj", "k_proj", "v_proj"), "in_proj")``."""

    theirs: str
    parts: Tuple[str, ...]
    stacked: str


def module_rules(ours: str, theirs: str, submodules: Sequence[Tuple[str, str]]) -> List[KeyRule]:
    """A rule for each ``(our name, their name)`` of ``submodules`` inside the modules ``ours`` and ``theirs``
    (an empty path: the top level)."""
    def join(path: str, name: str) -> str:
        return f"{path}.{name}" if path else name

    return [KeyRule(join(ours, mine), join(theirs, other)) for mine, other in submodules]


def same_names(*modules: str) -> List[KeyRule]:
    """Rules for top-level modules both layouts name alike."""
    return [KeyRule(module, module) for module in modules]


def _template_regex(template: str) -> str:
    """A regex of ``template`` with its placeholders as named groups of digits."""
    pattern, position = "", 0
    for match in _PLACEHOLDER.finditer(template):
        pattern += re.escape(template[position:match.start()]) + rf"(?P<{match.group(1)}>\d+)"
        position = match.end()
    return pattern + re.escape(template[position:])


def _compile(template: str) -> re.Pattern:
    """A regex matching ``template`` as a key prefix (up to a dot or the end)."""
    return re.compile("^" + _template_regex(template) + r"(?=\.|$)")


class RenameTable:
    """Bidirectional conversion of state dicts between our layout and one format's.

    Args:
        name: the format, for error messages ("official", "HF transformers").
        rules: most specific first; ``theirs`` spellings after the first for the same
            ``ours`` path are accepted when reading only.
        alias_prefix: where the format saves the decoder's references to the heads, or None.
        stack_rules: the other format's separate modules that ours stacks.
        batch_norm_counters: whether the format stores batch norm's ``num_batches_tracked``.
    """

    def __init__(
        self,
        name: str,
        rules: Sequence[KeyRule],
        *,
        alias_prefix: Optional[str] = None,
        stack_rules: Sequence[StackRule] = (),
        batch_norm_counters: bool = True,
    ):
        self.name = name
        self.rules = list(rules)
        self.alias_prefix = alias_prefix
        self.stack_rules = list(stack_rules)
        self.batch_norm_counters = batch_norm_counters
        for rule in self.rules:
            if set(_PLACEHOLDER.findall(rule.ours)) != set(_PLACEHOLDER.findall(rule.theirs)):
                raise ValueError(f"KeyRule {rule} must use the same placeholders on both sides")
        self._to_ours = [(_compile(rule.theirs), rule.ours) for rule in self.rules]
        self._from_ours = [(_compile(rule.ours), rule.theirs) for rule in self.rules]

    @staticmethod
    def _apply(key: str, compiled: List[Tuple[re.Pattern, str]]) -> Optional[str]:
        for pattern, replacement in compiled:
            match = pattern.match(key)
            if match:
                return replacement.format(**match.groupdict()) + key[match.end():]
        return None

    def to_ours(self, key: str) -> Optional[str]:
        """Our name of the other format's ``key``; None when no rule matches."""
        return self._apply(key, self._to_ours)

    def from_ours(self, key: str) -> Optional[str]:
        """The other format's (first) name of our ``key``; None when no rule matches."""
        return self._apply(key, self._from_ours)

    def aliased_heads(self, state_dict: Mapping[str, torch.Tensor]) -> Tuple[str, ...]:
        """The heads of which the other format's ``state_dict`` holds the decoder's references."""
        if self.alias_prefix is None:
            return ()
        return tuple(head for head in HEADS if any(key.startswith(f"{self.alias_prefix}{head}.") for key in state_dict))

    def rename_to_ours(self, state_dict: StateDict) -> StateDict:
        """Our state dict of the other format's (tensors shared where not stacked).

        Raises:
            UnknownKeysError: keys no rule knows. ValueError: two keys with one name of ours, an
                alias that differs from its head, or a stacked module with a part missing.
        """
        state_dict = self._without_counters(state_dict)
        for rule in self.stack_rules:
            state_dict = _stack(state_dict, rule)
        if self.alias_prefix is not None:
            state_dict = _merge_head_aliases(state_dict, self.alias_prefix)
        return self._rename(state_dict, self.to_ours, f"{self.name} checkpoint")

    def rename_from_ours(self, state_dict: StateDict, aliased_heads: Iterable[str] = ()) -> StateDict:
        """The other format's state dict of ours, with the decoder's references to ``aliased_heads``.

        Raises:
            UnknownKeysError: keys no rule knows. ValueError: two keys with one name of theirs.
        """
        renamed = self._rename(self._without_counters(state_dict), self.from_ours, "our state dict")
        for rule in self.stack_rules:
            renamed = _split(renamed, rule)
        aliased_heads = tuple(aliased_heads)
        if aliased_heads:
            if self.alias_prefix is None:
                raise ValueError(f"the {self.name} format saves no references to the heads {aliased_heads}")
            renamed = _add_head_aliases(renamed, self.alias_prefix, aliased_heads)
        return renamed

    def _without_counters(self, state_dict: StateDict) -> StateDict:
        return state_dict if self.batch_norm_counters else drop_batch_norm_counters(state_dict)

    def _rename(self, state_dict: StateDict, convert, what: str) -> StateDict:
        renamed: StateDict = {}
        unknown = []
        for key, value in state_dict.items():
            new_key = convert(key)
            if new_key is None:
                unknown.append(key)
            elif new_key in renamed:
                raise ValueError(f"{what}: two keys map to {new_key!r} (one of them is {key!r})")
            else:
                renamed[new_key] = value
        if unknown:
            shown = ", ".join(repr(key) for key in unknown[:10]) + (f" and {len(unknown) - 10} more"
                                                                     if len(unknown) > 10 else "")
            raise UnknownKeysError(
                f"{what} has keys the {self.name} conversion does not know: {shown}. This converter handles "
                f"Deformable DETR detection models with a ResNet backbone (no segmentation heads)."
            )
        return renamed


def _stack(state_dict: StateDict, rule: StackRule) -> StateDict:
    """``rule``'s separate parts concatenated (dim 0) into its stacked tensors, placed after the other keys."""
    part = "|".join(map(re.escape, rule.parts))
    pattern = re.compile(rf"^(?P<_module>{_template_regex(rule.theirs)})\.(?P<_part>{part})\.(?P<_param>weight|bias)$")
    found: Dict[Tuple[str, str], Dict[str, torch.Tensor]] = {}
    stacked: StateDict = {}
    for key, value in state_dict.items():
        match = pattern.match(key)
        if match:
            found.setdefault((match.group("_module"), match.group("_param")), {})[match.group("_part")] = value
        else:
            stacked[key] = value
    for (module, param), parts in found.items():
        if set(parts) != set(rule.parts):
            raise ValueError(f"{module} has {sorted(parts)} ({param}); expected {', '.join(rule.parts)}")
        stacked[f"{module}.{rule.stacked}_{param}"] = torch.cat([parts[name] for name in rule.parts])
    return stacked


def _split(state_dict: StateDict, rule: StackRule) -> StateDict:
    """``rule``'s stacked tensors as its separate parts (equal chunks of dim 0), in place of each."""
    module = _template_regex(rule.theirs)
    pattern = re.compile(rf"^(?P<_module>{module})\.{re.escape(rule.stacked)}_(?P<_param>weight|bias)$")
    split: StateDict = {}
    for key, value in state_dict.items():
        match = pattern.match(key)
        if not match:
            split[key] = value
            continue
        for name, chunk in zip(rule.parts, value.chunk(len(rule.parts))):
            split[f"{match.group('_module')}.{name}.{match.group('_param')}"] = chunk
    return split


def _merge_head_aliases(state_dict: StateDict, alias_prefix: str) -> StateDict:
    """Fold ``alias_prefix + head.*`` keys into ``head.*``: taken when the head key is missing,
    checked equal to it otherwise.

    Raises:
        ValueError: an alias holds different values from the head it duplicates.
    """
    merged = {}
    prefixes = tuple(f"{alias_prefix}{head}." for head in HEADS)
    for key, value in state_dict.items():
        if not key.startswith(prefixes):
            merged.setdefault(key, value)
            continue
        head_key = key[len(alias_prefix):]
        other = state_dict.get(head_key)
        if other is not None and not (other.shape == value.shape and torch.equal(other, value)):
            raise ValueError(
                f"{key!r} should duplicate {head_key!r} (the decoder's reference to the same head) but holds "
                f"different values; the checkpoint is inconsistent"
            )
        merged.setdefault(head_key, value)
    return merged


def _add_head_aliases(state_dict: StateDict, alias_prefix: str, heads: Tuple[str, ...]) -> StateDict:
    """``state_dict`` plus ``alias_prefix + key`` for every key of the given heads (same tensors)."""
    prefixes = tuple(f"{head}." for head in heads)
    aliases = {alias_prefix + key: value for key, value in state_dict.items() if key.startswith(prefixes)}
    return {**state_dict, **aliases}


def drop_batch_norm_counters(state_dict: StateDict) -> StateDict:
    """Without ``num_batches_tracked``: frozen batch norm (official, HF, ours by default) has no such buffer."""
    return {key: value for key, value in state_dict.items() if not key.endswith(".num_batches_tracked")}


def heads_differ(state_dict: StateDict, heads: Iterable[str] = HEADS) -> bool:
    """Whether, in our layout, some class or box head (among ``heads``) of a later decoder layer differs
    from layer 0's (refined heads are trained apart; shared ones are one tensor)."""
    heads = tuple(heads)
    for key, value in state_dict.items():
        match = _HEAD_KEY.match(key)
        if match and match.group(1) in heads and match.group(2) != "0":
            first = state_dict.get(f"{match.group(1)}.0.{match.group(3)}")
            if first is None or first.shape != value.shape or not torch.equal(first, value):
                return True
    return False


def count_indices(state_dict: Mapping[str, torch.Tensor], prefix: str) -> int:
    """The number of entries ``prefix{i}.`` (checked to be 0..n-1).

    Raises:
        ValueError: the indices have a gap.
    """
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    indices = {int(match.group(1)) for key in state_dict if (match := pattern.match(key))}
    if indices != set(range(len(indices))):
        raise ValueError(f"{prefix}* has indices {sorted(indices)}; expected 0..{len(indices) - 1}")
    return len(indices)
