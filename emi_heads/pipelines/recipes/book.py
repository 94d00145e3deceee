"""The recipes: each published EMI system's stage one and stage two as its public code runs
them, every setting cited by repository, commit, path and line of the code that runs (where a
config file and the code disagree, the code wins and the recipe says so), and what the recipe
does differently (`differs`: encoders it reads frozen from the cache, stand-ins for what is not
published), shown by `emi recipe --list` and `--dry-run`.

A recipe is data (`recipes.parts`): its settings (models and knobs, each overridable with
`--set KEY=VALUE`) and its steps, each an `emi` command. Light: no torch. Each head and loop is
checked against a re-implementation of the published module and loop in the tests
(`tests/published_systems.py`), by outputs on transplanted weights and by the first steps.
"""

from __future__ import annotations

from emi_features.core.models import VAD_MODEL_ID
from emi_heads.pipelines.recipes.parts import (
    EXTRACT_AUDIO,
    MODEL_KEYS,
    PREDICT,
    WHOLE_NUMBER_SETTINGS,
    Recipe,
    Step,
    media_settings,
    media_steps,
    preset_options,
    train_step,
    training_of,
)
from emi_heads.training.presets import PRESETS

__all__ = ["MODEL_KEYS", "RECIPES", "WHOLE_NUMBER_SETTINGS", "Recipe", "Step"]

SKYY = "github.com/Skyy93/CVPR2024_abaw @2c4e3c1 (branch blackimgs)"
SKYY25 = "github.com/Skyy93/CVPR2025_abaw @e05e8c3 (branch EMI)"
CASIA = "github.com/ReLU-H/Team-CASIA26-ABAW-10th-EMI-track @48ce627"
MIMIC = "github.com/Dinithipurna/MimicMetrics @f8e24a2"
MIMIC_CODE = f"{MIMIC}, src/staged_fusion_training.py"

RECIPES: dict[str, Recipe] = {}


def _add(recipe: Recipe) -> None:
    RECIPES[recipe.name] = recipe


_add(
    Recipe(
        name="audio-2024",
        system="the audio-only system (arXiv 2403.11879; 6th ABAW EMI, 2nd)",
        published="test 0.554",
        settings={"audio_model": VAD_MODEL_ID, "epochs": "30", "seed": "1"},
        steps=(EXTRACT_AUDIO, train_step(*preset_options("lstm-2024")), PREDICT),
        citations=(
            f"audio: {SKYY}, abaw/model.py line 28 (audeering's VAD wav2vec2; its frames and "
            "per-frame VAD, abaw/audeer.py) and line 56 (frames ⊕ VAD, 1027 wide)",
            f"head and training: the preset lstm-2024 ({PRESETS['lstm-2024'].source}); [mean, "
            "last state] into the MLP: abaw/model.py line 66",
            f"12 s of audio per clip: {SKYY}, abaw/abaw_dataset.py line 123 "
            "(truncation=True, max_length=12*16000)",
            f"seed 1: {SKYY}, train_hume.py line 38",
        ),
        differs=(
            "the wav2vec2 is fine-tuned end to end in the published system (it is part of the "
            "model, abaw/model.py line 28, and in the AdamW, train_hume.py line 206); here it "
            "runs frozen, once, into the cache",
            "mixed precision on the GPU (train_hume.py, GradScaler): here bf16 autocast on a "
            "GPU, fp32 on a CPU",
        ),
    )
)

