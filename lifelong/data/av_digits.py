"""``av_digits``: real spoken digits paired by label with real handwritten digit images.

Audio: the studio digit prompts ``digits/0.wav`` ... ``digits/9.wav`` of the Debian packages
``asterisk-core-sounds-{en,es,fr,it,ru}-wav`` (8 kHz mono, one recording per digit and voice). The five
packages hold five voice sets: en-US and es-MX are both Allison Smith, fr-CA is June Wallack, it is
Carlo Flora, ru is an IVR voice; so four distinct speakers and five languages (the "7 speakers" of the
issue counts the extra ``asterisk-prompt-*`` packages, which ship GSM files, not WAV).

Images: scikit-learn's bundled 8x8 ``digits`` (train/test split as the ``digits`` dataset), upsampled and
drawn into ``frames`` frames with a small random motion, so each pair is a short "video".

Train pairs use the training voices with random augmentation (speed, time shift, gain, noise) and
training images. A retrieval is correct when the retrieved item shows/says the same digit (``group`` =
label): pairs are formed by label, so instance identity carries no information here. The sklearn image
index of every pair is kept in ``extras["image"]``.

Voices named ``espeak:<language>[+<variant>][/<wpm>[/<pitch>]]`` are rendered by ``espeak-ng``
(:mod:`lifelong.data.espeak_voices`): synthetic speakers of the same languages, as many as an init pool needs.

Test protocols (deviation from the issue text, which asked for held-out speakers):

- default (``test_voices=None``): held-out digit IMAGES (sklearn test split, never trained on) paired with
  fresh renditions of the TRAINING voices (first copy unaugmented and centred, the rest newly augmented).
  Each voice speaks a different language, so this is the only protocol in which a recording's words
  were heard in training;
- held-out voice (``test_voices=("it",)`` etc.): the retrieval sets use voices absent from training. Every
  voice set is a different language with one recording per digit, so a held-out voice says words never
  heard in training and cross-speaker retrieval is not learnable here: expect chance (R@1 0.1).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from lifelong.data.av_common import AVPairs, AVStream, check_tasks, kaldi_fbank, normalise_fbank, read_wav, resample
from lifelong.data.datasets import DIGITS_SPLIT_SEED, DIGITS_TEST_FRACTION, stratified_split
from lifelong.data.espeak_voices import espeak_digits, is_espeak_voice
from lifelong.errors import DataError

SOUNDS_ROOT = Path("/usr/share/asterisk/sounds")
"""Where the Debian asterisk sound packages install their prompts."""

VOICES: dict[str, tuple[str, ...]] = {
    "en": ("en_US_f_Allison", "en_US", "en"),
    "es": ("es_MX_f_Allison", "es_MX", "es"),
    "fr": ("fr_CA_f_June", "fr_CA", "fr"),
    "it": ("it_IT_m_Carlo", "it_IT", "it"),
    "ru": ("ru_RU_f_IvrvoiceRU", "ru_RU", "ru"),
}
"""Voice name -> directory names tried under the sounds root, first match wins."""

APT_PACKAGES = {v: f"asterisk-core-sounds-{v}-wav" for v in VOICES}
SAMPLE_RATE = 8000
DEFAULT_TASKS = ((0, 1), (2, 3), (4, 5), (6, 7), (8, 9))


def voice_dir(root: Path, voice: str) -> Path:
    """The ``digits`` directory of ``voice``; a missing one raises ``DataError`` naming the apt package."""
    if voice not in VOICES:
        raise ValueError(f"voice={voice!r} is not known; choose from {sorted(VOICES)}")
    for name in VOICES[voice]:
        path = root / name / "digits"
        if (path / "0.wav").is_file():
            return path
    raise DataError(
        f"no spoken digits for voice {voice!r} under {root} (looked for {', '.join(VOICES[voice])}/digits/0.wav); "
        f"install them with: apt-get install -y {' '.join(APT_PACKAGES[v] for v in VOICES)}"
    )


def load_voice(root: Path, voice: str) -> list[np.ndarray]:
    """The ten digit recordings of one voice (asterisk prompts, or ``espeak:...`` renderings), at 8 kHz."""
    if is_espeak_voice(voice):
        rendered, rate = espeak_digits(voice)
        return [resample(wave, rate, SAMPLE_RATE) for wave in rendered]
    directory = voice_dir(root, voice)
    waves = []
    for d in range(10):
        wave, rate = read_wav(directory / f"{d}.wav")
        waves.append(resample(wave, rate, SAMPLE_RATE))
    return waves


def change_speed(wave: np.ndarray, speed: float) -> np.ndarray:
    """Play ``wave`` ``speed`` times faster (pitch moves with it), by band-limited resampling.

    The speed is rounded to 1% so that the resampling ratio stays a small fraction (a short sinc kernel).
    """
    percent = max(1, round(100 * speed))
    return resample(wave, percent, 100)


def augment(wave: np.ndarray, length: int, rng: np.random.Generator, strength: float = 1.0) -> np.ndarray:
    """Speed (x0.9-1.1), gain (+-6 dB), random time shift inside ``length`` samples, Gaussian noise (SNR 15-35 dB).

    ``strength=0`` returns the recording centred in the window, unchanged otherwise.
    """
    if strength > 0:
        wave = change_speed(wave, 1.0 + strength * rng.uniform(-0.1, 0.1))
        wave = wave * 10 ** (strength * rng.uniform(-6, 6) / 20)
    wave = wave[:length]
    room = length - len(wave)
    start = int(rng.integers(0, room + 1)) if strength > 0 else room // 2
    out = np.zeros(length, dtype=np.float32)
    out[start : start + len(wave)] = wave
    if strength > 0:
        power = float(np.mean(wave**2)) + 1e-10
        snr_db = rng.uniform(15, 35)
        out += rng.normal(0, np.sqrt(power / 10 ** (snr_db / 10)), length).astype(np.float32)
    return out


def digit_frames(image: torch.Tensor, frames: int, size: int, rng: np.random.Generator) -> torch.Tensor:
    """Draw an 8x8 digit (values 0-16) as ``frames`` RGB frames of ``size``^2 with a small random motion.

    The digit is upsampled to 3/4 of the frame, placed at a random start offset and moved by a random
    per-frame step of at most ``size // 16`` pixels in each direction.
    """
    inner = (3 * size) // 4
    glyph = F.interpolate(image.reshape(1, 1, 8, 8) / 16.0, size=(inner, inner), mode="bilinear", align_corners=False)
    room = size - inner
    step = max(1, size // 16)
    pos = rng.integers(0, room + 1, size=2).astype(float)
    vel = rng.integers(-step, step + 1, size=2)
    out = torch.zeros(frames, 3, size, size)
    for f in range(frames):
        y, x = (np.clip(pos + f * vel, 0, room)).astype(int)
        out[f, :, y : y + inner, x : x + inner] = glyph[0]
    return (out - 0.5) / 0.5


def _digit_images(train: bool) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """Images, labels and sklearn indices of the ``digits`` train (or test) split."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    tr, te = stratified_split(bunch.target, DIGITS_TEST_FRACTION, DIGITS_SPLIT_SEED)
    idx = np.asarray(tr if train else te)
    return torch.as_tensor(bunch.images[idx], dtype=torch.float32), bunch.target[idx], idx


