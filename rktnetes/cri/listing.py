"""What the List* and Stream* calls share: the CRI's filters (id prefix, state, label
selector) and the chunks a Stream* call sends its list in."""

from __future__ import annotations

from typing import Iterator, Mapping, Sequence

STREAM_CHUNK = 100     # items per message of a Stream* call


def labels_match(labels: Mapping[str, str], selector: Mapping[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def matches(f, item_id: str, labels: Mapping[str, str], state: int | None = None) -> bool:
    """`f` a PodSandboxFilter, ContainerFilter or a stats filter (no state field)."""
    if f.id and not item_id.startswith(f.id.lower()):
        return False
    if state is not None and f.HasField("state") and state != f.state.state:
        return False
    return labels_match(labels, f.label_selector)


def chunks(items: Sequence, n: int = STREAM_CHUNK) -> Iterator[Sequence]:
    for i in range(0, len(items), n):
        yield items[i:i + n]
