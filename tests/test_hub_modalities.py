"""Opt-in (pytest -m hub): the default Whisper, text encoder and CLIP vision tower from the
Hugging Face hub on the bundled sample, whose clips say the words of transcripts.csv."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from emi_features.cache.reader import open_cache
from emi_features.cli.extract import main as extract_command
from emi_features.cli.text import embed_text_command, transcribe_command

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample"
pytestmark = pytest.mark.hub


@pytest.fixture(scope="module")
def small_sample(tmp_path_factory) -> Path:
    """The first 12 train clips of the bundled sample, with a cache."""
    root = tmp_path_factory.mktemp("hub-sample")
    ids = [r["Filename"] for r in csv.DictReader((SAMPLE / "train_split.csv").open())][1:13]
    (root / "raw").mkdir()
    for clip_id in ids:
        shutil.copy(SAMPLE / "raw" / f"{clip_id}.mp4", root / "raw")
    cache = root / "c.h5"
    result = CliRunner().invoke(
        extract_command,
        [str(root / "raw"), "--model", "fbank", "--out", str(cache), "--quiet", "--workers", "0"],
    )
    assert result.exit_code == 0, result.output
    return root


def test_whisper_hears_the_sample_words_and_the_encoder_embeds_them(small_sample):
    cache = small_sample / "c.h5"
    result = CliRunner().invoke(
        transcribe_command, [str(small_sample / "raw"), "--out", str(cache), "--quiet"]
    )
    assert result.exit_code == 0, result.output
    spoken = {r["Filename"]: r["text"] for r in csv.DictReader((SAMPLE / "transcripts.csv").open())}
    with open_cache(cache) as opened:
        text, ids = opened.transcripts(), list(opened.ids)
    heard = [spoken[i] in t.lower() for i, t in zip(ids, text.text, strict=True) if spoken[i]]
    assert np.mean(heard) >= 0.75, list(zip(ids, text.text, strict=True))
    assert CliRunner().invoke(embed_text_command, [str(cache)]).exit_code == 0
    with open_cache(cache) as opened:
        stream = opened.stream("text")
    assert stream.present.sum() >= 0.75 * len(heard) and stream.values.shape[1] == 768


def test_clip_embeds_the_video_frames(small_sample):
    cache = small_sample / "c.h5"
    args = [
        str(small_sample / "raw"),
        "--out",
        str(cache),
        "--modality",
        "vision",
        "--stream",
        "vision",
        "--fps",
        "2",
        "--quiet",
    ]
    result = CliRunner().invoke(extract_command, args)
    assert result.exit_code == 0, result.output
    with open_cache(cache) as opened:
        stream = opened.stream("vision")
    assert stream.present.all() and stream.mean.shape[1] == 768
    assert stream.attrs["frame_rate"] == 2.0
