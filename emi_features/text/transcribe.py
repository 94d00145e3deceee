"""`emi transcribe INPUT --out CACHE.h5 [--model ASR]`: every clip of the cache transcribed by a
Hugging Face Whisper model into `/text` (see `cache.transcripts`), or `--transcripts FILE.csv`
imported instead.

Clips are decoded like extraction (16 kHz mono), sorted by length and batched; a clip longer
than Whisper's 30 s window is decoded by Whisper's own sequential long-form generation. The
language is detected per clip on its first 30 s (or forced with `language`). Each finished
batch is appended to a journal beside the cache (`CACHE.h5.streams/text.jsonl`, flushed and
synced), so a killed run resumes where it stopped; the journal is attached to the cache at the
end, under its lock, and removed.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from emi_features.audio.decode import DecodeError, load_audio, probe_seconds
from emi_features.cache.attach import finished_ids, ready_to_rewrite
from emi_features.cache.locks import ExclusiveLock, LockedError
from emi_features.cache.reader import CacheError
from emi_features.cache.schema import SAMPLE_RATE
from emi_features.cache.transcripts import attach_transcripts, read_transcripts_csv
from emi_features.core.dataset import find_clips
from emi_features.core.devices import default_device, resolve_device
from emi_features.core.hub import load_error, pretrained_options, resolve_model
from emi_features.core.models import ASR_MODEL_ID

log = logging.getLogger(__name__)
WINDOW_SAMPLES = 30 * SAMPLE_RATE  # Whisper reads 30 s windows
SKIPPED = "\0skipped"  # the journal's language for a clip that could not be decoded


@dataclass
class TranscribeResult:
    path: Path
    transcribed: int  # clips with a transcript in the cache
    empty: int  # of which the text is empty (silence, non-speech)
    skipped: dict[str, str]
    seconds: float


def journal_path(cache: Path) -> Path:
    return cache.with_name(f"{cache.name}.streams") / "text.jsonl"


def read_journal(
    path: Path, header: dict[str, Any], overwrite: bool, ids: set[str]
) -> tuple[dict[str, tuple], bool]:
    """(id -> (text, language) already done by an interrupted run with these settings, whether
    the journal holds this header). It tolerates exactly what a kill can leave: an empty file,
    a header cut short, a last row cut short, and the header written again by an earlier emi
    that was killed before its first batch. A journal of other settings, or an edited row (not
    a row, not text, a NUL byte, an id the cache lacks), is refused in one line naming the line
    (or, with overwrite, started again)."""
    if not path.is_file() or overwrite:
        path.unlink(missing_ok=True)
        return {}, False
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    first = _json_line(lines[0]) if lines else None
    if first is None and len(lines) <= 1:  # killed while writing the header
        path.unlink()
        return {}, False
    if first != header:
        raise CacheError(
            f"{path}: an unfinished transcription with other settings ({first}); "
            f"--overwrite starts again"
        )
    done = {}
    for number, line in enumerate(lines[1:], start=2):
        row = _json_line(line)
        if row is None and number == len(lines):
            break  # the line a kill cut short
        if row == header:
            continue
        problem = _row_problem(row, ids)
        if not problem and row["id"] in done:
            problem = f"clip {row['id']!r} appears twice"
        if problem:
            raise CacheError(f"{path}, line {number}: {problem}; --overwrite starts again")
        done[row["id"]] = (row["text"], row["language"])
    return done, True


def _json_line(line: str) -> Any:
    try:
        return json.loads(line)
    except json.JSONDecodeError:
        return None


def _row_problem(row: Any, ids: set[str]) -> str | None:
    """Why a journal row is not one emi wrote for this cache, or None."""
    if not isinstance(row, dict) or set(row) != {"id", "text", "language"}:
        return "not a journal row (id, text, language)"
    if not all(isinstance(row[key], str) for key in row):
        return "id, text and language must be text"
    if "\0" in row["text"] or "\0" in row["id"]:
        return f"the transcript of {row['id']!r} holds a NUL byte"
    if row["id"] not in ids:
        return f"clip {row['id']!r} is not in the cache"
    return None


def append_journal(path: Path, rows: list[dict[str, str]]) -> None:
    with path.open("a", encoding="utf-8") as handle:
        handle.write("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
        handle.flush()
        os.fsync(handle.fileno())


class Whisper:
    """A Whisper model and its processor: batches of 16 kHz waves -> (text, language)."""

    def __init__(
        self,
        model: str,
        *,
        device: torch.device,
        offline: bool = False,
        language: str | None = None,
        max_new_tokens: int | None = None,
    ):
        import transformers
        from transformers import AutoModelForSpeechSeq2Seq, AutoProcessor

        transformers.utils.logging.disable_progress_bar()
        transformers.utils.logging.set_verbosity_error()
        model = resolve_model(model, "speech recognition")
        options = pretrained_options(model, offline)
        dtype = torch.float16 if device.type == "cuda" else torch.float32
        try:
            self.processor = AutoProcessor.from_pretrained(model, **options)
            network = AutoModelForSpeechSeq2Seq.from_pretrained(model, dtype=dtype, **options)
        except (OSError, ValueError) as error:
            raise load_error(model, "speech recognition", offline, error, []) from error
        if not hasattr(network, "detect_language"):
            raise CacheError(f"{model}: not a Whisper model ({type(network).__name__})")
        self.network = network.eval().to(device)
        self.device, self.dtype = device, dtype
        self.language, self.max_new_tokens = language, max_new_tokens

    @torch.inference_mode()
    def __call__(self, waves: list[np.ndarray]) -> list[tuple[str, str]]:
        long = max(w.size for w in waves) > WINDOW_SAMPLES
        inputs = self.processor(
            waves,
            sampling_rate=SAMPLE_RATE,
            return_tensors="pt",
            truncation=not long,
            padding="longest" if long else "max_length",
            return_attention_mask=True,
        )
        features = inputs.input_features.to(self.device, self.dtype)
        if self.language:
            languages = [self.language] * len(waves)
        else:
            tokens = self.network.detect_language(features[..., :3000])
            names = self.processor.tokenizer.convert_ids_to_tokens(tokens.tolist())
            languages = [name.strip("<|>") for name in names]
        generated = self.network.generate(
            features,
            attention_mask=inputs.attention_mask.to(self.device),
            task="transcribe",
            language=languages,
            return_timestamps=long,
            max_new_tokens=self.max_new_tokens,
        )
        texts = self.processor.batch_decode(generated, skip_special_tokens=True)
        return [(t.strip(), lang) for t, lang in zip(texts, languages, strict=True)]


def transcribe(
    input_path: str | Path,
    *,
    out: str | Path,
    model: str = ASR_MODEL_ID,
    transcripts: str | Path | None = None,
    language: str | None = None,
    batch_size: int = 8,
    max_new_tokens: int | None = None,
    device: str | None = None,
    split: str | None = None,
    overwrite: bool = False,
    offline: bool = False,
    progress: bool = True,
) -> TranscribeResult:
    """Transcribe the clips of the cache `out` found under INPUT (or import `transcripts`)."""
    started = time.perf_counter()
    cache = Path(out)
    ids = set(finished_ids(cache))
    if transcripts is not None:
        found = read_transcripts_csv(Path(transcripts))
        attrs = {"source": str(Path(transcripts).resolve()), "model": ""}
        result = attach_transcripts(cache, found, attrs, overwrite=overwrite)
        return _result(cache, result.text, result.present, {}, started)
    ready_to_rewrite(cache)  # before any clip, not after the last
    journal = journal_path(cache)
    journal.parent.mkdir(exist_ok=True)
    try:
        lock = ExclusiveLock(journal, f"transcription of {cache}").acquire()
    except LockedError as error:
        raise CacheError(str(error)) from None
    try:
        header = {"model": model, "language": language, "max_new_tokens": max_new_tokens}
        done, has_header = read_journal(journal, header, overwrite, ids)
        if not has_header:
            append_journal(journal, [header])
        clips = _clips_of(input_path, split, ids, cache)
        todo = [c for c in clips if c.id not in done]
        log.info("%d clips, %d already transcribed in %s", len(clips), len(done), journal)
        if todo:
            asr = Whisper(
                model,
                device=resolve_device(device or default_device()),
                offline=offline,
                language=language,
                max_new_tokens=max_new_tokens,
            )
            _run(asr, todo, journal, done, batch_size, progress)
        skipped = {k: v[0] for k, v in done.items() if v[1] == SKIPPED}
        found = {k: v for k, v in done.items() if v[1] != SKIPPED}
        attrs = {"source": f"emi transcribe --model {model}", "model": model}
        result = attach_transcripts(cache, found, attrs, overwrite=True)
        journal.unlink()
    finally:
        lock.release()
    return _result(cache, result.text, result.present, skipped, started)


def _clips_of(input_path: str | Path, split: str | None, ids: set[str], cache: Path) -> list:
    """The clips under INPUT that the cache holds; a warning for those of the cache with no
    media there (unless one split was asked for)."""
    clips = [c for c in find_clips(Path(input_path), split=split) if c.id in ids]
    unfound = len(ids) - len(clips)
    if unfound and split is None:
        log.warning(
            "%d clip(s) of %s have no media under %s: left without transcripts",
            unfound,
            cache,
            input_path,
        )
    return clips


def _run(
    asr: Whisper, todo: list, journal: Path, done: dict, batch_size: int, progress: bool
) -> None:
    """Batches of clips of similar length through Whisper, each appended to the journal."""
    lengths = {c.id: probe_seconds(c.path) for c in todo}
    todo = sorted(todo, key=lambda c: lengths[c.id])
    with tqdm(total=len(todo), unit="clip", desc="transcribe", disable=not progress or None) as bar:
        for first in range(0, len(todo), batch_size):
            batch, waves, rows = todo[first : first + batch_size], [], []
            for clip in batch:
                try:
                    waves.append((clip.id, load_audio(clip.path)))
                except DecodeError as error:
                    log.warning("skip %s: %s", clip.id, error)
                    rows.append({"id": clip.id, "text": str(error), "language": SKIPPED})
            if waves:
                texts = asr([w for _, w in waves])
                rows += [
                    {"id": i, "text": t, "language": lang}
                    for (i, _), (t, lang) in zip(waves, texts, strict=True)
                ]
            append_journal(journal, rows)
            done.update({row["id"]: (row["text"], row["language"]) for row in rows})
            bar.update(len(batch))


def _result(cache: Path, text: list[str], present: np.ndarray, skipped: dict, started: float):
    empty = sum(1 for t, p in zip(text, present, strict=True) if p and not t)
    return TranscribeResult(
        cache, int(present.sum()), empty, skipped, time.perf_counter() - started
    )
