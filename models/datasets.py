"""Sequential-recommendation datasets: one :class:`SequenceDataset` type, loaders, splits, candidates.

Every loader returns a :class:`SequenceDataset` whose item ids are remapped to ``1..N`` (``0`` is the
padding id used by SASRec) in ascending order of the original item id, and whose users are kept in
ascending order of the original user id (file order for formats without user ids). Sequences are
ordered chronologically with a fixed tie-break, documented per loader.

Loaders (all read from a path; the data is never copied into the repository):

=========================  ===========================================================================
``load_movielens_100k``    ``u.data`` (``user\\titem\\trating\\tts``) + ``u.item`` (Latin-1, ``|``-separated);
                           order by (timestamp, item id) — 75 % of ML-100K ratings tie on timestamp.
``load_movielens_1m``      ``ratings.dat`` (``u::i::r::ts``) + ``movies.dat`` (Latin-1), or the
                           ``collm_ml1m_subset.tsv`` subset; order by (timestamp, movie id).
``load_amazon_scientific`` ``scientific_sequences.tsv`` + ``scientific_items.tsv`` (file order).
``load_games6k``           ``Games-6k.item`` (HTML entities unescaped) + ``Games-6k.test.inter``;
                           sequence = history + target of each test row.
``load_sasrec_txt``        SASRec ``user item`` lines (file order within each user).
``load_dataset``           dispatch by name (``synthetic``, ``ml-100k`` …) or by path contents.
=========================  ===========================================================================

Split (leave-one-out, as in SASRec/A-LLMRec): for a sequence ``s`` of length ``n ≥ 3`` the test
target is ``s[n-1]`` (input ``s[:n-1]``), the validation target ``s[n-2]`` (input ``s[:n-2]``), and
training uses ``s[:n-2]``. Candidates: the target plus 19 negatives drawn uniformly without
replacement from the items *not* in the user's whole sequence, from a seeded generator.

Errors: a missing or corrupt file raises :class:`DatasetError` naming the file (and the line).
"""
from __future__ import annotations

import html
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

__all__ = [
    "DatasetError",
    "SequenceDataset",
    "Split",
    "leave_one_out",
    "sample_candidates",
    "generate_synthetic",
    "load_movielens_100k",
    "load_movielens_1m",
    "load_amazon_scientific",
    "load_games6k",
    "load_sasrec_txt",
    "load_dataset",
    "DATASET_NAMES",
]


class DatasetError(ValueError):
    """A dataset file is missing or malformed; the message names the file (and line)."""


# --------------------------------------------------------------------------------------------------
# The dataset type
# --------------------------------------------------------------------------------------------------


