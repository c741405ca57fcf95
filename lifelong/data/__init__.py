"""Datasets and continual-learning streams.

``DATASETS`` holds the readers of real datasets, ``SCENARIOS`` the ways to split them;
``build_stream`` combines both into a :class:`Stream` of in-memory experiences, built with
Avalanche (imported lazily: importing ``lifelong.data`` does not import it).
``stream_from_avalanche`` turns any Avalanche benchmark into a :class:`Stream` (``benchmark_from_name``
builds one from a config's ``stream.avalanche``); ``avalanche_benchmark`` goes the other way.
``AV_DATASETS`` holds the audio-video readers, each with its own task split (``build_av_stream``).
"""

from lifelong.data.av_streams import AV_DATASETS, AV_SCENARIO, build_av_stream
from lifelong.data.avalanche_streams import benchmark_from_name, experience_from_avalanche, stream_from_avalanche
from lifelong.data.datasets import DATASETS, TensorSplit, resolve_root
from lifelong.data.streams import SCENARIOS, avalanche_benchmark, build_stream
from lifelong.data.types import Experience, Stream, StreamInfo, TensorExperienceDataset, identity_collate

__all__ = [
    "AV_DATASETS",
    "AV_SCENARIO",
    "build_av_stream",
    "DATASETS",
    "SCENARIOS",
    "Experience",
    "Stream",
    "StreamInfo",
    "TensorExperienceDataset",
    "TensorSplit",
    "avalanche_benchmark",
    "build_stream",
    "benchmark_from_name",
    "experience_from_avalanche",
    "identity_collate",
    "resolve_root",
    "stream_from_avalanche",
]
