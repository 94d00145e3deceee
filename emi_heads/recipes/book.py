"""The recipes: each published EMI system's stage-one steps and stage-two training, every
setting read from its public code and cited (repository, path, line); where the code is silent,
from the paper or the issue that asked for the recipe, and said so.

A recipe is data: its settings (models and knobs, each overridable with `--set KEY=VALUE`) and
its steps, each an `emi` command whose arguments name settings as `{key}`. Light: no torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from emi_features.core.models import ASR_MODEL_ID, VAD_MODEL_ID
from emi_heads.training.presets import PRESETS

SKYY = "github.com/Skyy93/CVPR2024_abaw"
CASIA = "github.com/ReLU-H/Team-CASIA26-ABAW-10th-EMI-track @48ce627"
MIMIC = "github.com/Dinithipurna/MimicMetrics @f8e24a2"
MODEL_KEYS = ("audio_model", "asr_model", "text_model", "image_model")
WHOLE_NUMBER_SETTINGS = ("epochs", "seed", "max_tokens")  # `--set` checks them before any step


@dataclass(frozen=True)
class Step:
    """One `emi` command of a recipe. `makes`: what it leaves, checked before it is skipped
    (`cache`, `transcripts`, `stream:NAME`, `run`, `submission`)."""

    name: str
    command: tuple[str, ...]  # `emi` subcommand and arguments; `{key}` are settings
    makes: str
    when: str = ""  # a setting that must be non-empty for the step to run


@dataclass(frozen=True)
class Recipe:
    name: str
    system: str
    published: str  # the published score, as the paper reports it
    settings: dict[str, str]
    steps: tuple[Step, ...]
    citations: tuple[str, ...]
    remote_code: tuple[str, ...] = ()  # settings whose default model runs its own code
    notes: tuple[str, ...] = field(default=())


DATA, CACHE, RUN = "{data}", "{cache}", "{run}"
EXTRACT_AUDIO = Step("audio", ("extract", DATA, "--model", "{audio_model}", "--out", CACHE),
                     "cache")  # fmt: skip
TRANSCRIBE = Step("transcripts", ("transcribe", DATA, "--model", "{asr_model}", "--out", CACHE),
                  "transcripts", when="!transcripts")  # fmt: skip
IMPORT_TRANSCRIPTS = Step(
    "transcripts", ("transcribe", DATA, "--transcripts", "{transcripts}", "--out", CACHE),
    "transcripts", when="transcripts",
)  # fmt: skip
FACE = Step("face", ("extract", DATA, "--modality", "vision", "--model", "{image_model}",
                     "--stream", "face", "--fps", "{fps}", "--crop", "{crop}", "--out", CACHE),
            "stream:face")  # fmt: skip
PREDICT = Step("submission", ("predict", RUN, "--cache", CACHE, "--ids", "{data}/test_split.csv",
                              "--out", "{submission}"), "submission")  # fmt: skip
TRAIN = ("train", CACHE, "--train", "{data}/train_split.csv", "--valid",
         "{data}/valid_split.csv", "--out", RUN, "--seed", "{seed}")  # fmt: skip


def text_step(*extra: str) -> Step:
    return Step("text", ("embed-text", CACHE, "--model", "{text_model}", "--stream", "text",
                         *extra), "stream:text")  # fmt: skip


def train_step(*options: str) -> Step:
    return Step("train", (*TRAIN, *options, "--epochs", "{epochs}"), "run")


def media_steps(*text_options: str) -> tuple[Step, ...]:
    """The stage one of a system that reads the voice, the words and the face: the audio
    backbone, the transcripts (imported with `--set transcripts=FILE`, else Whisper), the text
    encoder (with `text_options`) and the image encoder on the face."""
    return (EXTRACT_AUDIO, IMPORT_TRANSCRIPTS, TRANSCRIBE, text_step(*text_options), FACE)


def media_settings(**models: str) -> dict[str, str]:
    """The settings every multimodal recipe has, its own models and knobs over them."""
    return {"audio_model": VAD_MODEL_ID, "asr_model": ASR_MODEL_ID, "transcripts": "",
            "fps": "5", "crop": "face", "epochs": "30", "seed": "0", **models}  # fmt: skip


def preset_options(name: str) -> tuple[str, ...]:
    return ("--preset", name)


def training_of(preset: str, *, without: tuple[str, ...] = ("epochs",)) -> tuple[str, ...]:
    """A preset's training settings as `emi train` options, for a recipe that trains another
    head the way that preset's system trained its own (the same authors' code); `without`:
    settings the recipe sets itself."""
    options: list[str] = []
    for key, value in PRESETS[preset].train.items():
        if key in without:
            continue
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            options.append(flag if value else f"--no-{flag[2:]}")
        else:  # None: the option's 0 (max_seconds: all; ema_decay: tied to the run)
            options += [flag, "0" if value is None else str(value)]
    return tuple(options)


RECIPES: dict[str, Recipe] = {}


def _add(recipe: Recipe) -> None:
    RECIPES[recipe.name] = recipe


_add(
    Recipe(
        name="audio-2024",
        system="the audio-only system (arXiv 2403.11879; 6th ABAW EMI, 2nd)",
        published="test 0.554",
        settings={"audio_model": VAD_MODEL_ID, "epochs": "30", "seed": "0"},
        steps=(EXTRACT_AUDIO, train_step(*preset_options("lstm-2024")), PREDICT),
        citations=(
            f"audio: {SKYY}, branch blackimgs, abaw/model.py line 28 (audeering's VAD wav2vec2, "
            "frames and VAD read by abaw/audeer.py)",
            f"head and training: the preset lstm-2024 ({PRESETS['lstm-2024'].source})",
            f"12 s of audio per clip: {SKYY}, branch blackimgs, abaw/abaw_dataset.py line 123 "
            "(max_length=12*16000)",
        ),
    )
)

_add(
    Recipe(
        name="hallmen-2025",
        system="the 8th ABAW EMI winner (Hallmen et al., arXiv 2504.11460)",
        published="test 0.706",
        settings=media_settings(
            text_model="thenlper/gte-large",
            max_tokens="128",
            image_model="google/vit-huge-patch14-224-in21k",
        ),
        steps=(
            *media_steps("--tokens", "--max-tokens", "{max_tokens}"),
            train_step(
                *training_of("lstm-2024"),
                "--head",
                "streams-lstm",
                "--inputs",
                "frames,features/text-tokens,features/face",
                "--hidden",
                "0",
                "--layers",
                "2",
                "--dropout",
                "0",
                "--mlp-hidden",
                "0",
                "--no-mean",
                "--no-input-norm",
                "--output-activation",
                "none",
                "--no-bias-at-label-mean",
                "--no-standardize",
            ),
            PREDICT,
        ),
        citations=(
            f"one LSTM per stream, its hidden size its input's width, 2 layers: {SKYY}, branch "
            "blackimgs, abaw/model.py lines 35-36 (LSTM(1027, 1027), LSTM(775, 775), num_layers=2)",
            f"fusion Linear(W, W) -> Tanh -> Linear(W, 6) over the concatenated states: {SKYY}, "
            "branch blackimgs, abaw/model.py lines 30-34",
            "last states only into the fusion MLP; GTE per token, 128 tokens; ViT-H on the face; "
            "12 s of audio: the paper, as the issue summarises it (the 2025 code is not in the "
            "public snapshot we read)",
            f"training (AdamW 1e-4, 30 epochs, batch 32, one warm-up epoch then cosine, clip 100): "
            f"the same authors' 2024 code, {SKYY}, train_hume.py lines 39-60, as the preset "
            "lstm-2024",
            "frame rate of the face (5/s) and the GTE size (large): not in the code we read; ours",
        ),
        notes=("--set transcripts=FILE imports transcripts you have instead of running Whisper",),
    )
)

_add(
    Recipe(
        name="casia-2026",
        system="CASIA, 10th ABAW EMI (arXiv 2603.13760)",
        published="valid 0.479",
        settings=media_settings(
            audio_model="microsoft/wavlm-large",
            asr_model="openai/whisper-large-v3",
            text_model="THUDM/chatglm3-6b",
            max_tokens="256",
            image_model="trpakov/vit-face-expression",
            triplet_weight="0",
        ),
        steps=(
            *media_steps("--tokens", "--max-tokens", "{max_tokens}"),
            train_step(
                *preset_options("concat-2026"),
                "--inputs",
                "features/face,frames,features/text-tokens",
                "--stream-aux-weights",
                "features/face=0.20,frames=0.35,features/text-tokens=0.45",
                "--triplet-weight",
                "{triplet_weight}",
            ),
            PREDICT,
        ),
        citations=(
            f"WavLM-large frames: {CASIA}, code_all/run_extract_wavlm_large_8gpu_shards.sh line 13 "
            "(--model_name microsoft/wavlm-large)",
            f"Whisper large-v3 transcripts: {CASIA}, code_all/run_audio2text_whisper_large_8gpu.sh "
            "line 10 (MODEL_NAME)",
            f"ChatGLM3-6B states per token, 256 tokens, special tokens dropped: {CASIA}, "
            "code_all/extract_chatglm3_feats.py, arguments --model_name, --max_length, "
            "--drop_special_tokens",
            f"face: their own ViT-B/16 fine-tuned on AffectNet-HQ, [CLS] per frame: {CASIA}, "
            "code_all/run_vit_train_and_extract.sh lines 19-33, code_all/extract_feats.sh line 11; "
            "not on the hub, so a face-expression ViT-B/16 from the hub stands in (--set "
            "image_model=YOUR_CHECKPOINT_FOLDER)",
            f"head and training: the preset concat-2026 ({PRESETS['concat-2026'].source}); shares "
            "0.20 / 0.35 / 0.45: A:893-897 in shared/reference/seed2_head.py",
            "triplet term: A:200-242 (weight 0.05, margin 0.1, switched off in the final run, "
            "code_all/v15_ablation.sh); --set triplet_weight=0.05 switches it on",
            "frame rate of the face (5/s): not in the code we read; ours",
        ),
        remote_code=("text_model",),
        notes=("ChatGLM3 runs its own code: --trust-remote-code, after reading it",),
    )
)

_add(
    Recipe(
        name="mimicmetrics-2026",
        system="MimicMetrics, 10th ABAW EMI, 3rd (arXiv 2605.21869)",
        published="test 0.570",
        settings=media_settings(
            text_model="thenlper/gte-base",
            image_model="facebook/dinov2-base",
            epochs="100",
            unimodal_epochs="50",
        ),
        steps=(
            *media_steps(),
            train_step(
                "--head",
                "concat-frames",
                "--inputs",
                "features/text,frames,features/face",
                "--frame-pool",
                "attention",
                "--branch-layout",
                "pool-project",
                "--pool-steps",
                "0",
                "--branch-dim",
                "384",
                "--mlp-hidden",
                "128",
                "--dropout",
                "0.45",
                "--vad-latent",
                "off",
                "--aux-weight",
                "0",
                "--output-activation",
                "none",
                "--no-bias-at-label-mean",
                "--no-standardize",
                "--loss",
                "0.7*ccc+0.3*mse",
                "--lr",
                "2e-4",
                "--weight-decay",
                "0.01",
                "--batch-size",
                "16",
                "--grad-clip",
                "1.0",
                "--lr-schedule",
                "cosine-epoch",
                "--no-ema",
                "--patience",
                "15",
                "--max-seconds",
                "0",
                "--modality-dropout",
                "0.3",
                "--unimodal-epochs",
                "{unimodal_epochs}",
                "--encoder-lr-scale",
                "0.05",
                "--min-steps",
                "0",
            ),
            PREDICT,
        ),
        citations=(
            f"text GTE 768-d, audio wav2vec2 1024-d, face DINOv2-base 768-d: {MIMIC}, "
            "configs/example.yaml lines 16-18",
            f"branches 384 wide, fusion 128, dropout 0.45, modality dropout 0.3: {MIMIC}, "
            "configs/example.yaml lines 19-24",
            f"masked attention pooling: {MIMIC}, src/staged_fusion_training.py lines 292-300",
            f"0.7 CCC + 0.3 MSE, AdamW 2e-4, weight decay 0.01, batch 16, clip 1.0: {MIMIC}, "
            "configs/example.yaml lines 27-40",
            f"50 epochs per modality, then 100 of fusion with patience 15: {MIMIC}, "
            "configs/example.yaml lines 43-60; encoders at lr x 0.05 in the fusion: "
            "src/staged_fusion_training.py lines 1020-1025",
            "no sigmoid on the output: src/staged_fusion_training.py lines 316-319, 445-452",
            f"branches pooled first, then LayerNorm -> Linear -> GELU -> Dropout -> LayerNorm, "
            f"heads Dropout -> Linear, fusion LayerNorm -> Dropout -> Linear -> GELU -> Dropout -> "
            f"Linear (--branch-layout pool-project): {MIMIC}, src/staged_fusion_training.py lines "
            "303-456",
            "ReduceLROnPlateau (line 649) is not one of our schedules: cosine-epoch instead; "
            "modality dropout blanks the streams' inputs, not their encodings (lines 483-495); "
            "the wav2vec2 is the VAD model (theirs is 'custom', not published); the GTE size "
            "(base, 768-d) from the input width",
        ),
    )
)
