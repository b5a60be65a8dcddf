"""One feature and a point layer's bbox pages answered from memory while the
store says nothing changed: the hot reads of OGC API - Features.

Every answer here is what the store would give, or none. Memory is trusted
only while the store's ``change_token`` is the one read before the layer
versions the cached entries were made under (the token moves on any write,
in any process); with no token, or a moved one, the caller goes to a thread
(``FeatureServing.item``, ``FeatureServing.page``), where the layer versions
are read again and a stale entry is made anew. Entries are keyed by their
layer's version, so a write to a layer leaves its old entries unreachable
(they age out); feature revisions alone cannot key them, since a restored
feature starts again at revision 1.

The ``cached_*`` methods touch memory only, for the event loop; the others
read the store, for a thread.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np

from geo_service.outputs.geojson import feature_fragments
from geo_service.sources.crs import CrsReference
from geo_service.store import BBox, Envelopes, Store, StoredFeature

__all__ = ["BoundedCache", "FeaturePage", "FeatureServing", "ItemAnswer", "PointIndex"]

V = TypeVar("V")

#: Bytes of finished one-feature answers kept (about 1 kB each).
ITEM_BYTES = 32 * 2**20
#: Bytes of serialised features kept for bbox pages (about 0.7 kB each).
FRAGMENT_BYTES = 64 * 2**20
#: Features read together when a page misses one (``FeatureServing._read_blocks``).
FRAGMENT_BLOCK = 64
#: Candidates past which a bbox page is worked out in a thread, not on the
#: event loop (a few milliseconds of numpy at 1M sites in one box).
LOOP_CANDIDATES = 50_000


@dataclass(frozen=True)
class ItemAnswer:
    """One feature's finished JSON answer and its ETag."""

    body: bytes
    etag: str


@dataclass(frozen=True)
class FeaturePage:
    """A page's features as serialised fragments, and how many matched in all."""

    fragments: list[bytes]
    number_matched: int


class PointIndex:
    """A point layer's ``Envelopes`` sorted by west edge, to answer which
    features meet a box and which come first by id with numpy alone (about
    50 µs for a box of 2,000 among 100,000 sites; an R-tree of shapely boxes
    halves that but holds 500 MB at a million sites).

    Matching is the store's own test: envelope meets box, edges included
    (for a point layer both stores answer ``query`` by exactly that).
    """

    def __init__(self, version: int, envelopes: Envelopes):
        self.version = version
        self.ids = envelopes.ids
        self.revisions = envelopes.revisions
        order = np.argsort(envelopes.minx, kind="stable")  # NaN (no envelope) last
        self._rank = order  # position in id order, by west edge
        self._minx = envelopes.minx[order]
        self._miny = envelopes.miny[order]
        self._maxx = envelopes.maxx[order]
        self._maxy = envelopes.maxy[order]
        widths = envelopes.maxx - envelopes.minx
        widths = widths[~np.isnan(widths)]
        self._widest = float(widths.max()) if widths.size else 0.0

    def candidates(self, box: BBox) -> tuple[int, int]:
        """The slice (by west edge) that can hold features meeting ``box``."""
        west, _, east, _ = box
        # A little wider than the widest envelope: the mask decides exactly.
        lo = int(np.searchsorted(self._minx, west - self._widest - 1e-9, side="left"))
        hi = int(np.searchsorted(self._minx, east, side="right"))
        return lo, max(lo, hi)

    def page(
        self, box: BBox | None, limit: int, offset: int, most: int | None = None
    ) -> tuple[list[int], int] | None:
        """The id-order positions of a page (``limit`` after ``offset``) of the
        features meeting ``box`` (all of them when None), ordered by id, and
        how many meet it in all; None when more than ``most`` features could."""
        if box is None:
            total = len(self.ids)
            return list(range(min(offset, total), min(offset + limit, total))), total
        west, south, _, north = box
        lo, hi = self.candidates(box)
        if most is not None and hi - lo > most:
            return None
        inside = (
            (self._maxx[lo:hi] >= west)
            & (self._maxy[lo:hi] >= south)
            & (self._miny[lo:hi] <= north)
        )
        # The slice's west edges are <= east by construction.
        ranks = self._rank[lo:hi][inside]
        total = int(ranks.size)
        end = offset + limit
        if offset >= total:
            return [], total
        if end < total:
            ranks = np.partition(ranks, end - 1)[:end]
        ranks.sort()
        return ranks[offset:end].tolist(), total


