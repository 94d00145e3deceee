"""Transcripts and text embeddings: `emi transcribe` with a tiny random Whisper (batched, long-form
past 30 s, resumable from its journal) or `--transcripts` imported; `emi embed-text` with a tiny
random BERT (mean pooling, or a sentence-transformers folder's own pooling), empty transcripts
recorded as missing; /text carried when a cache is extended."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import write_wav

from emi_features.cache.reader import open_cache
from emi_features.cli.extract import main as extract_command
from emi_features.cli.text import embed_text_command, transcribe_command
from emi_features.sample.tiny_models import save_tiny_text_encoder

WORDS = ["hello", "world", "bright", "dark", "voice", "tone", "high", "low"]


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte-level alphabet, which Whisper's tokenizer uses."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    codes, extra = printable[:], 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
    return dict(zip(printable, map(chr, codes), strict=True))


@pytest.fixture(scope="module")
def tiny_whisper(tmp_path_factory) -> Path:
    """A random 1-layer Whisper with a byte-level tokenizer, two languages and timestamps."""
    from transformers import (
        GenerationConfig,
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperProcessor,
        WhisperTokenizer,
    )

    folder = tmp_path_factory.mktemp("tiny-whisper")
    (folder / "vocab.json").write_text(
        json.dumps({c: i for i, c in enumerate(_bytes_to_unicode().values())})
    )
    (folder / "merges.txt").write_text("#version: 0.2\n")
    end = "<|endoftext|>"
    tokenizer = WhisperTokenizer(
        str(folder / "vocab.json"),
        str(folder / "merges.txt"),
        unk_token=end,
        bos_token=end,
        eos_token=end,
        pad_token=end,
    )
    specials = [
        "<|startoftranscript|>",
        "<|en|>",
        "<|de|>",
        "<|translate|>",
        "<|transcribe|>",
        "<|startoflm|>",
        "<|startofprev|>",
        "<|nocaptions|>",
        "<|notimestamps|>",
        *(f"<|{k * 0.02:.2f}|>" for k in range(1501)),
    ]
    tokenizer.add_special_tokens({"additional_special_tokens": specials})
    token = tokenizer.convert_tokens_to_ids
    WhisperProcessor(WhisperFeatureExtractor(feature_size=80), tokenizer).save_pretrained(folder)
    ids = {
        "decoder_start_token_id": token("<|startoftranscript|>"),
        "eos_token_id": token(end),
        "pad_token_id": token(end),
        "bos_token_id": token(end),
    }
    config = WhisperConfig(
        vocab_size=len(tokenizer),
        d_model=16,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=16,
        decoder_ffn_dim=16,
        max_target_positions=64,
        **ids,
    )
    torch.manual_seed(0)
    model = WhisperForConditionalGeneration(config)
    model.generation_config = GenerationConfig(
        **ids,
        max_length=64,
        is_multilingual=True,
        max_initial_timestamp_index=50,
        lang_to_id={"<|en|>": token("<|en|>"), "<|de|>": token("<|de|>")},
        task_to_id={"transcribe": token("<|transcribe|>"), "translate": token("<|translate|>")},
        no_timestamps_token_id=token("<|notimestamps|>"),
        prev_sot_token_id=token("<|startofprev|>"),
        begin_suppress_tokens=[token(end)],
        suppress_tokens=[],
        alignment_heads=[[0, 0]],
    )
    model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory) -> Path:
    return save_tiny_text_encoder(tmp_path_factory.mktemp("tiny-bert"), WORDS, width=16)


def sentence_transformers_folder(encoder: Path, folder: Path) -> Path:
    """`encoder` as a sentence-transformers model in `folder`: Transformer, Pooling (CLS) and
    Normalize modules, as `modules.json` and `1_Pooling/config.json` lay them out."""
    import shutil

    shutil.copytree(encoder, folder)
    kinds = [("", "Transformer"), ("1_Pooling", "Pooling"), ("2_Normalize", "Normalize")]
    modules = [
        {"idx": k, "name": str(k), "path": path, "type": f"sentence_transformers.models.{kind}"}
        for k, (path, kind) in enumerate(kinds)
    ]
    (folder / "modules.json").write_text(json.dumps(modules))
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(
        json.dumps({"pooling_mode_cls_token": True, "pooling_mode_mean_tokens": False})
    )
    return folder


def invoke(command, *args, ok=True):
    result = CliRunner().invoke(command, [str(a) for a in args])
    if ok:
        assert result.exit_code == 0, result.output
    return result


@pytest.fixture
def wav_cache(tmp_path) -> tuple[Path, Path]:
    folder = tmp_path / "clips"
    folder.mkdir()
    for k, seconds in enumerate((1.0, 2.0, 0.5, 35.0)):  # the last past Whisper's 30 s window
        write_wav(folder / f"{k:05d}.wav", seconds, seed=k)
    cache = tmp_path / "c.h5"
    invoke(extract_command, folder, "--model", "fbank", "--out", cache, "--quiet", "--workers", 0)
    return folder, cache


def transcripts_of(cache: Path):
    with open_cache(cache) as opened:
        return opened.transcripts(), list(opened.ids)


def test_imported_transcripts_are_embedded_and_empty_ones_recorded_missing(
    wav_cache, tiny_bert, tmp_path, caplog
):
    from transformers import BertModel, BertTokenizer

    caplog.set_level("INFO")
    folder, cache = wav_cache
    csv_file = tmp_path / "t.csv"
    csv_file.write_text("Filename,text,language\n0,hello world,en\n1,dark tone low,en\n2,,\n")
    result = invoke(transcribe_command, folder, "--out", cache, "--transcripts", csv_file)
    assert "3 clips transcribed (1 empty)" in result.output
    text, ids = transcripts_of(cache)
    assert text.present.tolist() == [True, True, True, False]  # clip 3 was never transcribed
    assert text.text[:3] == ["hello world", "dark tone low", ""] and text.language[0] == "en"
    again = invoke(transcribe_command, folder, "--out", cache, "--transcripts", csv_file, ok=False)
    assert again.exit_code == 1 and "has transcripts already; --overwrite" in again.output
    csv_file.write_text("Filename,text\n00009,hello\n")
    unknown = invoke(
        transcribe_command,
        folder,
        "--out",
        cache,
        "--transcripts",
        csv_file,
        "--overwrite",
        ok=False,
    )
    assert unknown.exit_code == 1 and "1 transcript id(s) are not in" in unknown.output

    result = invoke(embed_text_command, cache, "--model", tiny_bert, "--tokens")
    assert "width 16 for 2 clips, 2 missing (1 with an empty transcript)" in result.output
    with open_cache(cache) as opened:
        pooled = opened.stream("text")
        tokens = opened.stream("text-tokens")
    assert pooled.present.tolist() == [True, True, False, False]
    tokenizer, model = (
        BertTokenizer.from_pretrained(tiny_bert),
        BertModel.from_pretrained(tiny_bert),
    )
    with torch.no_grad():
        states = model(**tokenizer(["dark tone low"], return_tensors="pt")).last_hidden_state[0]
    np.testing.assert_allclose(pooled.values[1], states.mean(0).numpy(), atol=1e-5)
    assert not pooled.values[2].any()  # the empty transcript: no vector guessed
    assert tokens.attrs["unit"] == "token" and np.diff(tokens.offsets).tolist() == [4, 5, 0, 0]
    np.testing.assert_allclose(tokens.frames[4:9].astype(np.float32), states.numpy(), atol=2e-3)


def test_a_sentence_transformers_folder_is_pooled_as_it_says(wav_cache, tiny_bert, tmp_path):

    from transformers import BertModel, BertTokenizer

    folder, cache = wav_cache
    model_dir = sentence_transformers_folder(tiny_bert, tmp_path / "st")
    csv_file = tmp_path / "t.csv"
    csv_file.write_text("Filename,text\n0,hello world\n")
    invoke(transcribe_command, folder, "--out", cache, "--transcripts", csv_file)
    invoke(embed_text_command, cache, "--model", model_dir, "--stream", "st")
    with open_cache(cache) as opened:
        pooled = opened.stream("st")
    tokenizer, model = (
        BertTokenizer.from_pretrained(tiny_bert),
        BertModel.from_pretrained(tiny_bert),
    )
    with torch.no_grad():
        cls = model(**tokenizer(["hello world"], return_tensors="pt")).last_hidden_state[0, 0]
    np.testing.assert_allclose(pooled.values[0], (cls / cls.norm()).numpy(), atol=1e-5)
    assert pooled.attrs["pooling"] == "cls"


def test_whisper_transcribes_every_clip_and_resumes_its_journal(wav_cache, tiny_whisper, caplog):
    caplog.set_level("INFO")
    folder, cache = wav_cache
    journal = cache.with_name(f"{cache.name}.streams") / "text.jsonl"
    journal.parent.mkdir()
    header = {"model": str(tiny_whisper), "language": None, "max_new_tokens": 4}
    # a run killed after its first batch, and in the middle of writing the next line
    journal.write_text(
        json.dumps(header)
        + "\n"
        + json.dumps({"id": "00002", "text": "kept from the journal", "language": "de"})
        + '\n{"id": "000'
    )
    args = [
        folder,
        "--out",
        cache,
        "--model",
        tiny_whisper,
        "--max-new-tokens",
        4,
        "--batch-size",
        2,
        "--quiet",
    ]
    result = invoke(transcribe_command, *args)
    assert "4 clips transcribed" in result.output
    assert any("4 clips, 1 already transcribed" in m for m in caplog.messages)
    text, ids = transcripts_of(cache)
    assert text.present.all() and not journal.exists()
    assert text.text[2] == "kept from the journal"
    assert set(text.language) <= {"en", "de"} and text.attrs["model"] == str(tiny_whisper)
    # an unfinished journal of other settings is refused, not mixed in; --overwrite restarts
    journal.parent.mkdir(exist_ok=True)
    journal.write_text(json.dumps({**header, "max_new_tokens": 9}) + "\n")
    refused = invoke(transcribe_command, *args, ok=False)
    assert refused.exit_code == 1
    assert "unfinished transcription with other settings" in refused.output
    restarted = invoke(transcribe_command, *args, "--overwrite")
    assert "4 clips transcribed" in restarted.output and not journal.exists()
    assert transcripts_of(cache)[0].text[2] != "kept from the journal"  # transcribed anew
    not_whisper = invoke(
        transcribe_command,
        folder,
        "--out",
        cache,
        "--model",
        "nowhere/none",
        "--offline",
        "--overwrite",
        ok=False,
    )
    assert not_whisper.exit_code == 1
    assert "cannot load speech recognition model 'nowhere/none'" in not_whisper.output


def test_transcripts_survive_extending_the_cache_with_another_split(sample_root, tmp_path):
    cache = tmp_path / "c.h5"
    base = [sample_root, "--model", "fbank", "--out", cache, "--quiet", "--workers", 0]
    invoke(extract_command, *base, "--split", "train")
    with open_cache(cache) as opened:
        train_ids = list(opened.ids)
    csv_file = tmp_path / "t.csv"
    csv_file.write_text("Filename,text\n" + "".join(f"{i},word {i}\n" for i in train_ids))
    invoke(transcribe_command, sample_root, "--out", cache, "--transcripts", csv_file)
    invoke(extract_command, *base, "--split", "valid")
    text, ids = transcripts_of(cache)
    assert len(ids) > len(train_ids)
    for clip_id, present, words in zip(ids, text.present, text.text, strict=True):
        assert present == (clip_id in train_ids)
        assert words == (f"word {clip_id}" if present else "")


def test_tiny_random_is_an_encoder_everywhere_and_offline_never_asks_the_hub(
    wav_cache, tmp_path, monkeypatch
):
    """`--model tiny-random` builds the offline fixture encoder once in the user's cache; with
    HF_HUB_OFFLINE an unknown model fails at once, naming the built-ins of its own kind; a
    folder with its own code is refused in one line, its code never run."""
    from emi_features.core.hub import resolve_model

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    folder, cache = wav_cache
    csv_file = tmp_path / "t.csv"
    csv_file.write_text("Filename,text\n0,hello world\n1,dark tone\n")
    invoke(transcribe_command, folder, "--out", cache, "--transcripts", csv_file)
    result = invoke(embed_text_command, cache, "--model", "tiny-random", "--stream", "words")
    assert "/features/words: width 32 for 2 clips" in result.output
    built = tmp_path / "xdg" / "emi" / "tiny-random-text" / "config.json"
    assert built.is_file() and resolve_model("tiny-random", "text") == str(built.parent)
    missing = invoke(embed_text_command, cache, "--model", "no-such/encoder", ok=False)
    assert missing.exit_code == 1
    assert "cannot load text model 'no-such/encoder': not a built-in text model (tiny-random)" in (
        missing.output
    )
    assert "offline" in missing.output and "fbank" not in missing.output
    custom = tmp_path / "custom"
    custom.mkdir()
    (custom / "config.json").write_text(
        json.dumps({"model_type": "mine", "auto_map": {"AutoConfig": "mine.MyConfig"}})
    )
    marker = tmp_path / "ran"
    (custom / "mine.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    refused = invoke(embed_text_command, cache, "--model", custom, ok=False)
    assert refused.exit_code == 1 and "holds its own Python code" in refused.output
    assert "--trust-remote-code" in refused.output and not marker.exists()
    trusted = invoke(embed_text_command, cache, "--model", custom, "--trust-remote-code", ok=False)
    assert marker.exists()  # asked for explicitly: the folder's code ran (and failed: one line)
    assert trusted.exit_code == 1 and "Traceback" not in trusted.output
    invoke(embed_text_command, cache, "--model", custom, ok=False)  # the next command: off again


def test_cls_pooling_dropped_special_tokens_and_a_stand_in_for_empty_transcripts(
    wav_cache, tiny_bert, tmp_path
):
    """The 8th ABAW winner's text vector (the first token's last state) and CASIA's token
    stream (special tokens dropped, an empty transcript embedded as "[EMPTY]"), each checked
    against the encoder run by hand; the settings are recorded and made again by remake."""
    from transformers import BertModel, BertTokenizer

    from emi_features.extraction.remake import ModelPlace, parse_recipe
    from emi_features.extraction.remake_steps import fields_flags
    from emi_features.text.settings import TextSettings

    folder, cache = wav_cache
    csv_file = tmp_path / "t.csv"
    csv_file.write_text("Filename,text\n0,hello world\n1,dark tone low\n2,\n")
    invoke(transcribe_command, folder, "--out", cache, "--transcripts", csv_file)
    invoke(embed_text_command, cache, "--model", tiny_bert, "--stream", "cls", "--pooling", "cls")
    invoke(
        embed_text_command,
        cache,
        "--model",
        tiny_bert,
        "--stream",
        "casia",
        "--tokens",
        "--special-tokens",
        "drop",
        "--empty-text",
        "[EMPTY]",
    )
    tokenizer = BertTokenizer.from_pretrained(tiny_bert)
    model = BertModel.from_pretrained(tiny_bert)

    def states(text: str) -> torch.Tensor:
        with torch.no_grad():
            return model(**tokenizer([text], return_tensors="pt")).last_hidden_state[0]

    with open_cache(cache) as opened:
        cls, pooled = opened.stream("cls"), opened.stream("casia")
        tokens = opened.stream("casia-tokens")
        recipe = opened.recipe()
    np.testing.assert_allclose(cls.values[1], states("dark tone low")[0].numpy(), atol=1e-5)
    assert cls.attrs["pooling"] == "cls" and cls.present.tolist() == [True, True, False, False]
    assert pooled.present.tolist() == [True, True, True, False]  # "[EMPTY]" stands in for clip 2
    np.testing.assert_allclose(pooled.values[2], states("[EMPTY]").mean(0).numpy(), atol=1e-5)
    lengths = np.diff(tokens.offsets).tolist()
    assert lengths[:2] == [2, 3]  # [CLS] and [SEP] dropped: the words' states only
    rows = tokens.frames[tokens.offsets[1] : tokens.offsets[2]].astype(np.float32)
    np.testing.assert_allclose(rows, states("dark tone low")[1:-1].numpy(), atol=2e-3)
    assert json.loads(tokens.attrs["settings"]) == {
        "pooling": "auto",
        "special_tokens": "drop",
        "empty_text": "[EMPTY]",
    }
    stream = parse_recipe(recipe, ModelPlace(tmp_path), "cache").streams["casia-tokens"]
    assert stream.tokens and fields_flags(TextSettings, stream.settings) == [
        "--pooling",
        "auto",
        "--special-tokens",
        "drop",
        "--empty-text",
        "[EMPTY]",
    ]
    bad = invoke(
        embed_text_command, cache, "--model", tiny_bert, "--empty-text", "x" * 80, ok=False
    )
    assert bad.exit_code == 2 and "--empty-text must be printable" in bad.output


SENTENCE_POOLING = """
import sys
from emi_features.text.embed import sentence_pooling
print(sentence_pooling(sys.argv[1]), sentence_pooling("example/plain-encoder"))
"""


@pytest.mark.slow
def test_a_sentence_transformers_model_by_hub_id_is_pooled_as_it_says(tiny_bert, tmp_path):
    """Its modules.json and 1_Pooling/config.json are read from the Hugging Face cache when it
    is named by its hub id (offline), as they are from a folder; a repository without them,
    or one not in the cache, is a plain encoder (the mean over its tokens)."""
    import os
    import subprocess
    import sys

    from twins import lay_into_hub_cache

    folder = sentence_transformers_folder(tiny_bert, tmp_path / "st")
    home = tmp_path / "hf"
    lay_into_hub_cache(home, "example/sentence-cls", folder)
    env = {**os.environ, "HF_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-c", SENTENCE_POOLING, "example/sentence-cls"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split("\n")[0] == "('cls', True) ('mean', False)"
