"""Spoken digits rendered by ``espeak-ng``: as many synthetic voices as an init pool needs.

The asterisk prompts give one recording per digit and language, too little audio variety for an init stage
to learn to align speech with images. ``espeak-ng`` (Debian package ``espeak-ng``) speaks the digits of the
same languages with any of its voice variants (male and female voices, whisper, croak ...), at any rate and
pitch, so ``av_digits`` accepts voices named

    espeak:<language>[+<variant>][/<words per minute>[/<pitch 0-99>]]

e.g. ``espeak:en``, ``espeak:fr+f3``, ``espeak:es+m2/140/70``. The digit is given to espeak-ng as the
numeral, which it reads as the language's word ("7" -> "sept" in French). Renderings are kept in memory per
voice (ten short clips; espeak-ng is deterministic).
"""

from __future__ import annotations

import functools
import io
import shutil
import subprocess

import numpy as np

from lifelong.data.av_common import audio_module
from lifelong.errors import DataError

PREFIX = "espeak:"
INSTALL = "install it with: apt-get install -y espeak-ng"


def is_espeak_voice(voice: str) -> bool:
    """Whether ``voice`` names an espeak-ng voice (``espeak:...``)."""
    return voice.startswith(PREFIX)


def parse_voice(voice: str) -> tuple[str, str | None, int, int]:
    """``(language, variant, words per minute, pitch)`` of an ``espeak:`` voice name (defaults 160 wpm, pitch 50).

    Raises:
        ValueError: the name does not follow ``espeak:<language>[+<variant>][/<wpm>[/<pitch>]]``.

    """
    spec, *numbers = voice[len(PREFIX) :].split("/")
    language, _, variant = spec.partition("+")
    try:
        rate, pitch = [int(n) for n in numbers] + [160, 50][len(numbers) :]
    except ValueError:
        raise ValueError(f"voice {voice!r}: the rate and pitch after '/' must be integers") from None
    if not language or len(numbers) > 2 or not 80 <= rate <= 450 or not 0 <= pitch <= 99:
        raise ValueError(
            f"voice {voice!r} is not espeak:<language>[+<variant>][/<words per minute 80-450>[/<pitch 0-99>]], "
            "e.g. espeak:fr+f3/150/60"
        )
    return language, variant or None, rate, pitch


def _espeak() -> str:
    found = shutil.which("espeak-ng")
    if found is None:
        raise DataError(f"espeak: voices need the espeak-ng program, which is not installed; {INSTALL}")
    return found


@functools.cache
def variants() -> frozenset[str]:
    """The voice variants this espeak-ng knows (``f3``, ``m2``, ``whisper`` ...)."""
    listing = subprocess.run([_espeak(), "--voices=variant"], capture_output=True, text=True, check=True).stdout
    files = (token for line in listing.splitlines() for token in line.split() if token.startswith("!v/"))
    return frozenset(file[len("!v/") :] for file in files)


@functools.cache
def espeak_digits(voice: str) -> tuple[tuple[np.ndarray, ...], int]:
    """The digits 0-9 spoken by ``voice``: ten mono float32 waveforms and their sample rate.

    Raises:
        DataError: espeak-ng is missing, or does not know the language or the variant.

    """
    language, variant, rate, pitch = parse_voice(voice)
    if variant is not None and variant not in variants():
        raise DataError(
            f"voice {voice!r}: espeak-ng has no variant {variant!r}; `espeak-ng --voices=variant` lists them"
        )
    name = language if variant is None else f"{language}+{variant}"
    soundfile = audio_module("soundfile")
    waves, sample_rate = [], 0
    for digit in range(10):
        command = [_espeak(), "-v", name, "-s", str(rate), "-p", str(pitch), "--stdout", str(digit)]
        done = subprocess.run(command, capture_output=True)
        if done.returncode != 0 or not done.stdout:
            message = done.stderr.decode(errors="replace").strip()
            raise DataError(f"voice {voice!r}: espeak-ng failed ({message}); `espeak-ng --voices` lists the languages")
        wave, sample_rate = soundfile.read(io.BytesIO(done.stdout), dtype="float32", always_2d=True)
        waves.append(wave.mean(axis=1))
    return tuple(waves), int(sample_rate)
