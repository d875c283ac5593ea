"""Datasets: synthetic generator, real-data loaders (counts from shared/data/README.md), split,
candidates, error messages."""
from __future__ import annotations

import numpy as np
import pytest

from pimcast.models import datasets as D

_LOADED: dict = {}


def _load(name, root):
    """Each real dataset is parsed once per test session."""
    if name not in _LOADED:
        _LOADED[name] = D.load_dataset(name, data_root=root)
    return _LOADED[name]


@pytest.fixture(scope="module")
def synth():
    return D.generate_synthetic(num_users=200, num_items=150, seed=3)


def test_synthetic_is_seeded_and_well_formed(synth):
    again = D.generate_synthetic(num_users=200, num_items=150, seed=3)
    other = D.generate_synthetic(num_users=200, num_items=150, seed=4)
    assert all(np.array_equal(a, b) for a, b in zip(synth.sequences, again.sequences))
    assert synth.titles == again.titles
    assert not all(np.array_equal(a, b) for a, b in zip(synth.sequences, other.sequences))
    assert synth.num_users == 200 and synth.num_items == 150
    assert synth.titles[0] == "" and len(set(synth.titles[1:])) == 150
    for s in synth.sequences:
        assert len(set(s.tolist())) == len(s)  # no repeats
        assert s.min() >= 1 and s.max() <= 150


def test_synthetic_titles_are_not_substrings_of_each_other(synth):
    titles = synth.titles[1:]
    for a in titles:
        assert sum(a in b for b in titles) == 1


def test_synthetic_has_zipf_popularity_and_transitions(synth):
    counts = np.sort(synth.item_counts()[1:])[::-1]
    assert counts[:15].sum() > 3 * counts[-15:].sum()
    # next-item structure: the most frequent successor of an item explains far more than 1/N
    pairs: dict[int, dict[int, int]] = {}
    for s in synth.sequences:
        for a, b in zip(s[:-1].tolist(), s[1:].tolist()):
            pairs.setdefault(a, {}).setdefault(b, 0)
            pairs[a][b] += 1
    top = sum(max(d.values()) for d in pairs.values())
    total = sum(sum(d.values()) for d in pairs.values())
    assert top / total > 0.2


def test_leave_one_out_and_candidates(synth):
    sp = synth.split()
    assert len(sp) == synth.num_users
    u = 5
    full = synth.sequences[u]
    assert np.array_equal(sp.history(u, "train"), full[:-2])
    assert np.array_equal(sp.history(u, "test"), full[:-1])
    assert sp.target(u, "valid") == full[-2] and sp.target(u, "test") == full[-1]
    c1 = D.sample_candidates(sp, "test", seed=7)
    c2 = D.sample_candidates(sp, "test", seed=7)
    c3 = D.sample_candidates(sp, "test", seed=8)
    assert c1.shape == (synth.num_users, 20)
    assert np.array_equal(c1, c2) and not np.array_equal(c1, c3)
    assert np.array_equal(c1[:, 0], sp.test_target)
    for k in range(len(sp)):
        seen = set(sp.full_sequence(k).tolist())
        negs = c1[k, 1:].tolist()
        assert len(set(negs)) == 19 and not seen & set(negs)
    cv = D.sample_candidates(sp, "valid", seed=7, users=[0, 1])
    assert cv.shape == (2, 20) and np.array_equal(cv[:, 0], sp.valid_target[:2])


def test_filters_and_cold_items(synth):
    f = synth.filter_users(30)
    assert all(len(s) >= 30 for s in f.sequences) and 0 < f.num_users < synth.num_users
    cold = synth.cold_items(0.35)
    counts = synth.item_counts()
    assert len(cold) == round(0.35 * 150)
    warm = np.setdiff1d(np.arange(1, 151), cold)
    assert counts[cold].max() <= counts[warm].min()


@pytest.mark.parametrize("name, users, items, interactions", [
    ("ml-100k", 943, 1682, 100_000),
    ("ml-1m-subset", 838, 3255, 51_623),
    ("amazon-scientific", 8442, 4385, 59_384),
    ("games-6k", 50_546, 16_859, 440_264),
])
def test_real_dataset_counts(shared_data, name, users, items, interactions):
    ds = _load(name, shared_data)
    assert (ds.num_users, ds.num_items, ds.num_interactions) == (users, items, interactions)
    assert ds.titles[0] == "" and all(ds.titles[1:])


