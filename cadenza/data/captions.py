"""Captions and tags for rendered clips, from the score's metadata and the arrangement.

Every clip gets several phrasings of the same facts (a full sentence, a shorter sentence,
a mood-first one and a comma-separated tag list), so a text encoder sees the words in
different orders; ``caption`` in the manifest is the first. Facts used: instruments, tempo
word and BPM, key and mode, meter, mood words from tempo/mode/dynamics, drums, and the
origin, genre or composer implied by the corpus collection and the ABC header fields.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cadenza.data.score import MINOR_LIKE

MAJOR_NAMES = ("C", "Db", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
MINOR_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "G#", "A", "Bb", "B")

# collection -> (genre, origin or era, composer)
COLLECTIONS: dict[str, tuple[str, str | None, str | None]] = {
    "essenFolksong": ("folk song", "German", None),
    "oneills1850": ("folk tune", "Irish", None),
    "ryansMammoth": ("fiddle tune", "traditional", None),
    "airdsAirs": ("air", "Scottish", None),
    "miscFolk": ("folk tune", "traditional", None),
    "nottingham-dataset": ("folk tune", "English", None),
    "bach": ("chorale", "Baroque", "Bach"),
    "cpebach": ("keyboard piece", "Classical", "C. P. E. Bach"),
    "handel": ("aria", "Baroque", "Handel"),
    "corelli": ("trio sonata", "Baroque", "Corelli"),
    "palestrina": ("sacred polyphony", "Renaissance", "Palestrina"),
    "josquin": ("motet", "Renaissance", "Josquin des Prez"),
    "lusitano": ("madrigal", "Renaissance", "Lusitano"),
    "monteverdi": ("madrigal", "Renaissance", "Monteverdi"),
    "trecento": ("song", "medieval Italian", None),
    "ciconia": ("motet", "medieval", "Ciconia"),
    "luca": ("chant", "medieval", None),
    "beethoven": ("quartet movement", "Classical", "Beethoven"),
    "mozart": ("quartet movement", "Classical", "Mozart"),
    "haydn": ("quartet movement", "Classical", "Haydn"),
    "weber": ("concertino", "Romantic", "Weber"),
    "schubert": ("lied", "Romantic", "Schubert"),
    "schumann_robert": ("chamber piece", "Romantic", "Robert Schumann"),
    "schumann_clara": ("piano piece", "Romantic", "Clara Schumann"),
    "chopin": ("mazurka", "Romantic", "Chopin"),
    "verdi": ("opera aria", "Romantic", "Verdi"),
    "beach": ("piano piece", "Romantic", "Amy Beach"),
    "liliuokalani": ("song", "Hawaiian", "Liliuokalani"),
    "joplin": ("ragtime", "American", "Scott Joplin"),
    "johnson_j_r": ("hymn", "American", None),
    "leadSheet": ("popular song", "American", None),
    "schoenberg": ("piano piece", "modernist", "Schoenberg"),
    "webern": ("choral piece", "modernist", "Webern"),
}
# Essen origin field (German place names) -> adjective
ESSEN_ORIGINS = (
    (("China", "Asien", "Shanbei", "Hequ", "Yunnan", "Taiwan"), "Chinese"), (("Luxemburg",), "Luxembourgish"),
    (("Lothringen",), "Lorraine"), (("Elsass",), "Alsatian"), (("Irland",), "Irish"),
    (("Niederlande", "flaemisch"), "Dutch"), (("Schweiz",), "Swiss"), (("Oesterreich", "Tirol", "Steiermark"), "Austrian"),
    (("Ungarn",), "Hungarian"), (("Schweden",), "Swedish"), (("Frankreich",), "French"), (("Boehmen",), "Bohemian"),
    (("Polen",), "Polish"), (("Russland",), "Russian"), (("Daenemark",), "Danish"),
)
ESSEN_GENRES = (  # keyword in the R: field -> English genre
    ("wiegen", "lullaby"), ("kinder", "children's song"), ("trink", "drinking song"), ("tanz", "dance song"),
    ("hochzeit", "wedding song"), ("abschied", "farewell song"), ("jaeger", "hunting song"), ("soldaten", "soldier's song"),
    ("kriegs", "soldier's song"), ("geistlich", "sacred song"), ("religi", "sacred song"), ("scherz", "humorous song"),
    ("liebe", "love song"), ("ballade", "ballad"), ("romanze", "ballad"), ("xiaodiao", "folk ditty"),
    ("shange", "mountain song"),
)
TUNE_TYPES = ("reel", "slip jig", "slipjig", "double jig", "jig", "hornpipe", "strathspey", "clog", "air", "polka", "march", "waltz", "set dance")

MOODS = {
    ("fast", "major"): ("cheerful", "bright", "energetic", "joyful", "playful", "lively"),
    ("fast", "minor"): ("dramatic", "urgent", "restless", "driving", "intense", "fiery"),
    ("mid", "major"): ("warm", "graceful", "pleasant", "lighthearted", "flowing", "sunny"),
    ("mid", "minor"): ("wistful", "dark", "brooding", "yearning", "mysterious", "pensive"),
    ("slow", "major"): ("calm", "peaceful", "gentle", "serene", "tender", "dreamy"),
    ("slow", "minor"): ("sad", "melancholic", "somber", "mournful", "solemn", "haunting"),
}
DYNAMICS_WORDS = {
    "steady": "at an even level",
    "terraced": "with sudden changes between loud and soft",
    "swelling": "with swelling dynamics",
    "building": "with repeated crescendos",
    "fading": "with repeated decrescendos",
    "varied": "with varied dynamics",
}
DRUM_WORDS = {"backbeat": "a drum kit", "light": "light percussion", "four-on-the-floor": "a steady dance beat"}
# the arranger's named ensembles (``arrange.ENSEMBLES``) as a listener would say them; the others are
# named by their instruments ("piano", "organ", "harpsichord") or are no ensemble ("mixed")
ENSEMBLE_WORDS = {
    "string quartet": "a string quartet", "string orchestra": "a string orchestra", "choir": "a choir",
    "brass": "a brass ensemble", "woodwinds": "a woodwind ensemble", "synths": "synthesizers", "guitars": "guitars",
}


def tempo_word(bpm: float) -> str:
    """Italian tempo marking for a BPM (in the meter's beat)."""
    if bpm < 70:
        return "largo"
    if bpm < 92:
        return "andante"
    if bpm < 112:
        return "moderato"
    if bpm < 140:
        return "allegro"
    return "presto"


def key_name(tonic_pc: int, mode: str) -> str:
    """'G major', 'F# minor', 'D dorian'."""
    minor = mode in MINOR_LIKE
    tonic = (MINOR_NAMES if minor else MAJOR_NAMES)[int(tonic_pc) % 12]
    return f"{tonic} {mode}"


def join_words(words: list[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    if len(words) <= 1:
        return "".join(words)
    return ", ".join(words[:-1]) + " and " + words[-1]


@dataclass
class Provenance:
    """Where a work comes from, in words."""

    genre: str
    origin: str | None
    composer: str | None


def provenance(collection: str, abc: dict[str, str] | None, composer: str | None = None) -> Provenance:
    """Genre, origin/era and composer from the collection name and the ABC header fields."""
    genre, origin, known = COLLECTIONS.get(collection, ("piece", None, None))
    abc = abc or {}
    if collection == "essenFolksong":
        where = abc.get("O", "")
        origin = next((adj for keys, adj in ESSEN_ORIGINS if any(k in where for k in keys)), "German" if where else "European")
        rtype = abc.get("R", "").lower()
        genre = next((g for k, g in ESSEN_GENRES if k in rtype), "folk song")
    elif collection in ("oneills1850", "ryansMammoth", "airdsAirs", "miscFolk", "nottingham-dataset"):
        rtype = abc.get("R", "").lower()
        kind = next((t for t in TUNE_TYPES if t in rtype), None)
        if kind:
            genre = {"slipjig": "slip jig"}.get(kind, kind)
        if collection == "ryansMammoth" and "SCOTCH" in abc.get("O", "").upper():
            origin = "Scottish"
    name = known
    if name is None and composer and collection not in ("essenFolksong", "oneills1850", "ryansMammoth", "airdsAirs"):
        name = composer.split(",")[0].strip() or None
    return Provenance(genre=genre, origin=origin, composer=name)


def describe(
    prov: Provenance,
    instruments: list[str],
    bpm: float,
    tonic_pc: int,
    mode: str,
    meter: str,
    dynamics_style: str,
    drum_style: str | None,
    rng: np.random.Generator,
    ensemble: str | None = None,
) -> tuple[list[str], list[str]]:
    """(captions, tags) for one clip. The facts are fixed; ``rng`` only picks words.

    The last caption is short and instrument-first, the way people type prompts ("A warm air
    played on a string quartet."), and names the ensemble when the arrangement is one: the long
    captions list instruments only, so "string quartet" or "brass ensemble" never reached the
    text encoder. It draws nothing from ``rng``, so the other captions and every later random
    choice of a build stay as they were.
    """
    word = tempo_word(bpm)
    speed = "slow" if word in ("largo", "andante") else "mid" if word == "moderato" else "fast"
    minor = mode in MINOR_LIKE
    pool = MOODS[(speed, "minor" if minor else "major")]
    moods = [str(m) for m in rng.choice(pool, size=2, replace=False)]
    key = key_name(tonic_pc, mode)
    bpm_i = int(round(bpm))
    what = " ".join(x for x in (prov.origin, prov.genre) if x)
    if prov.composer:
        what = f"{prov.genre} by {prov.composer}" if prov.origin is None else f"{prov.origin} {prov.genre} by {prov.composer}"
    inst = join_words(instruments)
    drums = f" with {DRUM_WORDS[drum_style]}" if drum_style else ""
    dyn = DYNAMICS_WORDS.get(dynamics_style, "")
    article = "An" if moods[0][0] in "aeiou" else "A"
    captions = [
        f"{article} {moods[0]} {what} played on {inst}{drums}, {word} at {bpm_i} BPM in {key}, {meter} time, {dyn}.",
        f"{inst[0].upper() + inst[1:]} {'play' if len(instruments) > 1 else 'plays'} a {moods[1]} {prov.genre} in {key} ({meter}, {bpm_i} BPM){drums}.",
        f"{moods[0].capitalize()} and {moods[1]} {'minor' if minor else 'major'}-key music, {word}, {dyn}: {what} for {inst}.",
        ", ".join([what, *instruments, word, f"{bpm_i} bpm", key, meter, *moods] + (["drums"] if drum_style else [])),
        f"{article} {moods[0]} {prov.genre} played on {ENSEMBLE_WORDS.get(ensemble or '', inst)}{drums}.",
    ]
    tags = sorted(
        {prov.genre, word, "minor" if minor else "major", mode, meter, *instruments, *moods, dynamics_style}
        | ({prov.origin} if prov.origin else set())
        | ({prov.composer} if prov.composer else set())
        | ({"drums"} if drum_style else {"no drums"})
        | ({ENSEMBLE_WORDS[ensemble].split(" ", 1)[-1]} if ensemble in ENSEMBLE_WORDS else set())
    )
    return captions, tags


def caption_from_filename(stem: str) -> str:
    """'my_song-take2' -> 'my song take2' (the caption of last resort for user audio)."""
    import re

    words = re.sub(r"[_\-.]+", " ", stem).strip()
    return words or "music"
