"""The models emi names, in one home: the default model of each stage-one command, and the
licence of every model whose card emi has read (an exported model card lists the licence of each
model its features need). Light: nothing but constants.
"""

from __future__ import annotations

VAD_MODEL_ID = "audeering/wav2vec2-large-robust-12-ft-emotion-msp-dim"
# The default models of the other modalities (emi transcribe, emi embed-text, --modality vision)
ASR_MODEL_ID = "openai/whisper-large-v3"
TEXT_MODEL_ID = "sentence-transformers/paraphrase-multilingual-mpnet-base-v2"
IMAGE_MODEL_ID = "openai/clip-vit-base-patch32"
# What the models emi names are licensed under (from their model cards); an exported model card
# lists the licence of every model its features need.
MODEL_LICENCES = {
    VAD_MODEL_ID: "CC BY-NC-SA 4.0 (research only)",
    ASR_MODEL_ID: "Apache 2.0",
    TEXT_MODEL_ID: "Apache 2.0",
    IMAGE_MODEL_ID: "MIT",
    "fbank": "none: no weights (log-mel filter bank)",
    "fbank-10ms": "none: no weights (log-mel filter bank)",
    "tiny-random": "none: random weights built offline (a fixture, not a real encoder)",
    "tiny-random-untrained": "none: random weights built offline (a fixture)",
}
