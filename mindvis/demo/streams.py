"""Named, reproducible random streams: every piece of the demo draws from its own stream.

A stream is identified by the demo seed and a path of keys (strings or integers), e.g.
`stream(seed, "GOD", "sbj_3", "noise")`. Streams do not depend on the order in which other streams are used, so
adding a dataset or changing one count does not reshuffle unrelated data, and the same seed gives the same arrays.
"""

from __future__ import annotations

import zlib

import numpy as np


def _key_to_int(key: str | int) -> int:
    if isinstance(key, str):
        # crc32 is stable across runs and platforms (Python's hash() is salted per process).
        return zlib.crc32(key.encode("utf-8"))
    if key < 0:
        raise ValueError(f"stream keys must be non-negative integers or strings, got {key}")
    return int(key)


def stream(seed: int, *keys: str | int) -> np.random.Generator:
    """A numpy Generator determined only by `seed` and `keys`."""
    return np.random.default_rng(np.random.SeedSequence([_key_to_int(seed), *(_key_to_int(k) for k in keys)]))
