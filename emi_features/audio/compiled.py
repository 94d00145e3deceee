"""A compiled CPU path for the Hugging Face backbones (`--runtime onnxruntime|openvino`) and
int8 weights as an opt-in (`--precision int8`).

The encoder (the audio to the chosen hidden state) is exported once per backbone fingerprint,
layer and precision to ONNX, dynamic in batch and length, into `user_cache()/compiled/`
(written aside and renamed, so a killed export leaves nothing half-written), and run by ONNX
Runtime or OpenVINO; the VAD head stays in torch (a few thousand multiply-adds per frame).
`--precision int8` quantises the weights of the transformer layers' matrix products dynamically:
ONNX Runtime's `quantize_dynamic` on the exported graph, or torch's `quantize_dynamic` on the
`nn.Linear` layers with `--runtime torch`; OpenVINO's int8 needs NNCF and is refused.

OpenVINO is pinned to fp32 arithmetic (`INFERENCE_PRECISION_HINT f32`): on CPUs with bf16
units its default is bf16, which moved the tiny model's frames by 5e-2 against eager fp32. A
one-frame clip (under 720 samples) runs eager under OpenVINO: after one, OpenVINO 2026.4 got
every longer clip wrong.
A compiled backbone runs one clip per call without an attention mask, the CPU default
(`--batch-seconds 0`); padded batches and GPUs stay with torch.
"""

from __future__ import annotations

import abc
import copy
import hashlib
import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from emi_features.audio.backbones import Backbone, BackboneError, Encoded, HFBackbone
from emi_features.cache.atomic import atomic_path
from emi_features.core.hub import user_cache

log = logging.getLogger(__name__)
RUNTIMES = ("torch", "onnxruntime", "openvino")
PRECISIONS = ("fp32", "int8")
EXTRAS = {"onnxruntime": ("onnxruntime", "onnx"), "openvino": ("openvino", "onnx")}
OPSET = 17


class EncoderGraph(nn.Module):
    """What is exported: normalised audio (B, N) -> the chosen hidden state (B, T, D)."""

    def __init__(self, encoder: nn.Module, layer: int | None):
        super().__init__()
        self.encoder, self.layer = encoder, layer

    def forward(self, input_values: torch.Tensor) -> torch.Tensor:
        output = self.encoder(input_values, output_hidden_states=self.layer is not None)
        return output.last_hidden_state if self.layer is None else output.hidden_states[self.layer]


def check_runtime(runtime: str, precision: str, device: torch.device, batched: bool) -> None:
    """One line for a combination the compiled path does not run."""
    if runtime == "torch":
        if precision == "int8" and device.type != "cpu":
            raise BackboneError("--precision int8 runs on a CPU (torch's dynamic quantisation)")
        return
    if device.type != "cpu":
        raise BackboneError(f"--runtime {runtime} is a CPU path; on {device} use --runtime torch")
    if batched:
        raise BackboneError(f"--runtime {runtime} runs one clip per call: --batch-seconds 0")
    if runtime == "openvino" and precision == "int8":
        raise BackboneError(
            "--precision int8 with --runtime openvino needs NNCF; use "
            "--runtime onnxruntime or torch for int8"
        )
    for module in EXTRAS[runtime]:
        try:
            __import__(module)
        except ImportError:
            raise BackboneError(
                f"--runtime {runtime} needs {module}: pip install 'emi[{runtime}]'"
            ) from None


def compiled_backbone(backbone: Backbone, runtime: str, precision: str) -> Backbone:
    """`backbone` running on `runtime` at `precision` (itself for torch fp32)."""
    if runtime == "torch" and precision == "fp32":
        return backbone
    if not isinstance(backbone, HFBackbone):
        raise BackboneError(
            f"{backbone.name}: --runtime/--precision apply to Hugging Face "
            f"encoders, not to a built-in without weights"
        )
    if runtime == "torch":
        return TorchInt8Backbone(backbone)
    return EngineBackbone(backbone, runtime, precision)


class CompiledBackbone(Backbone):
    """A Hugging Face backbone whose encoder runs elsewhere than in eager fp32 torch: the
    source's description (name, fingerprint, grid, ...) and its VAD head, kept in torch;
    a subclass computes the frames."""

    def __init__(self, source: HFBackbone):
        super().__init__()
        for name in ("name", "fingerprint", "hidden_size", "grid", "has_vad", "feature_extractor"):
            setattr(self, name, getattr(source, name))
        self.uses_attention_mask = False
        self.head = source.head

    @abc.abstractmethod
    def frames(self, input_values: torch.Tensor, attention_mask: torch.Tensor | None):
        """(B, N) fp32 normalised audio -> (B, T, D) frames."""

    def encode(self, input_values: torch.Tensor, attention_mask: torch.Tensor) -> Encoded:
        frames = self.frames(input_values.float(), attention_mask)
        return Encoded(frames, self.head(frames) if self.has_vad else None)

    def vad(self, vectors: torch.Tensor) -> torch.Tensor:
        return self.head(vectors.float())


