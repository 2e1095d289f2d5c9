"""Per-model caches of derived matrices for the fast path (never part of a normative object)."""

from __future__ import annotations

import weakref

_CACHES: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def derived(model, key, build):
    """build() once per (model, key); the result lives as long as the model."""
    cache = _CACHES.setdefault(model, {})
    if key not in cache:
        cache[key] = build()
    return cache[key]