def _pairs(
    waves: dict[str, list[np.ndarray]],
    digits: Sequence[int],
    copies: int,
    train: bool,
    cfg: dict,
    rng: np.random.Generator,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    images, labels, index = _digit_images(train)
    length = round(cfg["target_frames"] * cfg["frame_shift_ms"] * SAMPLE_RATE / 1000)
    video, audio, label, image = [], [], [], []
    for voice, recordings in waves.items():
        for d in digits:
            pool = np.flatnonzero(labels == d)
            for c in range(copies):
                strength = cfg["augment"] if (train or c > 0) else 0.0
                wave = augment(recordings[d], length, rng, strength)
                audio.append(
                    kaldi_fbank(wave, SAMPLE_RATE, cfg["mel_bins"], cfg["target_frames"], cfg["frame_shift_ms"])
                )
                pick = int(rng.choice(pool))
                video.append(digit_frames(images[pick], cfg["frames"], cfg["image_size"], rng))
                label.append(d)
                image.append(int(index[pick]))
        del voice
    return torch.stack(video), torch.stack(audio), torch.tensor(label), torch.tensor(image)


def av_digits(
    root: str | Path | None = None,
    tasks: Sequence[Sequence[int]] = DEFAULT_TASKS,
    train_voices: Sequence[str] = ("en", "es", "fr", "ru"),
    test_voices: Sequence[str] | None = None,
    train_copies: int = 24,
    test_copies: int = 6,
    frames: int = 2,
    image_size: int = 32,
    target_frames: int = 64,
    mel_bins: int = 32,
    frame_shift_ms: float = 15.0,
    augment_strength: float = 1.0,
    allow_seen_voices: bool = False,
    seed: int = 0,
) -> AVStream:
    """Build the ``av_digits`` stream (one task per group of digits).

    Args:
        root: directory holding the voice folders (default ``/usr/share/asterisk/sounds``).
        tasks: disjoint groups of digits 0-9, one per task, in stream order.
        train_voices: voices whose recordings are used for training.
        test_voices: voices of the retrieval sets; ``None`` (default) = the training voices with held-out
            images (see the module docstring); otherwise held-out voices that must not overlap
            ``train_voices`` unless ``allow_seen_voices``.
        train_copies: augmented pairs per (voice, digit) in training.
        test_copies: pairs per (voice, digit) in the retrieval sets (the first unaugmented).
        frames: video frames per pair.
        image_size: frame side in pixels.
        target_frames: fbank frames (time) per clip.
        mel_bins: fbank mel bins.
        frame_shift_ms: fbank hop; the clip window is ``target_frames * frame_shift_ms``.
        augment_strength: 0 disables audio augmentation, 1 is the documented ranges.
        allow_seen_voices: allow ``test_voices`` to overlap ``train_voices`` (the retrieval sets then
            use held-out images and fresh renditions of seen voices; every voice speaks its own
            language, so a held-out voice means unseen words and retrieval near chance at small scale).
        seed: seed of augmentation, image choice and motion.

    """
    tasks = check_tasks(tasks, list(range(10)), "stream.tasks")
    if test_voices is None:
        test_voices, allow_seen_voices = tuple(train_voices), True
    overlap = set(train_voices) & set(test_voices)
    if overlap and not allow_seen_voices:
        raise ValueError(f"stream.test_voices must be held out, but {sorted(overlap)} is also in train_voices")
    if not train_voices or not test_voices:
        raise ValueError("stream.train_voices and stream.test_voices must both name at least one voice")
    for key, value in (("train_copies", train_copies), ("test_copies", test_copies), ("frames", frames)):
        if value < 1:
            raise ValueError(f"stream.{key} must be >= 1, got {value}")
    root = Path(root) if root is not None else SOUNDS_ROOT
    cfg = {
        "target_frames": target_frames,
        "mel_bins": mel_bins,
        "frame_shift_ms": frame_shift_ms,
        "frames": frames,
        "image_size": image_size,
        "augment": augment_strength,
    }
    rng = np.random.default_rng(seed)
    train_waves = {v: load_voice(root, v) for v in train_voices}
    test_waves = {v: load_voice(root, v) for v in test_voices}
    raw_train = [_pairs(train_waves, t, train_copies, True, cfg, rng) for t in tasks]
    raw_test = [_pairs(test_waves, t, test_copies, False, cfg, rng) for t in tasks]
    # One normalisation for the whole stream, from the training audio (as CAV-MAE's dataset statistics).
    all_train = torch.cat([r[1] for r in raw_train])
    mean, std = float(all_train.mean()), float(all_train.std())
    train = [AVPairs(v, normalise_fbank(a, mean, std), y, y.clone(), {"image": i}) for v, a, y, i in raw_train]
    test = [AVPairs(v, normalise_fbank(a, mean, std), y, y.clone(), {"image": i}) for v, a, y, i in raw_test]
    return AVStream(train, test, [list(t) for t in tasks], "av_digits")
