"""Renaming state-dict keys between our layout and another codebase's.

A format is described by one ``RenameTable``: an ordered list of ``KeyRule(ours, theirs)``
pairs of module paths in which ``{name}`` stands for a layer index. A key converts with
the first rule whose path it starts with; the rest of the key (``.weight``, or a deeper
path) is kept. So specific rules come before general ones, and one of our modules may
have several spellings in the other format (older releases): reading accepts each of
them, writing uses the first.

The same module also handles the duplicated prediction heads both formats save: the
official code and HF transformers keep references to the box (and, two-stage, class)
heads inside the decoder, saved again under an alias prefix.
"""
import re
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import torch

StateDict = Dict[str, torch.Tensor]
HEADS = ("class_embed", "bbox_embed")

_PLACEHOLDER = re.compile(r"\{(\w+)\}")


class UnknownKeysError(ValueError):
    """Keys of a checkpoint that a rename table does not know (another model, or a newer format)."""


@dataclass(frozen=True)
class KeyRule:
    """Our module path and the other format's, e.g. ``KeyRule("backbone.body", "backbone.0.body")``."""

    ours: str
    theirs: str


def _compile(template: str) -> Tuple[re.Pattern, str]:
    """A regex matching ``template`` as a key prefix (up to a dot or the end), placeholders as digits."""
    pattern, position = "^", 0
    for match in _PLACEHOLDER.finditer(template):
        pattern += re.escape(template[position:match.start()]) + rf"(?P<{match.group(1)}>\d+)"
        position = match.end()
    pattern += re.escape(template[position:]) + r"(?=\.|$)"
    return re.compile(pattern), template


class RenameTable:
    """Bidirectional key renaming for one checkpoint format.

    Args:
        name: the format, for error messages ("official", "HF transformers").
        rules: most specific first; ``theirs`` spellings after the first for the same
            ``ours`` path are accepted when reading only.
    """

    def __init__(self, name: str, rules: Sequence[KeyRule]):
        self.name = name
        self.rules = list(rules)
        for rule in self.rules:
            if set(_PLACEHOLDER.findall(rule.ours)) != set(_PLACEHOLDER.findall(rule.theirs)):
                raise ValueError(f"KeyRule {rule} must use the same placeholders on both sides")
        self._to_ours = [(_compile(rule.theirs)[0], rule.ours) for rule in self.rules]
        self._from_ours = [(_compile(rule.ours)[0], rule.theirs) for rule in self.rules]

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

    def rename_to_ours(self, state_dict: StateDict) -> StateDict:
        return self._rename(state_dict, self.to_ours, f"{self.name} checkpoint")

    def rename_from_ours(self, state_dict: StateDict) -> StateDict:
        return self._rename(state_dict, self.from_ours, "our state dict")

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


def merge_head_aliases(state_dict: StateDict, alias_prefix: str, heads: Iterable[str] = HEADS) -> StateDict:
    """Fold ``alias_prefix + head.*`` keys into ``head.*``: taken when the head key is missing,
    checked equal to it otherwise.

    Raises:
        ValueError: an alias holds different values from the head it duplicates.
    """
    merged = {}
    prefixes = tuple(f"{alias_prefix}{head}." for head in heads)
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


def add_head_aliases(state_dict: StateDict, alias_prefix: str, heads: Iterable[str]) -> StateDict:
    """``state_dict`` plus ``alias_prefix + key`` for every key of the given heads (same tensors)."""
    prefixes = tuple(f"{head}." for head in heads)
    aliases = {alias_prefix + key: value for key, value in state_dict.items() if key.startswith(prefixes)}
    return {**state_dict, **aliases}


def drop_batch_norm_counters(state_dict: StateDict) -> StateDict:
    """Without ``num_batches_tracked``: frozen batch norm (official, HF) has no such buffer."""
    return {key: value for key, value in state_dict.items() if not key.endswith(".num_batches_tracked")}