@dataclass
class SequenceDataset:
    """Per-user chronological item sequences with item ids ``1..num_items`` (``0`` = padding).

    Members
    -------
    name : str
    sequences : list of int64 arrays, one per user, chronological.
    titles : list of str, length ``num_items + 1``; ``titles[0] == ""`` (padding).
    texts : list of str, length ``num_items + 1``; longer item text for the sentence encoder
        (defaults to the titles).
    user_ids : original user ids (or file order index), one per sequence.
    item_ids : original item id per remapped id; ``item_ids[0]`` is ``None``.
    """

    name: str
    sequences: list[np.ndarray]
    titles: list[str]
    texts: list[str] = field(default_factory=list)
    user_ids: list = field(default_factory=list)
    item_ids: list = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.texts:
            self.texts = list(self.titles)
        if not self.user_ids:
            self.user_ids = list(range(len(self.sequences)))
        if not self.item_ids:
            self.item_ids = [None] + list(range(1, len(self.titles)))
        n = len(self.titles) - 1
        if len(self.texts) != n + 1 or len(self.item_ids) != n + 1:
            raise ValueError("titles, texts and item_ids must all have num_items + 1 entries")
        if len(self.user_ids) != len(self.sequences):
            raise ValueError("user_ids must have one entry per sequence")
        self.sequences = [np.asarray(s, dtype=np.int64) for s in self.sequences]
        for u, s in enumerate(self.sequences):
            if s.size and (s.min() < 1 or s.max() > n):
                raise ValueError(f"sequence of user {self.user_ids[u]} has item ids outside 1..{n}")

    # -- statistics ---------------------------------------------------------------------------------
    @property
    def num_items(self) -> int:
        return len(self.titles) - 1

    @property
    def num_users(self) -> int:
        return len(self.sequences)

    @property
    def num_interactions(self) -> int:
        return int(sum(len(s) for s in self.sequences))

    def item_counts(self) -> np.ndarray:
        """Interactions per item id (index 0 = padding = 0)."""
        counts = np.zeros(self.num_items + 1, dtype=np.int64)
        for s in self.sequences:
            np.add.at(counts, s, 1)
        return counts

    def stats(self) -> dict:
        lens = np.array([len(s) for s in self.sequences]) if self.sequences else np.zeros(1)
        return {
            "name": self.name,
            "users": self.num_users,
            "items": self.num_items,
            "interactions": self.num_interactions,
            "items_used": int((self.item_counts()[1:] > 0).sum()),
            "mean_length": float(lens.mean()),
            "max_length": int(lens.max()),
            "min_length": int(lens.min()),
        }

    def cold_items(self, fraction: float = 0.35) -> np.ndarray:
        """The least popular ``fraction`` of item ids (ties broken by item id), as a sorted array."""
        counts = self.item_counts()[1:]
        order = np.lexsort((np.arange(1, self.num_items + 1), counts))
        k = int(round(fraction * self.num_items))
        return np.sort(order[:k] + 1)

    # -- transformations ----------------------------------------------------------------------------
    def filter_users(self, min_interactions: int) -> "SequenceDataset":
        """Keep the users with at least ``min_interactions`` interactions (item ids unchanged)."""
        keep = [u for u, s in enumerate(self.sequences) if len(s) >= min_interactions]
        return self.select_users(keep)

    def select_users(self, users: Iterable[int]) -> "SequenceDataset":
        """A dataset restricted to the given user positions (item ids and titles unchanged)."""
        users = list(users)
        return SequenceDataset(
            name=self.name,
            sequences=[self.sequences[u] for u in users],
            titles=self.titles,
            texts=self.texts,
            user_ids=[self.user_ids[u] for u in users],
            item_ids=self.item_ids,
        )

    def split(self) -> "Split":
        return leave_one_out(self)

    def __repr__(self) -> str:
        return (f"SequenceDataset({self.name!r}, users={self.num_users}, items={self.num_items}, "
                f"interactions={self.num_interactions})")


@dataclass
class Split:
    """Leave-one-out split of a :class:`SequenceDataset` (users with < 3 interactions dropped).

    ``train[u]`` is ``s[:-2]``; ``valid_target[u] = s[-2]``; ``test_target[u] = s[-1]``;
    ``users[u]`` is the position of the user in the parent dataset.
    """

    dataset: SequenceDataset
    users: np.ndarray
    train: list[np.ndarray]
    valid_target: np.ndarray
    test_target: np.ndarray

    def history(self, u: int, stage: str) -> np.ndarray:
        """Input sequence for ``stage`` in ``{"train", "valid", "test"}`` of split user ``u``.

        ``train``: ``s[:-2]`` (the model trains on next-item prediction within it);
        ``valid``: ``s[:-2]`` (predict ``s[-2]``); ``test``: ``s[:-1]`` (predict ``s[-1]``).
        """
        if stage in ("train", "valid"):
            return self.train[u]
        if stage == "test":
            return np.append(self.train[u], self.valid_target[u])
        raise ValueError(f"stage must be 'train', 'valid' or 'test', not {stage!r}")

    def target(self, u: int, stage: str) -> int:
        if stage == "valid":
            return int(self.valid_target[u])
        if stage == "test":
            return int(self.test_target[u])
        raise ValueError(f"stage must be 'valid' or 'test', not {stage!r}")

    def full_sequence(self, u: int) -> np.ndarray:
        return self.dataset.sequences[int(self.users[u])]

    def __len__(self) -> int:
        return len(self.users)


def leave_one_out(ds: SequenceDataset) -> Split:
    users = np.array([u for u, s in enumerate(ds.sequences) if len(s) >= 3], dtype=np.int64)
    seqs = [ds.sequences[u] for u in users]
    return Split(
        dataset=ds,
        users=users,
        train=[s[:-2] for s in seqs],
        valid_target=np.array([s[-2] for s in seqs], dtype=np.int64),
        test_target=np.array([s[-1] for s in seqs], dtype=np.int64),
    )