def test_ml100k_order_and_titles(shared_data):
    ds = _load("ml-100k", shared_data)
    assert ds.titles[1] == "Toy Story (1995)"
    # rebuild user 1's order independently: (timestamp, item id)
    rows = [tuple(map(int, line.split("\t"))) for line in
            (shared_data / "ml-100k" / "u.data").read_text().splitlines()]
    mine = sorted((ts, i) for u, i, _, ts in rows if u == 1)
    u = ds.user_ids.index(1)
    assert [ds.item_ids[k] for k in ds.sequences[u]] == [i for _, i in mine]
    assert any("é" in t or "è" in t for t in ds.titles)  # Latin-1 decoded


def test_games_titles_unescaped(shared_data):
    ds = _load("games-6k", shared_data)
    t = ds.titles[ds.item_ids.index(11)]
    assert t == "Phantasy Star Online, Episode I & II"
    assert not any("&amp;" in x or "&rsquo;" in x for x in ds.titles)
    # first user: the test row's history + target
    assert [ds.item_ids[k] for k in ds.sequences[0]] == list(range(15))


def test_scientific_texts(shared_data):
    ds = _load("amazon-scientific", shared_data)
    assert ds.titles[1].startswith("eSUN Bronze filament")
    assert "Industrial & Scientific" not in ds.titles[1]
    assert "Industrial & Scientific" in ds.texts[1]


def test_sasrec_txt_and_errors(tmp_path):
    f = tmp_path / "toy.txt"
    f.write_text("1 10\n1 11\n2 11\n1 12\n2 13\n2 10\n")
    ds = D.load_sasrec_txt(f)
    assert ds.num_items == 4 and ds.item_ids == [None, 10, 11, 12, 13]
    assert [s.tolist() for s in ds.sequences] == [[1, 2, 3], [2, 4, 1]]
    assert D.load_dataset(f).num_interactions == 6

    bad = tmp_path / "bad.txt"
    bad.write_text("1 10\n1 x\n")
    with pytest.raises(D.DatasetError, match=r"bad\.txt:2: item 'x'"):
        D.load_sasrec_txt(bad)
    with pytest.raises(D.DatasetError, match="missing.txt: file not found"):
        D.load_sasrec_txt(tmp_path / "missing.txt")

    ml = tmp_path / "ml"
    ml.mkdir()
    (ml / "u.item").write_text("1|A (1990)|x\n", encoding="latin-1")
    (ml / "u.data").write_text("1\t1\t5\t100\n1\t1\t5\n")
    with pytest.raises(D.DatasetError, match=r"u\.data:2: expected 4 tab-separated"):
        D.load_movielens_100k(ml)
    (ml / "u.item").unlink()
    with pytest.raises(D.DatasetError, match=r"u\.item: file not found"):
        D.load_movielens_100k(ml)
    with pytest.raises(D.DatasetError, match="no such dataset"):
        D.load_dataset(tmp_path / "nothing")


def test_movielens_1m_ratings_dat_format(tmp_path):
    (tmp_path / "movies.dat").write_bytes("1::Am\xe9lie (2001)::Comedy|Romance\n2::Heat (1995)::Action\n"
                                          "3::Up (2009)::Animation\n".encode("latin-1"))
    (tmp_path / "ratings.dat").write_text("7::2::5::200\n7::1::3::100\n7::3::4::100\n9::3::2::50\n")
    ds = D.load_dataset(tmp_path)
    assert ds.name == "ml-1m" and ds.titles[1:] == ["Amélie (2001)", "Heat (1995)", "Up (2009)"]
    assert [s.tolist() for s in ds.sequences] == [[1, 3, 2], [3]]  # (timestamp, movie id) order
    assert ds.texts[1] == "Amélie (2001). Comedy, Romance."
    pos = D.load_movielens_1m(tmp_path, positive_only=True)
    assert pos.num_interactions == 2
    (tmp_path / "ratings.dat").write_text("7::2::5\n")
    with pytest.raises(D.DatasetError, match=r"ratings\.dat:1: expected"):
        D.load_movielens_1m(tmp_path)


def test_ml1m_subset_positive_only(shared_data):
    ds = D.load_movielens_1m(shared_data / "ml-1m-subset", positive_only=True)
    assert 0 < ds.num_interactions < 51_623 and ds.titles[ds.item_ids.index(318)].startswith("Shawshank")