class FeatureServing:
    """The finished answers of one feature and the bbox pages of point layers,
    over one store (see the module's docstring). Thread-safe."""

    def __init__(
        self,
        store: Store,
        *,
        item_bytes: int = ITEM_BYTES,
        fragment_bytes: int = FRAGMENT_BYTES,
    ):
        self.store = store
        #: (change token, layer versions) read after that token; None: unknown.
        self._known: tuple[int, dict[str, int]] | None = None
        self._items: BoundedCache[ItemAnswer] = BoundedCache(item_bytes, lambda a: len(a.body))
        self._fragments: BoundedCache[bytes] = BoundedCache(fragment_bytes, len)
        self._indexes: dict[str, PointIndex] = {}
        self._building = threading.Lock()  # one index read at a time

    # -- freshness ----------------------------------------------------------------

    def versions_now(self) -> dict[str, int] | None:
        """The layer versions, when the change token says they are the ones
        known (memory only); None when only the store can tell. Only a token
        that moves at commit is trusted: a client that wrote through one
        worker and reads through another must get its own write, as it did
        when every read went to the store."""
        if not self.store.token_moves_at_commit:
            return None
        token = self.store.change_token()
        known = self._known
        if token is None or known is None or known[0] != token:
            return None
        return known[1]

    def versions(self) -> dict[str, int]:
        """The layer versions read from the store (in a thread), remembered
        under the change token read before them."""
        token = self.store.change_token()
        versions = self.store.layer_versions()
        if token is not None:
            self._known = (token, versions)
        return versions

    # -- one feature --------------------------------------------------------------

    def cached_item(self, layer_id: str, feature_id: str, variant: Hashable) -> ItemAnswer | None:
        """The answer made for this feature and ``variant`` (its CRS, base
        URL...) if it is current, from memory; else None."""
        versions = self.versions_now()
        if versions is None:
            return None
        return self._items.get((layer_id, versions.get(layer_id, 0), feature_id, variant))

    def item(
        self,
        layer_id: str,
        feature_id: str,
        variant: Hashable,
        render: Callable[[StoredFeature], bytes],
    ) -> ItemAnswer:
        """The answer for this feature: the cached one if the store's layer
        version says it is current, else ``render(store.get(...))``, kept.
        Raises ``FeatureNotFound`` as ``Store.get`` does."""
        versions = self.versions()
        key = (layer_id, versions.get(layer_id, 0), feature_id, variant)
        answer = self._items.get(key)
        if answer is None:
            # Read after the versions: a write in between makes this entry
            # newer than its key, never older, and the next look moves on.
            feature = self.store.get(layer_id, feature_id)
            answer = ItemAnswer(render(feature), feature.etag)
            self._items.put(key, answer)
        return answer

    # -- bbox pages ---------------------------------------------------------------

    def cached_page(
        self, layer_id: str, box: BBox | None, limit: int, offset: int, crs: CrsReference
    ) -> FeaturePage | None:
        """A page of a point layer's features meeting ``box``, ordered by id,
        from memory; None when the index or a feature is not at hand (or the
        box holds too many candidates to sort on the event loop)."""
        versions = self.versions_now()
        if versions is None:
            return None
        index = self._indexes.get(layer_id)
        if index is None or index.version != versions.get(layer_id, 0):
            return None
        found = index.page(box, limit, offset, most=LOOP_CANDIDATES)
        if found is None:
            return None
        ranks, matched = found
        fragments = []
        for rank in ranks:
            fragment = self._fragments.get((layer_id, index.version, index.ids[rank], crs))
            if fragment is None:
                return None
            fragments.append(fragment)
        return FeaturePage(fragments, matched)

    def page(
        self, layer_id: str, box: BBox | None, limit: int, offset: int, crs: CrsReference
    ) -> FeaturePage | None:
        """``cached_page`` after reading what is missing from the store (in a
        thread). None when the store changed while it was read: then the
        caller asks ``Store.query``."""
        index = self._index(layer_id, self.versions().get(layer_id, 0))
        ranks, matched = index.page(box, limit, offset)  # type: ignore[misc]
        keys = [(layer_id, index.version, index.ids[rank], crs) for rank in ranks]
        found = {key: self._fragments.get(key) for key in keys}
        missing = [rank for rank, key in zip(ranks, keys, strict=True) if found[key] is None]
        if missing:
            found.update(self._read_blocks(layer_id, index, missing, crs))
        if any(found.get(key) is None for key in keys):
            return None  # changed since the index was read
        return FeaturePage([found[key] for key in keys], matched)  # type: ignore[misc]

    def _read_blocks(
        self, layer_id: str, index: PointIndex, ranks: list[int], crs: CrsReference
    ) -> dict[Hashable, bytes]:
        """The fragments of the ``FRAGMENT_BLOCK`` features (by id) around each
        of ``ranks``, read in one go and kept. First pages are asked most, and
        they hold the lowest ids of their box: whole blocks warm the cache in
        tens of reads where single features take hundreds. A feature whose
        revision is not the index's is left out (the store changed meanwhile)."""
        blocks = sorted({rank // FRAGMENT_BLOCK for rank in ranks})
        wanted = [
            rank
            for block in blocks
            for rank in range(
                block * FRAGMENT_BLOCK, min(len(index.ids), (block + 1) * FRAGMENT_BLOCK)
            )
        ]
        features = self.store.get_many(layer_id, [index.ids[rank] for rank in wanted])
        current = [
            feature
            for rank in wanted
            if (feature := features.get(index.ids[rank])) is not None
            and feature.revision == int(index.revisions[rank])
        ]
        made = {}
        for feature, fragment in zip(current, feature_fragments(current, crs), strict=True):
            key = (layer_id, index.version, feature.id, crs)
            made[key] = fragment
            self._fragments.put(key, fragment)
        return made

    def _index(self, layer_id: str, version: int) -> PointIndex:
        index = self._indexes.get(layer_id)
        if index is not None and index.version == version:
            return index
        with self._building:
            index = self._indexes.get(layer_id)
            if index is None or index.version != version:
                # Read at ``version`` or later: a later one has moved the
                # token, and the next request reads the versions again.
                index = PointIndex(version, self.store.envelopes(layer_id))
                self._indexes[layer_id] = index
        return index


class BoundedCache(Generic[V]):
    """A least-recently-used map bounded by the bytes its values hold (one
    feature may carry thousands of characters of text: a count of entries
    would bound nothing). Thread-safe; its lock is held for an instant."""

    def __init__(self, most_bytes: int, size: Callable[[V], int]):
        self._entries: OrderedDict[Hashable, V] = OrderedDict()
        self._most = most_bytes
        self._size = size
        self._bytes = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def bytes(self) -> int:
        return self._bytes

    def get(self, key: Hashable) -> V | None:
        with self._lock:
            value = self._entries.get(key)
            if value is not None:
                self._entries.move_to_end(key)
            return value

    def put(self, key: Hashable, value: V) -> None:
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= self._size(old)
            self._entries[key] = value
            self._bytes += self._size(value)
            while self._bytes > self._most and len(self._entries) > 1:
                _, dropped = self._entries.popitem(last=False)
                self._bytes -= self._size(dropped)
