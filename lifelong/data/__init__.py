"""Datasets and continual-learning streams.

``DATASETS`` holds the readers of real datasets, ``SCENARIOS`` the ways to split them;
``build_stream`` combines both into a :class:`Stream` of in-memory experiences, built with
Avalanche (imported lazily: importing ``lifelong.data`` does not import it).
``stream_from_avalanche`` turns any Avalanche benchmark into a :class:`Stream`.
"""

from lifelong.data.avalanche_streams import stream_from_avalanche
from lifelong.data.datasets import DATASETS, TensorSplit, resolve_root
from lifelong.data.streams import SCENARIOS, build_stream
from lifelong.data.types import Experience, Stream, StreamInfo, TensorExperienceDataset, identity_collate

__all__ = [
    "DATASETS",
    "SCENARIOS",
    "Experience",
    "Stream",
    "StreamInfo",
    "TensorExperienceDataset",
    "TensorSplit",
    "build_stream",
    "identity_collate",
    "resolve_root",
    "stream_from_avalanche",
]
