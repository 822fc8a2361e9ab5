"""One config object per run: dataclasses with defaults in code, YAML + dotted overrides.

A run is described by :class:`Config`. ``load(path, overrides)`` reads a YAML file,
applies ``key.sub=value`` overrides, validates every key and every value that has a
fixed set of choices *before* any work starts, and returns a frozen-by-convention
``Config``. ``dump(cfg)`` gives the YAML that is saved as ``RUN_DIR/config.yaml`` so a
run can be reproduced and every downstream command (eval, explain, report) reads the
same settings back.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """A config key or value is invalid; the message names the key and what is allowed."""


def choice(default: Any, choices: list[Any], help: str = "") -> Any:
    """A dataclass field whose value must be one of ``choices``."""
    return field(default=default, metadata={"choices": list(choices), "help": help})


def opt(default: Any, help: str = "", low: float | None = None, high: float | None = None, words: tuple[str, ...] = ()) -> Any:
    """A documented dataclass field, optionally with an inclusive numeric range and the words it takes besides numbers."""
    return field(default=default, metadata={"help": help, "low": low, "high": high, "words": words})


@dataclass
class DataCfg:
    name: str = opt("shapes", "dataset name, see `xbyol datasets`")
    root: str | None = opt(None, "directory of the data (folder, cifar10, cifar100, coco-captions)")
    image_size: int = opt(32, "side of the square images fed to the model, pixels", low=8)
    num_train: int = opt(10000, "number of training images (generated datasets)", low=1)
    num_test: int = opt(2000, "number of test images (generated datasets)", low=1)
    seed: int = opt(0, "seed of generation and of the train/test split")
    batch_size: int = opt(256, "images per optimiser step (per process under DDP)", low=1)
    num_workers: int | str = opt("auto", "DataLoader worker processes that read and decode batches; auto: for datasets read from image files (folder, coco-captions) on CUDA, the cores left to each process minus one (decoding beside the GPU's step); 0 on the CPU (the step's arithmetic needs every core) and for datasets held in memory", low=0, words=("auto",))
    strict: bool = opt(False, "raise on an unreadable image instead of skipping it")
    captions_file: str | None = opt(None, "captions file (folder: captions.jsonl; coco-captions: the JSON)")
    test_root: str | None = opt(None, "separate directory for the test split (folder, coco-captions images)")
    test_captions_file: str | None = opt(None, "captions of the test split (folder: of test_root; coco-captions: its JSON)")
    validation: bool = opt(False, "mnist, fashion-mnist, digits: hold the end of the training images out as the evaluation split (what `xbyol eval`, `--eval`, reports and the explorer call test) and train on the rest; the test split is not read. Held out: the last 10,000 of the 60,000 MNIST / Fashion-MNIST training images (the last sixth of another file), the last 20% (287) of digits' 1,437. Choose settings with it on; score the test split once, with it off")


@dataclass
class AugCfg:
    crop_scale_min: float = opt(0.2, "RandomResizedCrop minimum area fraction (paper 0.08; small images need more)", 0.01, 1.0)
    crop_scale_max: float = opt(1.0, "RandomResizedCrop maximum area fraction", 0.01, 1.0)
    flip_p: float = opt(0.5, "horizontal flip probability", 0.0, 1.0)
    jitter: tuple[float, float, float, float] = opt((0.4, 0.4, 0.2, 0.1), "colour jitter brightness, contrast, saturation, hue")
    jitter_p: float = opt(0.8, "colour jitter probability", 0.0, 1.0)
    grayscale_p: float = opt(0.2, "grayscale probability", 0.0, 1.0)
    blur_p: tuple[float, float] = opt((1.0, 0.1), "Gaussian blur probability for view 1 and view 2")
    blur_kernel_frac: float = opt(0.1, "blur kernel size as a fraction of the image side (odd, >= 3)", 0.0, 1.0)
    blur_sigma: tuple[float, float] = opt((0.1, 2.0), "blur sigma range")
    solarize_p: tuple[float, float] = opt((0.0, 0.2), "solarisation probability for view 1 and view 2")
    normalize: bool = opt(True, "normalise views with the dataset mean/std")
    early_size: int | None = opt(None, "progressive resizing: make the BYOL views of the first aug.early_fraction of the steps at this side (pixels, below data.image_size; a step's arithmetic scales with its square) and the rest at data.image_size; null: every step at data.image_size", low=8)
    early_fraction: float = opt(0.5, "the part of the steps made with aug.early_size views", 0.0, 1.0)
    compile: bool | str = choice("auto", ["auto", True, False], "make each view with one compiled graph of a few fused kernels for the whole batch (torch.compile of xbyol.augment.batched) instead of eager ops on the samples each op touches; the same views up to float rounding; auto: on CUDA, where the eager ops' many small kernel launches hold a step back, and eager on the CPU, whose eager ops were tuned for it (BENCHMARKS.md, \"GPU\"); if compiling fails the run warns once and goes on eagerly")


@dataclass
class ModelCfg:
    backbone: str = opt("resnet10_16", "backbone name, see `xbyol.models.names()`")
    proj_hidden: int = opt(4096, "projector hidden width (paper 4096)", low=1)
    proj_dim: int = opt(256, "projector output width (paper 256)", low=1)
    pred_hidden: int = opt(4096, "predictor hidden width (paper 4096)", low=1)
    sync_bn: bool = opt(False, "convert BatchNorm to SyncBatchNorm under DDP")
    interpretable_layer: bool = opt(False, "add an interpretable conv layer (Zhang et al. 2018) on top of the backbone")
    interpretable_weight: float = opt(0.1, "weight of the interpretable-layer filter loss", low=0.0)
    interpretable_tau: float | None = opt(None, "template scale of the filter loss (default the paper's 0.5/(h*w))", low=0.0)


@dataclass
class SemanticCfg:
    """Options of the explainable-BYOL method (``method.name: xbyol``)."""

    loss: str = choice("contrastive", ["contrastive", "cosine"], "semantic loss form")
    weight: float = opt(1.0, "lambda: weight of the semantic loss beside BYOL", low=0.0)
    byol_weight: float = opt(1.0, "weight of the BYOL term (0: the semantic loss alone, e.g. to fine-tune a BYOL encoder on the concept labels with train.init_from)", low=0.0)
    temperature: float = opt(0.1, "temperature of the contrastive semantic loss", low=1e-6)
    prompt: str = opt("{}", "prompt template applied to every concept text, e.g. 'a photo of something {}'")
    text_model: str = opt("all-MiniLM-L6-v2", "sentence-transformers model: the bundled name or a local path")
    concepts_file: str | None = opt(None, "text file with one concept per line (default: the dataset's vocabulary)")
    fusion: bool = opt(True, "concept-attention fusion of the representation")
    input: str = choice("clean", ["clean", "views"], "images the semantic loss sees: the un-augmented batch (one extra forward; colour jitter and crops cannot contradict the labels) or the two BYOL views (no extra cost)")
    posthoc_steps: int = opt(300, "full-batch Adam steps fitting the post-hoc concept map of runs without a learned one", low=1)
    posthoc_lr: float = opt(0.01, "learning rate of the post-hoc concept-map fit", low=0.0)
    sscs_background: float = opt(0.5, "SSCS background rule: a pixel is background below min + level * (max - min) of its image's best concept score", 0.0, 1.0)


@dataclass
class CrossModalCfg:
    """Options of the cross-modal methods (``method.name: xmodal`` or ``clip``)."""

    text_encoder: str = choice("frozen", ["frozen", "finetune", "scratch"], "text encoder: frozen MiniLM + adapter, fine-tune its last layers, or a small transformer from scratch")
    text_model: str = opt("all-MiniLM-L6-v2", "sentence-transformers model: the bundled name or a local path")
    finetune_layers: int = opt(1, "number of last MiniLM layers trained when text_encoder=finetune", low=0)
    embed_dim: int = opt(128, "width of the shared image-text space", low=1)
    hidden: int = opt(1024, "hidden width of the projectors and predictors", low=1)
    image_intra_weight: float = opt(0.0, "weight of the image-image BYOL term", low=0.0)
    text_intra_weight: float = opt(0.0, "weight of the text-text BYOL term (caption dropout)", low=0.0)
    caption_dropout: float = opt(0.1, "word dropout probability for the second text view", 0.0, 1.0)
    collapse_std_threshold: float = opt(0.3, "warn when the embedding std falls below this fraction of 1/sqrt(d)", low=0.0)
    projector_norm: str = choice("batch", ["batch", "layer", "none"], "normalisation at the end of both projectors: batch = non-affine BatchNorm (SimSiam's projector output BN; standardises every shared-space dimension over the batch, so samples share statistics), layer = non-affine LayerNorm (standardises each embedding on its own, batch-independent), none (replaces the old boolean projector_bn: true = batch, false = none)")
    text_adapter_hidden: int = opt(384, "hidden width of the residual adapter on the frozen text encoder", low=1)
    scratch_width: int = opt(128, "width of the from-scratch text transformer", low=8)
    scratch_layers: int = opt(2, "layers of the from-scratch text transformer", low=1)
    scratch_heads: int = opt(4, "attention heads of the from-scratch text transformer", low=1)
    image_aug: str = choice("none", ["none", "crop"], "augmentation of the image paired with its caption: none, or a mild crop (no flip or colour change, which would contradict the caption)")
    clip_temperature: float = opt(0.07, "initial CLIP temperature (logit scale = 1/T, learnt, clamped to <= 100)", 0.01, 1.0)
    clip_equal_captions: bool = opt(True, "CLIP: treat batch items with the same caption string as positives, not negatives")


@dataclass
class MethodCfg:
    name: str = opt("byol", "training objective, a registered method (`xbyol.methods.names()`)")
    tau_base: float = opt(0.996, "EMA momentum at step 0; follows a cosine schedule to 1", 0.0, 1.0)
    concat_views: bool | str = choice("auto", ["auto", True, False], "BYOL/xbyol: pass both views through the networks as one batch (BatchNorm statistics shared across the views) or one view at a time (statistics per view, as in the paper's code); auto: concatenated")
    semantic: SemanticCfg = field(default_factory=SemanticCfg)
    crossmodal: CrossModalCfg = field(default_factory=CrossModalCfg)


@dataclass
class TrainCfg:
    epochs: int = opt(10, "passes over the training set (ignored when steps is set)", low=0)
    steps: int | None = opt(None, "total optimiser steps (overrides epochs)")
    optimizer: str = choice("lars", ["lars", "sgd", "adamw"], "optimiser")
    lr: float = opt(0.2, "base learning rate, scaled by batch_size/256", low=0.0)
    weight_decay: float = opt(1.5e-6, "weight decay (not applied to biases and norm layers)", low=0.0)
    momentum: float = opt(0.9, "SGD/LARS momentum", 0.0, 1.0)
    lars_eta: float = opt(1e-3, "LARS trust coefficient", low=0.0)
    predictor_lr_scale: float = opt(1.0, "learning rate of the BYOL predictor as a multiple of train.lr's schedule (Tian et al. 2021, DirectPred, and Chen & He 2021, SimSiam, find the predictor gains from a larger or unscheduled one); 1: one rate for every parameter", low=0.0)
    warmup_steps: int | None = opt(None, "linear warm-up steps (default: 10% of total)")
    precision: str = choice("auto", ["auto", "fp32", "bf16", "fp16"], "autocast precision; auto: bf16 where the hardware has it (AVX512-BF16/AMX CPUs, recent GPUs), fp16 with loss scaling on older GPUs, else fp32")
    channels_last: bool | str = choice("auto", ["auto", True, False], "channels_last memory format; auto: on for convolutional backbones")
    retain_freed_memory: bool = opt(True, "CPU runs (Linux, glibc): keep freed host memory in the process instead of handing it back to the kernel after every step, so new tensors do not page-fault (the process keeps its peak memory until it exits)")
    grad_clip: float | None = opt(None, "clip the gradient norm to this value")
    seed: int = opt(0, "seed of model init, augmentation and data order")
    init_from: str | None = opt(None, "start from the encoder (backbone and projector, online and target) of this run directory or checkpoint file instead of a fresh init: fine-tuning")
    deterministic: bool = opt(False, "torch.use_deterministic_algorithms(True)")
    device: str = opt("auto", "auto, cpu, cuda or cuda:N")
    log_every: int = opt(10, "write metrics.csv every N steps", low=1)
    monitor_every: int = opt(50, "log collapse monitors every N steps", low=1)
    ckpt_every: int | None = opt(None, "write a checkpoint every N steps (default: every epoch; always at the end)", low=1)
    ckpt_minutes: float | None = opt(10.0, "also write a checkpoint when this many minutes have passed since the last one (null: only by steps)", low=0.0)
    max_abs_weight: float | None = opt(1e8, "stop as diverged when a parameter or buffer exceeds this magnitude (null: only NaN/Inf stop)", low=0.0)
    progress: bool = opt(True, "show a progress bar")


@dataclass
class EvalCfg:
    knn_k: int = opt(20, "neighbours of the weighted kNN", low=1)
    knn_t: float = opt(0.07, "temperature of the weighted kNN", low=1e-6)
    probe_c: float = opt(1.0, "inverse L2 strength of the logistic-regression probe", low=1e-9)
    probe_max_iter: int = opt(1000, "iterations of the logistic-regression probe", low=1)
    baseline: bool = opt(True, "evaluate a randomly initialised backbone beside the trained one")


@dataclass
class Config:
    name: str = opt("run", "run name; the run directory is out_dir/name")
    out_dir: str = opt("runs", "parent directory of run directories")
    data: DataCfg = field(default_factory=DataCfg)
    aug: AugCfg = field(default_factory=AugCfg)
    model: ModelCfg = field(default_factory=ModelCfg)
    method: MethodCfg = field(default_factory=MethodCfg)
    train: TrainCfg = field(default_factory=TrainCfg)
    eval: EvalCfg = field(default_factory=EvalCfg)

    @property
    def run_dir(self) -> Path:
        return Path(self.out_dir) / self.name


# ----------------------------------------------------------------------------- building


def _type_hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Convert a YAML value to the annotated type, or raise ConfigError naming ``key``."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{key}: invalid value {value!r}")
    if origin is tuple:
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise ConfigError(f"{key}: expected a list of {len(args)} numbers, got {value!r}")
        return tuple(_coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str):
            # YAML 1.1 reads exponents without a dot ("5e-3") as strings
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    return value


def _build(cls: type, data: dict[str, Any] | None, prefix: str) -> Any:
    data = dict(data or {})
    hints = _type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        where = prefix.rstrip(".") or "top level"
        raise ConfigError(
            f"unknown config key {prefix}{unknown[0]!s} ({where}); allowed keys: {', '.join(sorted(fields))}"
        )
    kwargs: dict[str, Any] = {}
    for name, f in fields.items():
        key = prefix + name
        tp = hints[name]
        if _is_dataclass_type(tp):
            sub = data.get(name)
            if sub is not None and not isinstance(sub, dict):
                raise ConfigError(f"{key}: expected a mapping of keys, got {sub!r}")
            kwargs[name] = _build(tp, sub, key + ".")
            continue
        if name not in data:
            continue
        value = _coerce(data[name], tp, key)
        choices = f.metadata.get("choices")
        if choices is not None and value not in choices:
            raise ConfigError(f"{key}: {value!r} is not allowed; choose one of {', '.join(map(str, choices))}")
        words = f.metadata.get("words")
        if words and isinstance(value, str) and value not in words:
            raise ConfigError(f"{key}: {value!r} is not allowed; give a number or {', '.join(words)}")
        low, high = f.metadata.get("low"), f.metadata.get("high")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if low is not None and value < low:
                raise ConfigError(f"{key}: {value!r} is below the minimum {low}")
            if high is not None and value > high:
                raise ConfigError(f"{key}: {value!r} is above the maximum {high}")
        kwargs[name] = value
    return cls(**kwargs)


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = tree
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {dotted}: {part} is a value, not a section")
        node = child
    node[parts[-1]] = value


def parse_override(text: str) -> tuple[str, Any]:
    """``"train.lr=0.1"`` -> ``("train.lr", 0.1)``; the value is parsed as YAML."""
    if "=" not in text:
        raise ConfigError(f"override {text!r}: expected key=value, e.g. train.lr=0.1")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"override {text!r}: empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() != "" else ""
    except yaml.YAMLError as e:
        raise ConfigError(f"override {text!r}: value is not valid YAML ({e})") from None
    return key, value


# replaced boolean key -> (its new key, new value of false / true): old configs and run dirs still load
_LEGACY_BOOL_KEYS = {"method.crossmodal.projector_bn": ("method.crossmodal.projector_norm", ("none", "batch"))}


def _upgrade_legacy(key: str, value: Any) -> tuple[str, Any]:
    """``(key, value)`` with a replaced boolean key mapped onto its successor."""
    if key not in _LEGACY_BOOL_KEYS:
        return key, value
    new_key, (if_false, if_true) = _LEGACY_BOOL_KEYS[key]
    if not isinstance(value, bool):
        raise ConfigError(f"{key}: expected true or false, got {value!r} (replaced by {new_key}: {if_true}, {if_false})")
    return new_key, if_true if value else if_false


def _upgrade_legacy_tree(tree: dict[str, Any]) -> None:
    """Rename replaced keys in a nested config dict in place; both old and new key present is an error."""
    for old in _LEGACY_BOOL_KEYS:
        *parents, leaf = old.split(".")
        node: Any = tree
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if not isinstance(node, dict) or leaf not in node:
            continue
        new_key, value = _upgrade_legacy(old, node.pop(leaf))
        new_leaf = new_key.rsplit(".", 1)[1]
        if new_leaf in node and node[new_leaf] != value:
            raise ConfigError(f"{old} and {new_key} disagree ({value!r} vs {node[new_leaf]!r}); keep only {new_key}")
        node[new_leaf] = value


def from_dict(data: dict[str, Any] | None, overrides: list[str] | dict[str, Any] | None = None) -> Config:
    """Build and validate a Config from a nested dict plus dotted overrides."""
    tree: dict[str, Any] = _deep_copy(data or {})
    _upgrade_legacy_tree(tree)
    if isinstance(overrides, dict):
        items = list(overrides.items())
    else:
        items = [parse_override(o) for o in (overrides or [])]
    for key, value in items:
        key, value = _upgrade_legacy(key, value)
        _set_dotted(tree, key, value)
    return _build(Config, tree, "")


def load(path: str | Path | None = None, overrides: list[str] | dict[str, Any] | None = None) -> Config:
    """Read a YAML config file (or defaults when ``path`` is None) and apply overrides."""
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file {p} does not exist")
        try:
            data = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"config file {p} is not valid YAML: {e}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"config file {p}: expected a mapping at the top level")
    return from_dict(data, overrides)


def to_dict(cfg: Any) -> dict[str, Any]:
    """Plain nested dict (tuples as lists) of a config dataclass."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        if dataclasses.is_dataclass(v):
            out[f.name] = to_dict(v)
        elif isinstance(v, tuple):
            out[f.name] = list(v)
        else:
            out[f.name] = v
    return out


def dump(cfg: Config) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


def save(cfg: Config, path: str | Path) -> None:
    Path(path).write_text(dump(cfg))


def describe() -> list[tuple[str, Any, str]]:
    """(dotted key, default, help) for every config key: the README table and `--help`."""
    rows: list[tuple[str, Any, str]] = []

    def walk(cls: type, prefix: str) -> None:
        hints = _type_hints(cls)
        inst = cls()
        for f in dataclasses.fields(cls):
            tp = hints[f.name]
            if _is_dataclass_type(tp):
                walk(tp, prefix + f.name + ".")
                continue
            help_ = f.metadata.get("help", "")
            if f.metadata.get("choices"):
                help_ += f" (one of {', '.join(map(str, f.metadata['choices']))})"
            rows.append((prefix + f.name, getattr(inst, f.name), help_))

    walk(Config, "")
    return rows


def _deep_copy(d: Any) -> Any:
    if isinstance(d, dict):
        return {k: _deep_copy(v) for k, v in d.items()}
    if isinstance(d, list):
        return [_deep_copy(v) for v in d]
    return d