def sample_candidates(split: Split, stage: str = "test", num_negatives: int = 19, seed: int = 0,
                      users: Sequence[int] | None = None) -> np.ndarray:
    """Candidate sets ``[len(users), 1 + num_negatives]``: column 0 is the target, the rest are
    distinct negatives not in the user's whole sequence, drawn uniformly with ``seed``.

    Deterministic: the same (split, stage, seed, users) always gives the same array.
    """
    ds = split.dataset
    users = range(len(split)) if users is None else users
    rng = np.random.default_rng(seed)
    out = []
    for u in users:
        seen = set(split.full_sequence(u).tolist())
        pool_size = ds.num_items - len(seen)
        if pool_size < num_negatives:
            raise ValueError(f"user {ds.user_ids[int(split.users[u])]} has only {pool_size} unseen "
                             f"items, fewer than {num_negatives} negatives")
        negs: list[int] = []
        chosen: set[int] = set()
        while len(negs) < num_negatives:
            draw = rng.integers(1, ds.num_items + 1, size=2 * num_negatives)
            for x in draw.tolist():
                if x not in seen and x not in chosen:
                    chosen.add(x)
                    negs.append(x)
                    if len(negs) == num_negatives:
                        break
        out.append([split.target(u, stage)] + negs)
    return np.asarray(out, dtype=np.int64).reshape(-1, 1 + num_negatives)


# --------------------------------------------------------------------------------------------------
# Synthetic generator (the embedded default)
# --------------------------------------------------------------------------------------------------

_ADJ = ("Amber Ancient Arctic Autumn Blazing Blue Broken Bright Burning Calm Crimson Crystal Dark "
        "Distant Electric Emerald Endless Fading Fallen Final Forgotten Frozen Gentle Golden Gray "
        "Hidden Hollow Iron Last Lonely Lost Lunar Midnight Misty Neon Northern Pale Quiet Rapid "
        "Restless Rising Rusty Scarlet Secret Shadow Shining Silent Silver Solar Stolen Stormy "
        "Strange Velvet Violet Wandering Wild Winter Wooden").split()
_GENRE_NOUNS = {
    "space": "Comet Galaxy Nebula Orbit Planet Rocket Starship Meteor Eclipse Satellite".split(),
    "sea": "Harbor Island Lagoon Lighthouse Ocean Reef Sailor Tide Voyage Wave".split(),
    "crime": "Alibi Badge Detective Heist Informant Motive Suspect Verdict Witness Vault".split(),
    "fantasy": "Castle Dragon Dungeon Kingdom Knight Potion Sorcerer Sword Throne Wizard".split(),
    "western": "Canyon Cowboy Desert Frontier Outlaw Ranch Saloon Sheriff Stallion Wagon".split(),
    "music": "Anthem Ballad Chorus Concert Guitar Melody Piano Rhythm Symphony Tempo".split(),
    "sport": "Champion Goal Marathon Medal Racer Referee Stadium Striker Trophy Victory".split(),
    "war": "Battalion Bunker Captain Fortress General Mission Soldier Tank Trench Warship".split(),
    "family": "Birthday Garden Grandma Holiday Kitten Picnic Puppy Sister Treehouse Wedding".split(),
    "horror": "Cellar Coffin Curse Ghost Graveyard Haunting Mask Phantom Ritual Vampire".split(),
    "science": "Atom Clone Formula Genome Laboratory Machine Neuron Prototype Quantum Robot".split(),
    "travel": "Airport Bridge Caravan Compass Highway Journey Passport Railway Road Station".split(),
}