_add(
    Recipe(
        name="hallmen-2025",
        system="the 8th ABAW EMI winner (Hallmen et al., arXiv 2504.11460)",
        published="test 0.706",
        settings=media_settings(
            text_model="Alibaba-NLP/gte-en-mlm-base",
            max_tokens="128",
            image_model="google/vit-huge-patch14-224-in21k",
            seed="3407",
            face_seconds="80",
        ),
        steps=(
            *media_steps(
                text=("--pooling", "cls", "--max-tokens", "{max_tokens}"),
                face=("--frame-pooling", "mean"),
            ),
            train_step(
                *training_of("lstm-2024"),
                "--head",
                "streams-lstm",
                "--inputs",
                "frames,features/face,features/text",
                "--hidden",
                "0",
                "--stream-hidden",
                "features/face=768",
                "--layers",
                "2",
                "--dropout",
                "0",
                "--mlp-hidden",
                "1027",
                "--vad",
                "--no-mean",
                "--no-input-norm",
                "--output-activation",
                "none",
                "--no-bias-at-label-mean",
                "--no-standardize",
                "--stream-max-seconds",
                "features/face={face_seconds}",
            ),
            PREDICT,
        ),
        citations=(
            f"the model: {SKYY25}, abaw/model.py lines 41-46 (Linear(2563, 1027) -> Tanh -> "
            "Linear(1027, 6); LSTM(1027, 1027, 2) on the audio; LSTM(1280, 768, 2) on the face) "
            "and lines 63-82 (each LSTM read at the clip's last frame; audio, face and text "
            "concatenated in that order)",
            f"audio: wav2vec2 frames ⊕ per-frame VAD, 1027 wide: {SKYY25}, abaw/audeer.py lines "
            "46-56, abaw/model.py line 57; 12 s per clip: abaw/abaw_dataset.py lines 156, 170",
            f"text: Alibaba-NLP/gte-en-mlm-base ({SKYY25}, train_hume.py line 35; its own code, "
            "trust_remote_code=True, abaw/model.py line 25), the first token's last hidden "
            "state, 768 wide, no LSTM (abaw/model.py line 75), 128 tokens "
            "(abaw/abaw_dataset.py lines 178-185)",
            f"face: google/vit-huge-patch14-224-in21k, each frame the mean of the last hidden "
            f"state over all tokens: {SKYY25}, extract_google.py lines 17-18, 42; 5 frames/s: "
            "align_faces.py line 16; up to 400 frames (80 s): abaw/abaw_dataset.py lines 64-79",
            f"training: {SKYY25}, train_hume.py lines 38-61 (seed 3407, 30 epochs, batch 32, "
            "clip 100, MSE, lr 1e-4, cosine after 1 warm-up epoch), line 207 (AdamW, torch's "
            "weight decay), lines 213-228 (the schedule, per step); abaw/trainer.py lines 55-72 "
            "(clip_grad_value_, a scheduler step per batch); the best epoch by the valid mean r: "
            "train_hume.py lines 275-282, abaw/evaluate.py lines 8-14",
        ),
        remote_code=("text_model",),
        notes=(
            "--set transcripts=FILE imports transcripts you have instead of running Whisper",
            "gte-en-mlm-base runs its own code: --trust-remote-code, after reading it",
        ),
        differs=(
            "the wav2vec2 and gte-en-mlm-base are fine-tuned end to end in the published system "
            "(both are parts of the model, abaw/model.py lines 24-25, all in the AdamW, "
            "train_hume.py line 207); here they run frozen, once, into the cache",
            "the published wav2vec2 reads the batch padded to its longest clip without an "
            "attention mask (abaw/model.py line 56) and its audio state is taken at frame "
            "floor(samples x T / 192000) (lines 53-62), earlier than the clip's last frame when "
            "the batch's longest clip is under 12 s; here each clip is encoded alone and read "
            "at its own last frame",
            "the faces: MediaPipe FaceMesh landmarks and an FFHQ-style alignment in the "
            "published system (align_faces.py lines 18-150); here the --crop face detector, "
            "not aligned",
            "mixed precision on the GPU (train_hume.py line 37): here bf16 autocast on a GPU, "
            "fp32 on a CPU; the published keeps a best epoch only above r = 0 "
            "(train_hume.py line 245)",
        ),
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
            *media_steps(
                text=(
                    "--tokens",
                    "--max-tokens",
                    "{max_tokens}",
                    "--special-tokens",
                    "drop",
                    "--empty-text",
                    "[EMPTY]",
                )
            ),
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
            "code_all/extract_chatglm3_feats.py lines 218-221 (--model_name, --max_length 256, "
            "--drop_special_tokens 1), lines 126-135 and 288-291 (the tokenizer's "
            "special_tokens_mask; a text of nothing else keeps them); an empty transcript "
            'embedded as "[EMPTY]": line 272',
            f"face: their own ViT-B/16 fine-tuned on AffectNet-HQ, [CLS] per frame: {CASIA}, "
            "code_all/run_vit_train_and_extract.sh lines 19-33, code_all/extract_feats.sh line 11",
            f"head and training: the preset concat-2026 ({PRESETS['concat-2026'].source}); shares "
            "0.20 / 0.35 / 0.45: A:893-897 in shared/reference/seed2_head.py",
            "triplet term: A:200-242 (weight 0.05, margin 0.1, switched off in the final run, "
            "code_all/v15_ablation.sh); --set triplet_weight=0.05 switches it on",
        ),
        remote_code=("text_model",),
        notes=("ChatGLM3 runs its own code: --trust-remote-code, after reading it",),
        differs=(
            "the face encoder is CASIA's own fine-tuned ViT-B/16, not published: a "
            "face-expression ViT-B/16 from the hub stands in (--set "
            "image_model=YOUR_CHECKPOINT_FOLDER)",
            "the face's frame rate is not in the code: 5/s here",
        ),
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
            epochs="50",
            unimodal_epochs="50",
            seed="42",
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
                "384",
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
                "--clip-mode",
                "norm",
                "--lr-schedule",
                "plateau",
                "--no-ema",
                "--patience",
                "10",
                "--select-window",
                "1",
                "--min-improvement",
                "1e-4",
                "--max-seconds",
                "0",
                "--no-length-buckets",
                "--encoding-dropout",
                "0.3",
                "--unimodal-epochs",
                "{unimodal_epochs}",
                "--unimodal-runs",
                "separate",
                "--encoder-lr-scale",
                "0.05",
                "--l2-normalize",
                "features/text",
                "--min-steps",
                "0",
            ),
            PREDICT,
        ),
        citations=(
            f"the modules: {MIMIC_CODE} lines 292-300 (masked attention pooling), 303-396 "
            "(text: LayerNorm -> Linear(768, 384) -> GELU -> Dropout -> LayerNorm; audio and "
            "face: attention pooling first, then the same; each head Dropout -> Linear(6)), "
            "438-455 (fusion LayerNorm -> Dropout -> Linear(1152, 384) -> GELU -> Dropout -> "
            "Linear(6)), 503-514 (text, audio, face in that order)",
            f"what runs is the argparse defaults: {MIMIC_CODE} lines 751-805 (widths 768 / 1024 "
            "/ 768, hidden 384, fusion 384, dropout 0.45, modality dropout 0.3, 50 epochs per "
            "stage, lr 2e-4, weight decay 0.01, clip 1.0, batch 16, patience 10, combined loss "
            "0.7 CCC + 0.3 MSE, seed 42); configs/example.yaml (fusion 128, 100 fusion epochs, "
            "patience 15) is never read: the script has no --config option",
            f"stage one, a run per modality (text, audio, face): {MIMIC_CODE} lines 830-936, "
            "each `train_stage` (lines 630-702): its own AdamW, ReduceLROnPlateau(max, x0.5, "
            "patience max(3, 10 // 3)), the best epoch by the raw valid r above the best + 1e-4, "
            "early stop after 10; the heads removed (lines 864, 900, 936)",
            f"the fusion: {MIMIC_CODE} lines 1020-1025 (the encoders at lr x 0.05), 1027-1030 "
            "(plateau), 1056-1098 (best above + 1e-4, early stop after 10)",
            f"modality dropout on the encodings, every modality, one kept, rescaled by 1/(1-p): "
            f"{MIMIC_CODE} lines 483-495; text vectors L2-normalised on load: lines 240-242; "
            "batches a plain shuffle: lines 720-724; loss: lines 521-539",
        ),
        notes=("--set transcripts=FILE imports transcripts you have instead of running Whisper",),
        differs=(
            "the audio embedding is 'custom wav2vec2' (README, line 94), not published: the VAD "
            "model stands in; which token of DINOv2 and which pooling of GTE made their vectors "
            "is not in the code: DINOv2's [CLS], GTE's mean over tokens; the face's frame rate: "
            "5/s here",
            "the published restores only the fusion head in memory at the end (lines "
            "1100-1101); the checkpoint it writes at the best epoch holds the whole model "
            "(lines 1076-1083), which is what is kept here",
        ),
    )
)
