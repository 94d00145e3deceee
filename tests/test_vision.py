"""`emi extract --modality vision`: the video track sampled at --fps, embedded by a tiny random
ViT saved with save_pretrained, attached as a frame stream with that rate; clips without video
are recorded as missing; a second run resumes; bad options are one line."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import run_extract_cli as run
from conftest import write_wav

from emi_features.cache.reader import open_cache
from emi_features.sample.generate import write_mp4
from emi_features.sample.tiny_models import save_tiny_image_encoder


@pytest.fixture(scope="module")
def tiny_vit(tmp_path_factory) -> Path:
    return save_tiny_image_encoder(tmp_path_factory.mktemp("tiny-vit"), width=24)


def decoded_frames(path: Path) -> list[np.ndarray]:
    import av

    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def test_video_frames_become_a_stream_at_the_chosen_rate(tmp_path, tiny_vit, caplog):
    from emi_features.core.devices import resolve_device
    from emi_features.vision.encode import ImageEncoder

    caplog.set_level("INFO")
    folder = tmp_path / "clips"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for k, seconds in enumerate((1.3, 3.0, 0.4)):  # sample videos: 2 frames/s, gray levels
        write_mp4(folder / f"{k:05d}.mp4", rng.uniform(-0.3, 0.3, int(seconds * 44_100)), 44_100)
    write_wav(folder / "00003.wav", 1.0)  # audio only: no video track
    cache = tmp_path / "c.h5"
    run(folder, "--model", "fbank", "--out", cache, "--quiet", "--workers", "0")
    vision = ["--modality", "vision", "--model", tiny_vit, "--stream", "face", "--fps", "5"]
    run(folder, "--out", cache, "--quiet", *vision)
    with open_cache(cache) as opened:
        stream = opened.stream("face")
        ids = list(opened.ids)
    assert stream.kind == "frame" and stream.attrs["frame_rate"] == 5.0
    assert stream.present.tolist() == [True, True, True, False]  # the wav is recorded missing
    assert any("skip 00003: no video track" in m for m in caplog.messages)
    counts = np.diff(stream.offsets)
    encoder = ImageEncoder(str(tiny_vit), device=resolve_device("cpu"))
    for row, clip_id in enumerate(ids[:3]):
        frames = decoded_frames(folder / f"{clip_id}.mp4")  # 2 per second, the last held
        shown = len(frames) / 2  # seconds the video track shows
        assert counts[row] == math.ceil(shown * 5 - 1e-9)
        expected = encoder.embed([frames[int(k / 5 * 2)] for k in range(counts[row])])
        got = stream.frames[stream.offsets[row] : stream.offsets[row + 1]].astype(np.float32)
        np.testing.assert_allclose(got, expected, atol=2e-2, rtol=1e-2)  # float16 storage
        np.testing.assert_allclose(stream.mean[row], expected.mean(0), atol=1e-5)
    assert counts[3] == 0 and not stream.mean[3].any()


@pytest.mark.slow
def test_an_interrupted_vision_run_resumes_and_options_are_checked(tmp_path, tiny_vit, caplog):
    caplog.set_level("INFO")
    folder = tmp_path / "clips"
    folder.mkdir()
    for k in range(3):
        write_mp4(folder / f"{k:05d}.mp4", np.zeros(44_100, dtype=np.float32), 44_100)
    cache = tmp_path / "c.h5"
    run(folder, "--model", "fbank", "--out", cache, "--quiet", "--workers", "0")
    side = tmp_path / "c.h5.streams" / "face.h5"
    side.parent.mkdir()
    vision = ["--modality", "vision", "--model", tiny_vit, "--fps", "2"]
    from emi_features.extraction.config import ExtractConfig
    from emi_features.extraction.per_clip import run_modality
    from emi_features.extraction.registry import get_modality
    from emi_features.vision.encode import VisionSettings

    config = ExtractConfig(model=str(tiny_vit), modality="vision", settings=VisionSettings(fps=2))
    run_modality(
        get_modality("vision"), folder / "00001.mp4", out=side, config=config, progress=False
    )
    run(folder, "--out", cache, "--quiet", *vision, "--stream", "face")
    assert any("3 clips, 1 already in" in m for m in caplog.messages)
    assert not side.parent.exists()
    no_group = run(folder, "--out", cache, "--modality", "vision", "--model", tiny_vit, ok=False)
    assert no_group.exit_code == 2 and "give --stream NAME" in no_group.output
    not_images = run(
        folder,
        "--out",
        cache,
        "--modality",
        "vision",
        "--model",
        "fbank",
        "--stream",
        "f2",
        ok=False,
    )
    assert not_images.exit_code == 1 and "cannot load image model 'fbank'" in not_images.output
    assert len(not_images.output.strip().splitlines()) == 1


def test_face_crop_takes_the_largest_box_and_needs_opencv(monkeypatch):
    from emi_features.audio.backbones import BackboneError
    from emi_features.vision.encode import face_cropper, largest_box

    image = np.arange(20 * 30 * 3, dtype=np.uint8).reshape(20, 30, 3)
    cut, found = largest_box(image, [(1, 2, 3, 4), (5, 6, 10, 8)])
    assert found and cut.shape == (8, 10, 3) and np.array_equal(cut, image[6:14, 5:15])
    whole, found = largest_box(image, ())
    assert not found and whole is image
    monkeypatch.setitem(sys.modules, "cv2", None)  # as on a machine without OpenCV
    with pytest.raises(BackboneError, match="--crop face needs OpenCV"):
        face_cropper()


def test_a_portrait_phone_video_is_sampled_upright(tmp_path):
    """A video stored sideways with a 90° display matrix (as phones write portrait video) is
    turned upright before it is embedded: its white left edge is shown as the top."""
    import struct

    import av

    from emi_features.vision.encode import sample_frames

    path = tmp_path / "sideways.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=5)
        stream.width, stream.height, stream.pix_fmt = 32, 16, "yuv420p"
        image = np.zeros((16, 32, 3), np.uint8)
        image[:, :8] = 255
        for _ in range(3):
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    data = bytearray(path.read_bytes())  # the track header's matrix: "rotate 90", as ffmpeg
    start = data.find(b"tkhd") + 4 + 4 + 20 + 8 + 8  # writes it (version-0 tkhd)
    data[start : start + 36] = struct.pack(">9i", 0, 1 << 16, 0, -(1 << 16), 0, 0, 0, 0, 1 << 30)
    path.write_bytes(bytes(data))
    frame = next(sample_frames(path, 5.0))
    assert frame.shape == (32, 16, 3)  # portrait
    assert frame[:8, :, 0].mean() > 200 and frame[12:, :, 0].mean() < 50  # white on top


def test_frame_pooling_mean_is_the_mean_of_every_token(tiny_vit):
    """`--frame-pooling mean`: each sample is the mean of the last hidden state over every
    token, [CLS] and patches (the 8th ABAW winner's extract_google.py), not its [CLS]."""
    import torch
    from transformers import AutoImageProcessor, AutoModel

    from emi_features.core.devices import resolve_device
    from emi_features.vision.encode import ImageEncoder, VisionSettings

    images = [
        np.random.default_rng(k).integers(0, 255, (40, 30, 3), dtype=np.uint8) for k in range(3)
    ]
    device = resolve_device("cpu")
    mean = ImageEncoder(str(tiny_vit), device=device, pooling="mean")
    cls = ImageEncoder(str(tiny_vit), device=device)
    network = AutoModel.from_pretrained(tiny_vit)
    processor = AutoImageProcessor.from_pretrained(tiny_vit)
    with torch.no_grad():
        states = network(**processor(images=images, return_tensors="pt")).last_hidden_state
    assert states.shape[1] > 1  # [CLS] and the patches
    np.testing.assert_allclose(mean.embed(images), states.mean(1).numpy(), atol=1e-5)
    np.testing.assert_allclose(cls.embed(images), states[:, 0].numpy(), atol=1e-5)
    assert mean.fingerprint != cls.fingerprint
    with pytest.raises(ValueError, match="settings.frame_pooling: 'max' is not one of cls, mean"):
        from emi_features.extraction.remake import checked_settings

        checked_settings("vision", {"frame_pooling": "max"}, "stream")
    assert VisionSettings().frame_pooling == "cls"
