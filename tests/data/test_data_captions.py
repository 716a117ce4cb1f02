"""Captions say the facts of the arrangement in several phrasings."""

from __future__ import annotations

import numpy as np

from cadenza.data.captions import caption_from_filename, describe, key_name, provenance, tempo_word


def test_tempo_words_and_key_names() -> None:
    assert [tempo_word(b) for b in (60, 80, 100, 130, 170)] == ["largo", "andante", "moderato", "allegro", "presto"]
    assert key_name(1, "major") == "Db major"
    assert key_name(1, "minor") == "C# minor"
    assert key_name(2, "dorian") == "D dorian"


def test_provenance_from_collection_and_abc_fields() -> None:
    p = provenance("essenFolksong", {"O": "Asien, China, Shanbei", "R": "Xiaodiao]"})
    assert (p.origin, p.genre) == ("Chinese", "folk ditty")
    p = provenance("essenFolksong", {"O": "Europa, Mitteleuropa, Deutschland", "R": "Kinder -, Wiegen - Lied"})
    assert (p.origin, p.genre) == ("German", "lullaby")
    assert provenance("oneills1850", {"R": "double jig"}).genre == "double jig"
    p = provenance("bach", None)
    assert (p.genre, p.composer) == ("chorale", "Bach")
    assert provenance("unknownCollection", None, "Someone, X").composer == "Someone"


def test_describe_mentions_every_fact_in_every_full_sentence() -> None:
    prov = provenance("oneills1850", {"R": "reel"})
    caps, tags = describe(prov, ["flute", "acoustic bass"], 132.4, 7, "major", "4/4", "swelling", "backbeat", np.random.default_rng(0))
    assert len(caps) == 5 and len(set(caps)) == 5
    for c in caps[:2]:
        assert "G major" in c and "132" in c and "flute" in c.lower() and "4/4" in c
    assert "allegro" in caps[0] and "drum" in caps[0] and "Irish reel" in caps[0]
    assert {"Irish", "reel", "flute", "acoustic bass", "allegro", "drums", "major"} <= set(tags)
    slow_minor, _ = describe(prov, ["cello"], 60, 9, "minor", "3/4", "steady", None, np.random.default_rng(0))
    assert any(m in slow_minor[0] for m in ("sad", "melancholic", "somber", "mournful", "solemn", "haunting"))
    assert "drum" not in slow_minor[0]


def test_caption_from_filename() -> None:
    assert caption_from_filename("my_song-take2") == "my song take2"
    assert caption_from_filename("___") == "music"


def test_the_short_caption_names_the_ensemble_and_changes_nothing_else() -> None:
    """The instrument-first caption says "a string quartet" where the arrangement is one; it draws no random numbers."""
    prov = provenance("haydn", None)
    args = (prov, ["violin", "viola", "cello"], 100.0, 0, "major", "4/4", "steady", None)
    plain, plain_tags = describe(*args, np.random.default_rng(3))
    quartet, quartet_tags = describe(*args, np.random.default_rng(3), ensemble="string quartet")
    assert quartet[:4] == plain[:4]  # the long captions (and the eval's prompts, the first one) are untouched
    assert quartet[4].endswith("played on a string quartet.") and "violin, viola and cello" in plain[4]
    assert "string quartet" in quartet_tags and "string quartet" not in plain_tags
    rng_a, rng_b = np.random.default_rng(5), np.random.default_rng(5)
    describe(*args, rng_a, ensemble="brass")
    describe(*args, rng_b)
    assert rng_a.random() == rng_b.random()  # the same draws: later choices of a build do not shift
    assert describe(*args, np.random.default_rng(0), ensemble="brass")[0][4].endswith("a brass ensemble.")
