"""`LruDict`: a dict that forgets its least recently used keys past a size — for caches a
process must not let grow with the number of sessions it has ever served."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class LruDict(OrderedDict[K, V]):
    def __init__(self, maxlen: int) -> None:
        super().__init__()
        self.maxlen = maxlen

    def get(self, key: K, default: Any = None) -> Any:
        if key in self:
            self.move_to_end(key)
            return self[key]
        return default

    def __setitem__(self, key: K, value: V) -> None:
        super().__setitem__(key, value)
        self.move_to_end(key)
        while len(self) > self.maxlen:
            self.popitem(last=False)