def generate_synthetic(num_users: int = 1000, num_items: int = 500, num_clusters: int = 12,
                       min_length: int = 8, max_length: int = 40, zipf_a: float = 1.1,
                       p_follow: float = 0.6, p_cluster: float = 0.3, successors: int = 2,
                       seed: int = 0) -> SequenceDataset:
    """A seeded synthetic dataset with structure a sequence model (and an LLM) can learn.

    * Items belong to ``num_clusters`` clusters (genres); popularity is Zipf(``zipf_a``) over a
      random permutation of the items.
    * Each item has ``successors`` fixed successor items in its own cluster. A user's next item is
      one of the current item's successors with probability ``p_follow``, another item of the same
      cluster (popularity-weighted) with ``p_cluster``, otherwise a globally popular item (a
      cluster switch). Items do not repeat within a sequence.
    * Titles are ``"<Adjective> <Noun> (<year>)"`` with the noun taken from the cluster's genre
      vocabulary, so the text carries the cluster. Titles are unique, and (all words capitalised,
      one fixed shape) no title is a substring of another — the LLM hit rule relies on it.
    * Lengths are uniform in ``[min_length, max_length]``.

    ~0.1 s for the defaults.
    """
    if num_items < 20 + max_length:
        raise ValueError(f"num_items must be at least max_length + 20 = {max_length + 20}, not {num_items}")
    if not 3 <= min_length <= max_length:
        raise ValueError("need 3 <= min_length <= max_length")
    if num_clusters < 1 or num_clusters > len(_GENRE_NOUNS) * 4:
        raise ValueError(f"num_clusters must be in 1..{len(_GENRE_NOUNS) * 4}, not {num_clusters}")
    rng = np.random.default_rng(seed)
    n = num_items
    ranks = rng.permutation(n)
    pop = 1.0 / (ranks + 1.0) ** zipf_a
    pop /= pop.sum()
    cluster = rng.integers(0, num_clusters, size=n)
    cluster[:num_clusters] = np.arange(num_clusters)  # every cluster non-empty
    rng.shuffle(cluster)
    members = [np.flatnonzero(cluster == c) for c in range(num_clusters)]
    member_cdf = [np.cumsum(pop[m]) / pop[m].sum() for m in members]
    cdf = np.cumsum(pop)
    cdf /= cdf[-1]

    def draw(c, members_c=None):  # inverse-CDF sampling (rng.choice(p=...) is ~50x slower)
        if members_c is None:
            return int(min(np.searchsorted(cdf, rng.random(), side="right"), n - 1))
        k = np.searchsorted(member_cdf[c], rng.random(), side="right")
        return int(members_c[min(k, len(members_c) - 1)])
    succ = np.empty((n, successors), dtype=np.int64)
    for i in range(n):
        m = members[cluster[i]]
        cand = m[m != i] if len(m) > 1 else m
        k = min(successors, len(cand))
        pick = rng.choice(cand, size=successors, replace=k < successors)
        succ[i] = pick

    # titles
    genres = list(_GENRE_NOUNS)
    used: set[str] = set()
    titles = [""]
    for i in range(n):
        c = int(cluster[i])
        nouns = _GENRE_NOUNS[genres[c % len(genres)]]
        while True:
            t = f"{_ADJ[rng.integers(len(_ADJ))]} {nouns[rng.integers(len(nouns))]} ({1950 + rng.integers(70)})"
            if t not in used:
                used.add(t)
                break
        titles.append(t)
    texts = [""] + [f"{titles[i + 1]}. A {genres[int(cluster[i]) % len(genres)]} story." for i in range(n)]

    lengths = rng.integers(min_length, max_length + 1, size=num_users)
    seqs = []
    for u in range(num_users):
        L = int(lengths[u])
        seen: set[int] = set()
        cur = draw(None)
        seq = [cur]
        seen.add(cur)
        r = rng.random(size=4 * L)
        k = 0
        while len(seq) < L:
            x = r[k % len(r)]
            k += 1
            nxt = -1
            if x < p_follow:
                for s in succ[cur]:
                    if int(s) not in seen:
                        nxt = int(s)
                        break
            if nxt < 0 and x < p_follow + p_cluster:
                c = cluster[cur]
                for _ in range(4):
                    y = draw(c, members[c])
                    if y not in seen:
                        nxt = y
                        break
            while nxt < 0:
                y = draw(None)
                if y not in seen:
                    nxt = y
            seq.append(nxt)
            seen.add(nxt)
            cur = nxt
        seqs.append(np.asarray(seq, dtype=np.int64) + 1)
    return SequenceDataset(name="synthetic", sequences=seqs, titles=titles, texts=texts,
                           user_ids=list(range(num_users)))


# --------------------------------------------------------------------------------------------------
# Loaders
# --------------------------------------------------------------------------------------------------


def _need(path: Path) -> Path:
    if not path.is_file():
        raise DatasetError(f"{path}: file not found")
    return path


