"""The audio stack is an optional extra: the vision path never imports it, the audio path names the extra."""

import subprocess
import sys

import pytest

from lifelong.data.av_common import audio_module
from lifelong.errors import DataError


def test_vision_run_path_does_not_import_the_audio_stack():
    code = "import sys, lifelong.run, lifelong.cli; print(sorted({'torchaudio', 'soundfile'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_missing_audio_module_names_the_extra():
    with pytest.raises(DataError, match=r"pip install 'lifelong\[audio\]'"):
        audio_module("torchaudio_not_installed_here")
