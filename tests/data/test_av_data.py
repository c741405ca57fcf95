"""Audio-video readers: av_digits on the real asterisk prompts, fbank shapes, av_synthetic masks, CAV-MAE splits."""

from pathlib import Path

import numpy as np
import pytest
import torch

from lifelong.data.av_cavmae import split_by_category
from lifelong.data.av_common import kaldi_fbank, resample
from lifelong.data.av_digits import SOUNDS_ROOT, av_digits, change_speed, load_voice
from lifelong.data.av_synthetic import av_synthetic
from lifelong.errors import DataError

HAVE_ASTERISK = (SOUNDS_ROOT / "en_US_f_Allison" / "digits" / "0.wav").is_file()
needs_asterisk = pytest.mark.skipif(
    not HAVE_ASTERISK, reason="apt packages asterisk-core-sounds-{en,es,fr,it,ru}-wav are not installed"
)


def test_fbank_shape_and_padding():
    wave = np.sin(np.linspace(0, 2000, 8000)).astype(np.float32)  # 1 s at 8 kHz -> ~98 frames at 10 ms
    fb = kaldi_fbank(wave, 8000, num_mel_bins=32, target_frames=128)
    assert fb.shape == (128, 32)
    assert torch.all(fb[100:] == 0)
    assert torch.all(fb[:90] != 0)
    assert kaldi_fbank(wave, 8000, 32, 64).shape == (64, 32)  # cut


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.asarray(x, dtype=np.float64) ** 2)))


def _tone(freq: float, rate: int, seconds: float = 1.0, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_resampling_removes_an_out_of_band_tone_instead_of_aliasing_it():
    """48 -> 16 kHz: a 10 kHz tone lies above the new 8 kHz Nyquist frequency and must vanish, not fold to 6 kHz."""
    high, low = _tone(10_000, 48_000), _tone(1_000, 48_000)
    assert abs(_rms(high) - 0.354) < 0.001
    n = 16_000
    linear = np.interp(np.linspace(0, len(high) - 1, n), np.arange(len(high)), high)
    assert _rms(linear) > 0.25  # what linear interpolation left behind: the alias
    inner = slice(200, -200)  # away from the edges, where the filter sees zeros
    assert _rms(resample(high, 48_000, 16_000)[inner]) < 0.01
    out = resample(low, 48_000, 16_000)
    assert len(out) == n
    assert abs(_rms(out[inner]) - _rms(low)) < 0.005  # an in-band tone passes unchanged


def test_speed_change_keeps_the_tone_and_scales_its_frequency():
    wave = _tone(500, 8_000)
    fast = change_speed(wave, 1.1)
    assert len(fast) == round(len(wave) / 1.1)
    spectrum = np.abs(np.fft.rfft(fast[100:-100]))
    peak_hz = np.argmax(spectrum) * 8_000 / len(fast[100:-100])
    assert abs(peak_hz - 550) < 10


@needs_asterisk
def test_asterisk_voices_read_with_soundfile():
    for voice in ("en", "es", "fr", "it", "ru"):
        waves = load_voice(SOUNDS_ROOT, voice)
        assert len(waves) == 10
        assert all(0.15 < len(w) / 8000 < 1.2 and np.abs(w).max() <= 1.0 for w in waves)


@needs_asterisk
def test_av_digits_stream_shapes_labels_and_held_out_voice():
    s = av_digits(tasks=((0, 1), (2, 3)), train_voices=("en", "fr"), test_voices=("it",), train_copies=2, test_copies=2)
    assert s.num_tasks == 2
    assert len(s.train[0]) == 2 * 2 * 2
    assert len(s.test[1]) == 1 * 2 * 2
    item = s.train[0][0]
    assert item["video"].shape == (2, 3, 32, 32)
    assert item["audio"].shape == (64, 32)
    assert set(s.train[1].label.tolist()) == {2, 3}
    assert torch.equal(s.test[0].group, s.test[0].label)
    # the first test copy is unaugmented, so the same recording gives the same features twice over seeds
    again = av_digits(tasks=((0, 1), (2, 3)), train_voices=("en", "fr"), test_voices=("it",), train_copies=2, seed=1)
    assert not torch.equal(s.train[0].audio, again.train[0].audio)
    with pytest.raises(ValueError, match="held out"):
        av_digits(train_voices=("en",), test_voices=("en",))


@needs_asterisk
def test_av_digits_default_protocol_seen_voices_and_held_out_images():
    from lifelong.data.av_digits import _digit_images

    s = av_digits(tasks=((0, 1), (2, 3)), train_voices=("en", "fr"), train_copies=3, test_copies=2)
    assert len(s.test[0]) == 2 * 2 * 2  # test_voices=None -> the two training voices
    train_images = set(torch.cat([d.extras["image"] for d in s.train]).tolist())
    test_images = set(torch.cat([d.extras["image"] for d in s.test]).tolist())
    assert train_images.isdisjoint(test_images)
    assert train_images <= set(_digit_images(True)[2].tolist())
    assert test_images <= set(_digit_images(False)[2].tolist())
    from sklearn.datasets import load_digits

    target = load_digits().target
    for d in (*s.train, *s.test):  # every pair shows an image of its own digit
        assert np.array_equal(target[d.extras["image"].numpy()], d.label.numpy())
    # explicit overlap still needs the opt-in
    with pytest.raises(ValueError, match="held out"):
        av_digits(train_voices=("en", "fr"), test_voices=("fr",))
    ok = av_digits(tasks=((0, 1),), train_voices=("en",), test_voices=("en",), allow_seen_voices=True, train_copies=1)
    assert len(ok.test[0]) == 2 * 6


def test_missing_packages_name_the_apt_packages(tmp_path: Path):
    with pytest.raises(DataError, match="apt-get install -y asterisk-core-sounds-en-wav"):
        av_digits(root=tmp_path)


def test_synthetic_masks_mark_the_sprite_and_tone():
    s = av_synthetic(tasks=((0,), (1,)), train_per_task=4, test_per_task=2, distractors=0)
    d = s.train[0]
    assert d.extras["video_gt"].sum(1).tolist() == [2] * 4  # one cell in each of 2 frames
    assert d.extras["audio_gt"].sum(1).tolist() == [2 * 4] * 4  # 2 time steps x 4 frequency patches
    # the sprite cell has much more energy than the background
    v = d.video[0, 0].reshape(3, 4, 8, 4, 8).permute(1, 3, 0, 2, 4).reshape(16, -1).pow(2).mean(1)
    assert int(v.argmax()) == int(d.extras["video_gt"][0, :16].float().argmax())


def test_cavmae_category_split_drops_cross_task_clips():
    entries = [{"labels": "/m/a"}, {"labels": "/m/b,/m/c"}, {"labels": "/m/a,/m/c"}, {"labels": "/m/x"}]
    names = {"/m/a": "dog", "/m/b": "car", "/m/c": "bus"}
    split = split_by_category(entries, names, {"animals": ["dog"], "vehicle": ["car", "bus"]})
    assert split == [[(0, 0)], [(1, 0)]]
