"""Reader of VGGSound / AudioSet clips in the CAV-MAE layout, split into category tasks (FLAVA's streams).

Layout (as produced by CAV-MAE's preprocessing; paths in the data file may be absolute or relative to
``root``)::

    <root>/<train_file>      CAV-MAE json {"data": [{"video_id", "wav", "video_path", "labels"}, ...]}
                             or a csv with the same columns
    <root>/<label_csv>       class_labels_indices.csv: index,mid,display_name
    <video_path>/frame_<k>/<video_id>.jpg   extracted frames, k = 0, 1, ...
    <wav>                    the clip's audio (any rate; resampled to 16 kHz)

``labels`` is a comma-separated list of ``mid``s. Tasks are categories: ``categories`` maps each task
name to the class display names (or mids) it holds, in stream order (FLAVA's 8 VGGSound tasks are in
``experiments/pretrain/flava_vggsound.yaml``). Clips whose labels span several tasks are dropped (as FLAVA does
for AudioSet); clips with no label in any task are ignored. Retrieval is by instance.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Subset

from lifelong.data.av_common import AVStream, kaldi_fbank, read_wav, resample
from lifelong.errors import DataError

AUDIO_STATS = {"vggsound": (-5.0767, 4.4533), "audioset": (-5.081, 4.4849)}
"""fbank mean/std used by CAV-MAE for normalisation ``(x - mean) / (2 std)``."""
IMAGE_MEAN = (0.485, 0.456, 0.406)
IMAGE_STD = (0.229, 0.224, 0.225)
SAMPLE_RATE = 16000


def read_datafile(path: Path) -> list[dict[str, str]]:
    """Entries of a CAV-MAE json or csv data file."""
    if not path.is_file():
        raise DataError(f"data file {path} not found; see the CAV-MAE preprocessing (json with video_id, wav, ...)")
    if path.suffix == ".json":
        return list(json.loads(path.read_text())["data"])
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def read_label_csv(path: Path) -> dict[str, str]:
    """``mid -> display_name`` from a ``class_labels_indices.csv``."""
    if not path.is_file():
        raise DataError(f"label file {path} not found (expected columns index,mid,display_name)")
    with path.open(newline="") as f:
        return {row["mid"]: row["display_name"] for row in csv.DictReader(f)}


class CavMaeClips(Dataset):
    """Clips read lazily from disk: video ``(F, 3, S, S)`` and fbank ``(T, M)`` per item.

    Args:
        entries: data-file rows.
        root: base directory for relative paths.
        group_offset: added to the row index to form the instance ``group``.
        labels: task-local class index per row (reporting only).
        frames: frames per clip, evenly spaced over the extracted ones.
        image_size: side of the centre crop after resizing the short side.
        target_frames: fbank frames (1024 = 10.24 s at a 10 ms hop).
        mel_bins: fbank mel bins.
        audio_stats: ``(mean, std)`` for fbank normalisation.

    """

    def __init__(
        self,
        entries: Sequence[Mapping[str, str]],
        root: Path,
        group_offset: int = 0,
        labels: Sequence[int] | None = None,
        frames: int = 4,
        image_size: int = 224,
        target_frames: int = 1024,
        mel_bins: int = 128,
        audio_stats: tuple[float, float] = AUDIO_STATS["vggsound"],
    ) -> None:
        self.entries, self.root, self.offset = list(entries), root, group_offset
        self.labels = list(labels) if labels is not None else [0] * len(self.entries)
        self.frames, self.size, self.t, self.m, self.stats = frames, image_size, target_frames, mel_bins, audio_stats

    def __len__(self) -> int:
        return len(self.entries)

    def _path(self, value: str) -> Path:
        p = Path(value)
        return p if p.is_absolute() else self.root / p

    def _video(self, entry: Mapping[str, str]) -> torch.Tensor:
        from PIL import Image

        base = self._path(entry["video_path"])
        found = sorted(base.glob(f"frame_*/{entry['video_id']}.jpg"), key=lambda p: int(p.parent.name[6:]))
        if not found:
            raise DataError(f"no frames {base}/frame_*/{entry['video_id']}.jpg")
        pick = np.linspace(0, len(found) - 1, self.frames).round().astype(int)
        out = []
        for k in pick:
            img = Image.open(found[k]).convert("RGB")
            scale = self.size / min(img.size)
            img = img.resize((max(self.size, round(img.width * scale)), max(self.size, round(img.height * scale))))
            left, top = (img.width - self.size) // 2, (img.height - self.size) // 2
            img = img.crop((left, top, left + self.size, top + self.size))
            x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)
            out.append((x - torch.tensor(IMAGE_MEAN)[:, None, None]) / torch.tensor(IMAGE_STD)[:, None, None])
        return torch.stack(out)

    def _audio(self, entry: Mapping[str, str]) -> torch.Tensor:
        wave, rate = read_wav(self._path(entry["wav"]))
        wave = resample(wave, rate, SAMPLE_RATE)
        fb = kaldi_fbank(wave, SAMPLE_RATE, self.m, self.t)
        return (fb - self.stats[0]) / (2 * self.stats[1])

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        entry = self.entries[i]
        label = torch.tensor(self.labels[i])
        return {
            "video": self._video(entry),
            "audio": self._audio(entry),
            "label": label,
            "group": torch.tensor(self.offset + i),
        }


def split_by_category(
    entries: Sequence[Mapping[str, str]], mid_to_name: Mapping[str, str], categories: Mapping[str, Sequence[str]]
) -> list[list[tuple[int, int]]]:
    """Per task, the ``(row, class index within the task)`` of clips whose labels all fall in that task."""
    lookup: dict[str, tuple[int, int]] = {}
    for t, classes in enumerate(categories.values()):
        for c, name in enumerate(classes):
            lookup[name] = (t, c)
    out: list[list[tuple[int, int]]] = [[] for _ in categories]
    for row, entry in enumerate(entries):
        found = [lookup.get(mid_to_name.get(mid, mid), lookup.get(mid)) for mid in entry["labels"].split(",")]
        hits = [h for h in found if h is not None]
        if hits and len({t for t, _ in hits}) == 1:
            out[hits[0][0]].append((row, hits[0][1]))
    return out


def _cap_per_class(rows: Sequence[tuple[int, int]], cap: int) -> list[int]:
    """The first ``cap`` rows of every class (FLAVA keeps at most 400 training clips per class)."""
    count: dict[int, int] = {}
    keep = []
    for r, c in rows:
        if count.get(c, 0) < cap:
            count[c] = count.get(c, 0) + 1
            keep.append(r)
    return keep


def cavmae_stream(
    root: str | Path,
    categories: Mapping[str, Sequence[str]],
    train_file: str = "vggsound_train.json",
    test_file: str = "vggsound_retrieval.json",
    label_csv: str = "class_labels_indices_vgg.csv",
    frames: int = 4,
    image_size: int = 224,
    target_frames: int = 1024,
    mel_bins: int = 128,
    audio_stats: str = "vggsound",
    max_per_class: int | None = 400,
) -> AVStream:
    """Category-incremental stream over a CAV-MAE-layout dataset (FLAVA's VGGSound/AudioSet protocol)."""
    if not categories:
        raise ValueError("stream.categories must map at least one task name to its classes")
    if audio_stats not in AUDIO_STATS:
        raise ValueError(f"stream.audio_stats={audio_stats!r}; choose one of {sorted(AUDIO_STATS)}")
    root = Path(root)
    mids = read_label_csv(root / label_csv)
    kwargs: dict[str, Any] = {
        "frames": frames,
        "image_size": image_size,
        "target_frames": target_frames,
        "mel_bins": mel_bins,
        "audio_stats": AUDIO_STATS[audio_stats],
    }
    sets = []
    for offset, name in ((0, train_file), (10_000_000, test_file)):
        entries = read_datafile(root / name)
        per_task = split_by_category(entries, mids, categories)
        labels = [0] * len(entries)
        for rows in per_task:
            for r, c in rows:
                labels[r] = c
        full = CavMaeClips(entries, root, offset, labels, **kwargs)
        tasks = []
        for rows in per_task:
            keep = [r for r, _ in rows]
            if offset == 0 and max_per_class is not None:
                keep = _cap_per_class(rows, max_per_class)
            tasks.append(Subset(full, keep))
        sets.append(tasks)
    return AVStream(sets[0], sets[1], [list(v) for v in categories.values()], "cavmae")
