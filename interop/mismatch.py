"""One clear error for converted weights that do not fit the model: every mismatched name and shape."""

from __future__ import annotations

from collections.abc import Mapping

from configs.errors import ConfigError

_MAX_LISTED = 8


def raise_mismatch(source: str, problems: list[str], fix: str) -> None:
    """Raises ConfigError naming up to _MAX_LISTED `problems` of `source` and the `fix`, if there are any."""
    if not problems:
        return
    listed = "; ".join(problems[:_MAX_LISTED])
    more = f"; and {len(problems) - _MAX_LISTED} more" if len(problems) > _MAX_LISTED else ""
    raise ConfigError(f"The checkpoint {source} does not match the model ({listed}{more}); {fix}")


def check_shapes(
    converted: Mapping[str, tuple], expected: Mapping[str, tuple], source: str, sizes: Mapping | None = None
) -> None:
    """Converted parameter shapes against the model's ({path: shape} each); raises listing every difference.

    `sizes` ({config key: checkpoint's value}), when known, are named in the fix."""
    problems = [
        f"{p} is {tuple(converted[p])} there but {tuple(expected[p])} in the model"
        for p in sorted(converted.keys() & expected.keys())
        if tuple(converted[p]) != tuple(expected[p])
    ]
    problems += [f"{p} {tuple(expected[p])} is missing there" for p in sorted(expected.keys() - converted.keys())]
    problems += [
        f"{p} {tuple(converted[p])} has no place in the model" for p in sorted(converted.keys() - expected.keys())
    ]
    known = ", ".join(f"{k} = {v!r}" for k, v in (sizes or {}).items())
    raise_mismatch(
        source,
        problems,
        "set the config's model sizes to the checkpoint's ("
        + (known or "widths, depths, heads, patch and image size, max_len, embed_dim, tokenizer vocabulary")
        + ") or choose a checkpoint of this architecture.",
    )


def unused_keys(state: Mapping, used: set[str], source: str, what: str) -> None:
    """Raises for checkpoint entries the converter did not consume (another architecture's weights)."""
    extra = [f"{k} {tuple(state[k].shape)} is not part of {what}" for k in sorted(state.keys() - used)]
    raise_mismatch(source, extra, f"pass a {what} checkpoint, or convert this one with the matching converter.")