def _lines(path: Path, encoding: str = "utf-8"):
    """(line number, line without newline) for non-empty lines; decoding errors name the file."""
    try:
        with open(_need(path), encoding=encoding, newline="") as f:
            for no, line in enumerate(f, 1):
                line = line.rstrip("\r\n")
                if line.strip():
                    yield no, line
    except UnicodeDecodeError as e:
        raise DatasetError(f"{path}: not valid {encoding} text ({e.reason} at byte {e.start})") from e


def _int(path: Path, no: int, text: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise DatasetError(f"{path}:{no}: {what} {text!r} is not an integer") from None


def _build(name: str, events: list[tuple], titles_by_id: dict | None, texts_by_id: dict | None = None,
           path: Path | None = None, order_users: bool = True) -> SequenceDataset:
    """events: (user, sort key..., item) tuples already in a per-user order or sortable.

    Each event tuple is ``(user, key, item)``; sequences are ordered by ``(key, item)`` when
    ``key`` is not None, else by insertion order.
    """
    per_user: dict = {}
    for user, key, item in events:
        per_user.setdefault(user, []).append((key, item))
    items = sorted({it for _, _, it in events})
    if not items:
        raise DatasetError(f"{path}: no interactions")
    remap = {it: k + 1 for k, it in enumerate(items)}
    users = sorted(per_user) if order_users else list(per_user)
    seqs = []
    for u in users:
        evs = per_user[u]
        if evs[0][0] is not None:
            evs = sorted(evs)
        seqs.append(np.array([remap[it] for _, it in evs], dtype=np.int64))
    titles = [""]
    texts = [""]
    for it in items:
        t = titles_by_id.get(it) if titles_by_id is not None else None
        titles.append(t if t is not None else f"Item {it}")
        x = texts_by_id.get(it) if texts_by_id is not None else None
        texts.append(x if x is not None else titles[-1])
    return SequenceDataset(name=name, sequences=seqs, titles=titles, texts=texts, user_ids=users,
                           item_ids=[None] + items)


def _dir(path, must_have: Sequence[str]) -> Path:
    p = Path(path)
    if not p.is_dir():
        raise DatasetError(f"{p}: dataset folder not found")
    for m in must_have:
        _need(p / m)
    return p


def load_movielens_100k(path) -> SequenceDataset:
    """MovieLens-100K from a folder holding ``u.data`` and ``u.item`` (Latin-1).

    Order: (timestamp, item id) per user. All ratings count as interactions.
    """
    p = _dir(path, ["u.data", "u.item"])
    titles: dict[int, str] = {}
    f = p / "u.item"
    for no, line in _lines(f, "latin-1"):
        parts = line.split("|")
        if len(parts) < 2:
            raise DatasetError(f"{f}:{no}: expected 'id|title|…', got {line[:60]!r}")
        titles[_int(f, no, parts[0], "item id")] = parts[1]
    events = []
    f = p / "u.data"
    for no, line in _lines(f):
        parts = line.split("\t")
        if len(parts) != 4:
            raise DatasetError(f"{f}:{no}: expected 4 tab-separated fields (user item rating ts), "
                               f"got {len(parts)}")
        u, i, _, ts = (_int(f, no, x, w) for x, w in zip(parts, ("user", "item", "rating", "timestamp")))
        if i not in titles:
            raise DatasetError(f"{f}:{no}: item {i} is not in {p / 'u.item'}")
        events.append((u, ts, i))
    return _build("ml-100k", events, titles, path=f)


def load_movielens_1m(path, positive_only: bool = False) -> SequenceDataset:
    """MovieLens-1M from a folder with ``ratings.dat`` + ``movies.dat`` (Latin-1), or the
    ``collm_ml1m_subset.tsv`` subset (``uid iid ml1m_movie_id label timestamp split title``).

    Items keep the ML-1M movie id as their original id (so titles come from ``movies.dat``).
    Order: (timestamp, movie id). ``positive_only`` keeps ratings ≥ 4 (subset: ``label == 1``).
    """
    p = Path(path)
    if not p.is_dir():
        raise DatasetError(f"{p}: dataset folder not found")
    titles: dict[int, str] = {}
    genres: dict[int, str] = {}
    movies = p / "movies.dat"
    if movies.is_file():
        for no, line in _lines(movies, "latin-1"):
            parts = line.split("::")
            if len(parts) != 3:
                raise DatasetError(f"{movies}:{no}: expected 'id::Title (Year)::Genres'")
            mid = _int(movies, no, parts[0], "movie id")
            titles[mid] = parts[1]
            genres[mid] = parts[2].replace("|", ", ")
    events = []
    ratings = p / "ratings.dat"
    subset = p / "collm_ml1m_subset.tsv"
    if ratings.is_file():
        if not titles:
            _need(movies)
        for no, line in _lines(ratings, "latin-1"):
            parts = line.split("::")
            if len(parts) != 4:
                raise DatasetError(f"{ratings}:{no}: expected 'user::movie::rating::timestamp'")
            u, i, r, ts = (_int(ratings, no, x, w) for x, w in zip(parts, ("user", "movie", "rating", "timestamp")))
            if positive_only and r < 4:
                continue
            events.append((u, ts, i))
        name, f = "ml-1m", ratings
    elif subset.is_file():
        header = True
        for no, line in _lines(subset):
            parts = line.split("\t")
            if header:
                header = False
                if parts[:3] != ["uid", "iid", "ml1m_movie_id"]:
                    raise DatasetError(f"{subset}:{no}: unexpected header {line[:60]!r}")
                continue
            if len(parts) != 7:
                raise DatasetError(f"{subset}:{no}: expected 7 tab-separated fields, got {len(parts)}")
            u = _int(subset, no, parts[0], "uid")
            mid = _int(subset, no, parts[2], "ml1m_movie_id")
            label = _int(subset, no, parts[3], "label")
            ts = _int(subset, no, parts[4], "timestamp")
            titles.setdefault(mid, parts[6])
            if positive_only and label != 1:
                continue
            events.append((u, ts, mid))
        name, f = "ml-1m-subset", subset
    else:
        raise DatasetError(f"{p}: neither ratings.dat nor collm_ml1m_subset.tsv found")
    texts = {m: f"{t}. {genres[m]}." for m, t in titles.items() if m in genres}
    return _build(name, events, titles, texts, path=f)


def _scientific_title(text: str) -> str:
    for sep in (". Industrial & Scientific", ". . "):
        k = text.find(sep)
        if k > 0:
            return text[:k]
    return text.rstrip(". ")


def load_amazon_scientific(path) -> SequenceDataset:
    """Amazon-2018 Industrial_and_Scientific (UniSRec 5-core): ``scientific_sequences.tsv``
    (``user_index reviewer_id item_index_seq``) + ``scientific_items.tsv`` (``item_index asin text``).

    Sequences keep the file's chronological order. ``texts`` is the full "title. categories.
    brand." text; ``titles`` is the part before the categories.
    """
    p = _dir(path, ["scientific_sequences.tsv", "scientific_items.tsv"])
    f = p / "scientific_items.tsv"
    titles, texts = {}, {}
    for no, line in _lines(f):
        parts = line.split("\t")
        if no == 1 and parts[0] == "item_index":
            continue
        if len(parts) != 3:
            raise DatasetError(f"{f}:{no}: expected 3 tab-separated fields (item_index asin text)")
        i = _int(f, no, parts[0], "item_index")
        texts[i] = parts[2].strip()
        titles[i] = _scientific_title(parts[2].strip())
    f = p / "scientific_sequences.tsv"
    events = []
    for no, line in _lines(f):
        parts = line.split("\t")
        if no == 1 and parts[0] == "user_index":
            continue
        if len(parts) != 3:
            raise DatasetError(f"{f}:{no}: expected 3 tab-separated fields (user_index reviewer_id items)")
        u = _int(f, no, parts[0], "user_index")
        for x in parts[2].split():
            i = _int(f, no, x, "item index")
            if i not in titles:
                raise DatasetError(f"{f}:{no}: item {i} is not in {p / 'scientific_items.tsv'}")
            events.append((u, None, i))
    return _build("amazon-scientific", events, titles, texts, path=f)


def load_games6k(path) -> SequenceDataset:
    """Amazon-2018 Video_Games "Games-6k" (LLMRank): ``Games-6k.item`` (``item_id title``, HTML
    entities unescaped) + ``Games-6k.test.inter`` (``user history target``).

    ``train.inter`` is not distributed, so each user's sequence is rebuilt as the test row's
    history followed by its target (the test row holds the whole history).
    """
    p = Path(path)
    if not p.is_dir():
        raise DatasetError(f"{p}: dataset folder not found")
    item_file = next(iter(sorted(p.glob("*.item"))), None)
    inter_file = next(iter(sorted(p.glob("*.test.inter"))), None)
    if item_file is None:
        raise DatasetError(f"{p / 'Games-6k.item'}: file not found")
    if inter_file is None:
        raise DatasetError(f"{p / 'Games-6k.test.inter'}: file not found")
    titles = {}
    for no, line in _lines(item_file):
        parts = line.split("\t")
        if no == 1 and parts[0].startswith("item_id"):
            continue
        if len(parts) != 2:
            raise DatasetError(f"{item_file}:{no}: expected 2 tab-separated fields (item_id title)")
        titles[_int(item_file, no, parts[0], "item_id")] = html.unescape(parts[1]).strip()
    events = []
    for no, line in _lines(inter_file):
        parts = line.split("\t")
        if no == 1 and parts[0].startswith("user_id"):
            continue
        if len(parts) != 3:
            raise DatasetError(f"{inter_file}:{no}: expected 3 tab-separated fields (user history target)")
        u = _int(inter_file, no, parts[0], "user_id")
        for x in parts[1].split() + [parts[2]]:
            i = _int(inter_file, no, x, "item id")
            if i not in titles:
                raise DatasetError(f"{inter_file}:{no}: item {i} is not in {item_file}")
            events.append((u, None, i))
    return _build(item_file.stem, events, titles, path=inter_file)


def load_sasrec_txt(path, titles: dict | None = None) -> SequenceDataset:
    """A SASRec ``.txt`` file: one ``user item`` pair per line, chronological within each user.

    Users are sorted ascending by user id.
    ``titles`` maps original item ids to titles (default ``"Item <id>"``).
    """
    f = _need(Path(path))
    events = []
    for no, line in _lines(f):
        parts = line.split()
        if len(parts) != 2:
            raise DatasetError(f"{f}:{no}: expected 'user item', got {line[:60]!r}")
        events.append((_int(f, no, parts[0], "user"), None, _int(f, no, parts[1], "item")))
    return _build(f.stem, events, titles, path=f)


DATASET_NAMES = ("synthetic", "ml-100k", "ml-1m", "ml-1m-subset", "amazon-scientific", "games-6k")
_SHARED_FOLDERS = {
    "ml-100k": "ml-100k",
    "ml-1m": "ml-1m-subset",
    "ml-1m-subset": "ml-1m-subset",
    "amazon-scientific": "amazon2018-scientific-unisrec",
    "games-6k": "amazon2018-games-llmrank",
}


def load_dataset(spec: str | os.PathLike = "synthetic", data_root=None, **kwargs) -> SequenceDataset:
    """Load by name (``synthetic`` or one of :data:`DATASET_NAMES`, looked up under ``data_root``,
    default ``$PIMCAST_DATA`` or ``../shared/data``) or by path (a file: SASRec ``.txt``; a folder:
    detected from the files it holds). ``kwargs`` go to the generator/loader.
    """
    s = str(spec)
    if s == "synthetic":
        return generate_synthetic(**kwargs)
    if s in _SHARED_FOLDERS:
        root = Path(data_root or os.environ.get("PIMCAST_DATA", "../shared/data"))
        p = root / _SHARED_FOLDERS[s]
    else:
        p = Path(s)
    if p.is_file():
        return load_sasrec_txt(p, **kwargs)
    if not p.is_dir():
        raise DatasetError(f"{p}: no such dataset file or folder (names: {', '.join(DATASET_NAMES)})")
    if (p / "u.data").is_file():
        return load_movielens_100k(p, **kwargs)
    if (p / "ratings.dat").is_file() or (p / "collm_ml1m_subset.tsv").is_file():
        return load_movielens_1m(p, **kwargs)
    if (p / "scientific_sequences.tsv").is_file():
        return load_amazon_scientific(p, **kwargs)
    if any(p.glob("*.test.inter")) and any(p.glob("*.item")):
        return load_games6k(p, **kwargs)
    raise DatasetError(f"{p}: no known dataset files (u.data, ratings.dat, collm_ml1m_subset.tsv, "
                       "scientific_sequences.tsv, *.item + *.test.inter)")
