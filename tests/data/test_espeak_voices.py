"""espeak: voices for av_digits: names parsed, digits spoken in the voice's language, clear errors."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from lifelong.data import espeak_voices
from lifelong.data.av_digits import SAMPLE_RATE, SOUNDS_ROOT, load_voice
from lifelong.data.espeak_voices import parse_voice
from lifelong.errors import DataError

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="apt package espeak-ng is not installed")


def test_voice_names_parse_with_defaults():
    assert parse_voice("espeak:en") == ("en", None, 160, 50)
    assert parse_voice("espeak:fr+f3/150") == ("fr", "f3", 150, 50)
    assert parse_voice("espeak:es+m2/140/70") == ("es", "m2", 140, 70)
    for bad in ("espeak:", "espeak:en/fast", "espeak:en/150/70/1", "espeak:en/20", "espeak:en/150/120"):
        with pytest.raises(ValueError, match="espeak:"):
            parse_voice(bad)


@needs_espeak
def test_digits_are_spoken_by_distinct_voices_at_8_khz():
    male = load_voice(SOUNDS_ROOT, "espeak:en+m1")
    female = load_voice(SOUNDS_ROOT, "espeak:en+f2/160/80")
    assert len(male) == len(female) == 10
    assert all(0.2 < len(w) / SAMPLE_RATE < 1.5 and np.abs(w).max() <= 1.0 for w in male + female)
    assert all(w.dtype == np.float32 for w in male)
    # another voice or digit is another waveform; the same voice renders the same waveform again
    assert not np.array_equal(male[7][: len(female[7])], female[7][: len(male[7])])
    assert len({len(w) for w in male}) > 3
    assert all(np.array_equal(a, b) for a, b in zip(male, load_voice(SOUNDS_ROOT, "espeak:en+m1"), strict=True))


@needs_espeak
def test_the_numeral_is_read_in_the_voice_language():
    # "7" in French ("sept", one syllable) is shorter than in Spanish ("siete") at the same rate
    french = load_voice(SOUNDS_ROOT, "espeak:fr/160")[7]
    spanish = load_voice(SOUNDS_ROOT, "espeak:es/160")[7]
    assert len(french) < len(spanish)


@needs_espeak
def test_unknown_language_or_variant_names_the_listing():
    with pytest.raises(DataError, match="espeak-ng --voices"):
        load_voice(SOUNDS_ROOT, "espeak:xx")
    with pytest.raises(DataError, match="--voices=variant"):
        load_voice(SOUNDS_ROOT, "espeak:en+nosuchvoice")


def test_missing_program_names_the_package(monkeypatch):
    monkeypatch.setattr(espeak_voices.shutil, "which", lambda name: None)
    espeak_voices.espeak_digits.cache_clear()
    with pytest.raises(DataError, match="apt-get install -y espeak-ng"):
        espeak_voices.espeak_digits("espeak:de")