class TorchInt8Backbone(CompiledBackbone):
    """The encoder with dynamic int8 weights on every `nn.Linear` (torch's own CPU kernels)."""

    def __init__(self, source: HFBackbone):
        super().__init__(source)
        with warnings.catch_warnings():  # deprecated for torchao, still torch's CPU int8 path
            warnings.simplefilter("ignore")
            encoder = torch.ao.quantization.quantize_dynamic(
                copy.deepcopy(source.encoder), {nn.Linear}, dtype=torch.qint8
            )
        self.graph = EncoderGraph(encoder, source.layer).eval()

    def frames(self, input_values: torch.Tensor, attention_mask: torch.Tensor | None):
        return self.graph(input_values)


class EngineBackbone(CompiledBackbone):
    """The encoder's exported graph on ONNX Runtime or OpenVINO."""

    def __init__(self, source: HFBackbone, runtime: str, precision: str):
        super().__init__(source)
        path = exported_graph(source, precision)
        self.runtime = runtime
        self.run_graph = _onnxruntime(path) if runtime == "onnxruntime" else _openvino(path)
        # OpenVINO 2026.4 computes wrong frames for every later length once it has run a
        # one-frame input (0.16 max error on the tiny model, measured): those run eager
        self.eager = source if runtime == "openvino" else None

    def frames(self, input_values: torch.Tensor, attention_mask: torch.Tensor | None):
        if attention_mask is not None:
            raise BackboneError(
                f"--runtime {self.runtime} runs one clip per call: --batch-seconds 0"
            )
        if self.eager is not None and self.grid.frame_count(input_values.shape[-1]) <= 1:
            return self.eager.encode(input_values, None).frames
        return torch.from_numpy(self.run_graph(input_values.cpu().numpy()))


def exported_graph(backbone: HFBackbone, precision: str) -> Path:
    """The ONNX file of the backbone's encoder at `precision`, exported on first use."""
    key = hashlib.blake2b(
        f"{backbone.fingerprint}|{backbone.layer}|{OPSET}".encode(), digest_size=8
    ).hexdigest()
    folder = user_cache() / "compiled"
    folder.mkdir(parents=True, exist_ok=True)
    fp32 = folder / f"{key}-fp32.onnx"
    if not fp32.is_file():
        log.info("exporting %s to ONNX (once): %s", backbone.name, fp32)
        graph = EncoderGraph(backbone.encoder.float(), backbone.layer).eval()  # export restores it
        example = torch.zeros(1, 16_000)
        # the TorchScript exporter (deprecated since torch 2.9): its graph keeps the length
        # dynamic (tested from 1 to 128 frames); its tracer warnings concern branches fixed
        # for inference (no causal mask, no SpecAugment)
        with atomic_path(fp32) as temporary, torch.inference_mode(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                graph,
                (example,),
                str(temporary),
                input_names=["input_values"],
                output_names=["frames"],
                opset_version=OPSET,
                dynamo=False,
                dynamic_axes={
                    "input_values": {0: "batch", 1: "samples"},
                    "frames": {0: "batch", 1: "frames"},
                },
            )
    if precision == "fp32":
        return fp32
    int8 = folder / f"{key}-int8.onnx"
    if not int8.is_file():
        from onnxruntime.quantization import QuantType, quantize_dynamic

        log.info("quantising %s to int8 weights (once): %s", backbone.name, int8)
        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)  # its advice to pre-process, on the root logger
        try:
            with atomic_path(int8) as temporary:
                quantize_dynamic(
                    str(fp32),
                    str(temporary),
                    weight_type=QuantType.QInt8,
                    op_types_to_quantize=["MatMul"],
                )
        finally:
            root.setLevel(level)
    return int8


def _onnxruntime(path: Path) -> Any:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return lambda values: session.run(None, {"input_values": values})[0]


def _openvino(path: Path) -> Any:
    import openvino

    core = openvino.Core()
    compiled = core.compile_model(
        core.read_model(str(path)), "CPU", {"INFERENCE_PRECISION_HINT": "f32"}
    )
    return lambda values: np.asarray(compiled(values)[0])
