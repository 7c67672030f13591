"""Toxicity scores of both sides of a pair, then `toxic_instruction` / `toxic_response`.

Two backends behind one interface (`classes`, `score(texts) -> {class: [float]}`):

- `detoxify`: a Detoxify model (a BERT/RoBERTa/ALBERT/XLM-R classifier), the
  released weights by `model_type` or any `.ckpt` in Detoxify's format
  (`checkpoint`). Every class the checkpoint names becomes a column.
- `profanity_check`: alt-profanity-check's shipped linear SVM over TF-IDF,
  one class, `toxicity` (a probability); small, CPU-only, always offline.

The layers:

- `score_texts(scorer, texts)`: the pure scorer over a list of texts (None
  gives None, a blank text 0.0 without a model call);
- `toxicity_udf(settings)`: a `pandas_udf` in iterator form. The model loads
  lazily, once per Python worker (`get_scorer`, cached at module level), and
  only rows flagged as wanted (the rows still kept) reach it; the others get
  null scores. Texts are cut to `max_tokens` tokens and grouped by length
  into batches of `batch_size`, which cuts padding;
- `with_toxicity(df, ...)` adds `instruction_<class>`, `response_<class>`;
  `filter_toxicity(df, spec)` resolves the model on the driver (clear errors
  there, before any task runs), scores and sets the drop reasons.

Offline use. Detoxify's own loader asks the Hugging Face hub for the base
model's config and tokenizer (`bert-base-uncased`, ...) even when given a
checkpoint. With `huggingface_config_path` (a local folder holding
`config.json` and the tokenizer files) this module builds the model with
Detoxify's `get_model_and_tokenizer` from that folder and the checkpoint's
state dict, with `HF_HUB_OFFLINE=1` in the worker: no network at all. Without
it the base files must be in the Hugging Face cache (or downloadable). Either
way a missing piece stops the run on the driver with one message naming it.
"""
from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import ClassVar, Iterator, Literal, Optional, Sequence
from urllib.parse import urlparse

import pandas as pd
from pyspark import SparkFiles
from pyspark.sql import functions as F

from instructlake.core.config import FilterSpec, check_name
from instructlake.core.errors import ConfigError, ScorerUnavailableError
from instructlake.core.session import master_of
from instructlake.core.storage import is_connect
from instructlake.udfs.filters.base import DROP_REASON, Filter, applies_to, set_reason

SIDES = ("instruction", "response")
PROFANITY_CHECK_DIST = "alt-profanity-check"


DETOXIFY_MODEL_TYPES = ("original", "unbiased", "multilingual", "original-small", "unbiased-small")


@dataclass(kw_only=True)
class ToxicityFilter(FilterSpec):
    """Toxicity scores of both sides of a pair; drops a pair whose score of a class exceeds its threshold.

    `backend: detoxify` runs a Detoxify model (released weights by `model_type`,
    or `checkpoint`); `backend: profanity_check` runs alt-profanity-check's
    shipped linear SVM (one class, `toxicity`). Instructions are judged on the
    rows of `instruction_sources`, responses on those of `response_sources`
    (both default to every source the filter applies to; `[]` means none).
    """

    rule: Literal["toxicity"]
    backend: Literal["detoxify", "profanity_check"] = "detoxify"
    model_type: Literal["original", "unbiased", "multilingual", "original-small", "unbiased-small"] = "original"
    checkpoint: Optional[str] = None
    huggingface_config_path: Optional[str] = None
    device: str = "cpu"
    batch_size: int = field(default=32, metadata={"min": 1})
    max_tokens: int = field(default=256, metadata={"min": 8, "max": 512})
    thresholds: dict[str, float] = field(default_factory=lambda: {"toxicity": 0.5})
    instruction_sources: Optional[list[str]] = None
    response_sources: Optional[list[str]] = None
    label_keys: ClassVar[tuple[str, ...]] = ("sources", "instruction_sources", "response_sources")
    on_paragraphs: ClassVar[bool] = True

    def validate(self) -> None:
        if not re.match(r"^(cpu|cuda(:[0-9]+)?)$", self.device):
            raise ConfigError("device", f"expected 'cpu', 'cuda' or 'cuda:N', got {self.device!r}")
        if not self.thresholds:
            raise ConfigError("thresholds", "set at least one class threshold, e.g. {toxicity: 0.5}")
        for cls, value in self.thresholds.items():
            if not 0 <= value <= 1:
                raise ConfigError(f"thresholds.{cls}", f"must be between 0 and 1, got {value}")
        if self.backend == "profanity_check":
            extra = sorted(set(self.thresholds) - {"toxicity"})
            if extra:
                raise ConfigError(f"thresholds.{extra[0]}", "the profanity_check backend scores only 'toxicity'")
        for cls in self.thresholds:
            check_name(f"thresholds.{cls}", cls)


# --- scorer names (recorded in the pairs commit and the manifest) -------------

def _dist_version(dist: str) -> str:
    try:
        return version(dist)
    except PackageNotFoundError:
        return "not-installed"


def scorer_name(spec) -> str:
    """A versioned name of the scorer a toxicity filter runs, e.g. `toxicity/detoxify-original`."""
    if spec.backend == "profanity_check":
        return f"toxicity/alt-profanity-check-{_dist_version(PROFANITY_CHECK_DIST)}"
    if spec.checkpoint:
        return f"toxicity/detoxify@{os.path.basename(urlparse(spec.checkpoint).path or spec.checkpoint)}"
    return f"toxicity/detoxify-{spec.model_type}"


def score_columns(classes: Sequence[str]) -> list[str]:
    return [f"{side}_{c}" for side in SIDES for c in classes]


# --- what the workers get -----------------------------------------------------

@dataclass(frozen=True)
class FileRef:
    """A file or folder a worker can open: a local path, or a name in SparkFiles (shipped with addFile)."""

    path: str
    shipped: bool = False

    def local(self) -> str:
        if not self.shipped:
            return self.path
        return SparkFiles.get(self.path)


@dataclass(frozen=True)
class ToxicitySettings:
    """Everything a worker needs to build the scorer; hashable, so it keys the per-worker cache."""

    backend: str
    classes: tuple[str, ...]
    name: str
    checkpoint: Optional[FileRef] = None
    huggingface_config_path: Optional[FileRef] = None
    hub_offline: bool = False
    device: str = "cpu"
    batch_size: int = 32
    max_tokens: int = 256


# --- backends -----------------------------------------------------------------

class ProfanityCheckScorer:
    """alt-profanity-check's linear SVM; `toxicity` is its probability of offensive language."""

    classes = ("toxicity",)

    def __init__(self):
        try:  # imported here: it loads its pickled scikit-learn model as it is imported
            from profanity_check import predict_prob
        except ImportError as e:
            raise ScorerUnavailableError(
                f"the profanity_check toxicity backend needs the package alt-profanity-check ({e}); `make setup` installs it"
            ) from None
        self._predict_prob = predict_prob

    def score(self, texts: list[str]) -> dict[str, list[float]]:
        return {"toxicity": [float(p) for p in self._predict_prob(texts)]}


def _class_names(loaded: dict) -> list[str]:
    """The class names of a Detoxify checkpoint, renamed as Detoxify renames them."""
    # The renaming Detoxify's `load_checkpoint` does.
    change_names = {"toxic": "toxicity", "identity_hate": "identity_attack", "severe_toxic": "severe_toxicity"}
    return [change_names.get(c, c) for c in loaded["config"]["dataset"]["args"]["classes"]]


class DetoxifyScorer:
    """A Detoxify model, loaded once; `score` runs length-grouped batches through `Detoxify.predict`."""

    def __init__(self, settings: ToxicitySettings):
        hf_path = settings.huggingface_config_path.local() if settings.huggingface_config_path else None
        if hf_path or settings.hub_offline:
            # Read by huggingface_hub when it is first imported: set it before transformers loads.
            os.environ["HF_HUB_OFFLINE"] = "1"
        # torch and Detoxify (the `detoxify` extra) load only where this backend runs.
        import torch
        from detoxify import Detoxify
        from detoxify.detoxify import get_model_and_tokenizer

        if settings.device.startswith("cuda") and not torch.cuda.is_available():
            raise ScorerUnavailableError(f"toxicity: device {settings.device!r} asked for, but this worker has no CUDA device")
        checkpoint = settings.checkpoint.local()
        if hf_path is None:
            model = Detoxify(checkpoint=checkpoint, device=settings.device)
        else:
            # Detoxify's loader with the base config and tokenizer from the local folder instead of the hub.
            loaded = torch.load(checkpoint, map_location=settings.device, weights_only=False)
            args = dict(loaded["config"]["arch"]["args"], model_type=hf_path)
            model = Detoxify.__new__(Detoxify)
            model.model, model.tokenizer = get_model_and_tokenizer(**args, state_dict=loaded["state_dict"])
            model.class_names = _class_names(loaded)
            model.device = settings.device
            model.model.to(settings.device)
        # Detoxify.predict truncates to the tokenizer's maximum length.
        model.tokenizer.model_max_length = settings.max_tokens
        model.model.eval()
        self.model = model
        self.classes = tuple(model.class_names)
        self.batch_size = settings.batch_size
        # No token is longer than this many characters: cutting first keeps the tokenizer's work bounded.
        self.max_chars = settings.max_tokens * 24

    def score(self, texts: list[str]) -> dict[str, list[float]]:
        out = {c: [0.0] * len(texts) for c in self.classes}
        # Group by length so a batch pads to about its own texts' length, not the longest text's.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            result = self.model.predict([texts[i][: self.max_chars] for i in idx])
            for c in self.classes:
                values = result[c] if isinstance(result[c], list) else [result[c]]  # a batch of one squeezes to a float
                for i, v in zip(idx, values):
                    out[c][i] = float(v)
        return out


_scorers: dict[ToxicitySettings, object] = {}  # per Python worker: the model is built once and reused


def get_scorer(settings: ToxicitySettings):
    scorer = _scorers.get(settings)
    if scorer is None:
        scorer = ProfanityCheckScorer() if settings.backend == "profanity_check" else DetoxifyScorer(settings)
        _scorers[settings] = scorer
    return scorer


# --- the pure layer -------------------------------------------------------------

def score_texts(scorer, texts: Sequence[Optional[str]]) -> dict[str, list[Optional[float]]]:
    """Scores per class for each text: None for None, 0.0 for a blank text (no model call), else the model's."""
    out: dict[str, list[Optional[float]]] = {c: [None] * len(texts) for c in scorer.classes}
    todo = [i for i, t in enumerate(texts) if t is not None]
    for i in todo:
        if not texts[i].strip():
            for c in scorer.classes:
                out[c][i] = 0.0
    todo = [i for i in todo if texts[i].strip()]
    if todo:
        scores = scorer.score([texts[i] for i in todo])
        for c in scorer.classes:
            for i, v in zip(todo, scores[c]):
                out[c][i] = v
    return out


def score_toxicity_frame(
    scorer, classes: Sequence[str], want_instruction: pd.Series, want_response: pd.Series,
    instruction: pd.Series, response: pd.Series,
) -> tuple[pd.DataFrame, int]:
    """`instruction_<class>`, `response_<class>` for the wanted rows (null elsewhere), and how many texts the model saw."""
    n = len(instruction)
    wanted = {
        "instruction": want_instruction.fillna(False).astype(bool).tolist(),
        "response": want_response.fillna(False).astype(bool).tolist(),
    }
    texts, slots = [], []
    for side, series in (("instruction", instruction), ("response", response)):
        for i, (want, text) in enumerate(zip(wanted[side], series.tolist())):
            if want:
                texts.append(text)
                slots.append((side, i))
    columns = {name: [None] * n for name in score_columns(classes)}
    seen = 0
    if texts:
        scores = score_texts(scorer, texts)
        seen = sum(1 for t in texts if t is not None and t.strip())
        for c in classes:
            for (side, i), v in zip(slots, scores[c]):
                columns[f"{side}_{c}"][i] = v
    return pd.DataFrame({k: pd.Series(v, dtype="float64") for k, v in columns.items()}), seen


# --- Spark ------------------------------------------------------------------------

def toxicity_udf(settings: ToxicitySettings, texts_seen=None):
    """A `pandas_udf(want_instruction, want_response, instruction, response) -> struct<scores>`.

    `texts_seen`, when given, is a Spark accumulator counting the texts the model scored.
    """
    schema = ", ".join(f"{c} double" for c in score_columns(settings.classes))

    @F.pandas_udf(schema)
    def score(batches: Iterator[tuple[pd.Series, pd.Series, pd.Series, pd.Series]]) -> Iterator[pd.DataFrame]:
        scorer = None
        for want_i, want_r, instruction, response in batches:
            if scorer is None and (want_i.any() or want_r.any()):
                scorer = get_scorer(settings)  # lazily: a task with nothing to score loads no model
            frame, seen = score_toxicity_frame(scorer, settings.classes, want_i, want_r, instruction, response)
            if texts_seen is not None:
                texts_seen.add(seen)
            yield frame

    return score


def with_toxicity(df, settings: ToxicitySettings, want_instruction, want_response, texts_seen=None):
    """Adds `instruction_<class>` and `response_<class>` for every class of the scorer.

    Only rows where `want_instruction` / `want_response` (boolean Columns) hold
    are scored; the others get null. A score column that already exists
    (a second toxicity filter on other sources) keeps its values where set.
    """
    scored = toxicity_udf(settings, texts_seen)(
        F.coalesce(want_instruction, F.lit(False)), F.coalesce(want_response, F.lit(False)),
        F.col("instruction"), F.col("response"),
    )
    df = df.withColumn("_toxicity", scored)
    for column in score_columns(settings.classes):
        new = F.col(f"_toxicity.{column}")
        df = df.withColumn(column, F.coalesce(F.col(column), new) if column in df.columns else new)
    return df.drop("_toxicity")


def filter_toxicity(df, spec, texts_seen=None):
    """Scores the kept rows (each side on its sources), then drops those over a threshold.

    `toxic_instruction` when an instruction's score of a class exceeds
    `spec.thresholds[class]`, else `toxic_response` for the response.
    """
    settings = resolve(df.sparkSession, spec)
    unknown = sorted(set(spec.thresholds) - set(settings.classes))
    if unknown:
        raise ConfigError(
            f"filters.{spec.key}.thresholds.{unknown[0]}",
            f"the scorer {settings.name} has no class {unknown[0]!r}; its classes: {', '.join(settings.classes)}",
        )
    kept = F.col(DROP_REASON).isNull() & applies_to(spec.sources)
    want_i = kept & applies_to(spec.instruction_sources)
    want_r = kept & applies_to(spec.response_sources)
    df = with_toxicity(df, settings, want_i, want_r, texts_seen)
    rules = []
    for side, want in (("instruction", want_i), ("response", want_r)):
        for cls, limit in spec.thresholds.items():
            rules.append((want & (F.col(f"{side}_{cls}") > limit), f"toxic_{side}"))
    return set_reason(df, rules, spec.key)


# --- resolving the model on the driver ------------------------------------------------

def _is_local(uri: str) -> bool:
    return urlparse(uri).scheme in ("", "file")


def _local_path(uri: str) -> str:
    parsed = urlparse(uri)
    return os.path.abspath(parsed.path if parsed.scheme == "file" else uri)


def _file_ref(spark, uri: str, what: str, key: str, folder: bool = False) -> tuple[FileRef, str]:
    """A `FileRef` the workers can open, and the path of the same file on the driver.

    Local paths are read in place in local mode; anything else (another URI
    scheme, or a cluster) is shipped to every worker with `SparkContext.addFile`.
    """
    local_mode = master_of(spark).startswith("local")
    if _is_local(uri):
        path = _local_path(uri)
        if not os.path.exists(path):
            raise ScorerUnavailableError(f"toxicity: {what} not found: {path} (filters.{key})")
        if folder and not os.path.isdir(path):
            raise ScorerUnavailableError(f"toxicity: {what} must be a folder: {path} (filters.{key})")
        if local_mode:
            return FileRef(path), path
        uri = path
    if is_connect(spark):  # no SparkContext: the client uploads a local file as an artifact instead
        if folder or not _is_local(uri):
            raise ScorerUnavailableError(f"toxicity: through Spark Connect, {what} must be one local file the workers can be "
                                         f"sent (filters.{key}): {uri}")
        spark.addArtifacts(_local_path(uri), file=True)
        name = os.path.basename(_local_path(uri))
        return FileRef(name, shipped=True), _local_path(uri)
    try:
        spark.sparkContext.addFile(uri, recursive=folder)
    except Exception as e:  # noqa: BLE001 - any fetch failure is the same problem to the user
        raise ScorerUnavailableError(f"toxicity: cannot fetch {what} {uri} (filters.{key}): {str(e).splitlines()[0]}") from None
    name = os.path.basename(urlparse(uri).path.rstrip("/"))
    return FileRef(name, shipped=True), SparkFiles.get(name)


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _released_checkpoint(model_type: str, key: str) -> str:
    """The local file of Detoxify's released weights for `model_type`: torch's hub cache, downloaded there if allowed."""
    import torch  # the detoxify extra, loaded only for this backend
    from detoxify.detoxify import MODEL_URLS

    url = MODEL_URLS[model_type]
    path = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(url))
    if os.path.isfile(path):
        return path
    hint = (
        f"the released Detoxify weights for model_type {model_type!r} are not in {path}; download {url} "
        f"(on a machine with access) and set filters.{key}.checkpoint to the file, or put it at that path"
    )
    if _offline():
        raise ScorerUnavailableError(f"toxicity: {hint} (downloads are off: HF_HUB_OFFLINE=1)")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(30)
    try:
        torch.hub.download_url_to_file(url, path, progress=False)
    except Exception as e:  # noqa: BLE001
        raise ScorerUnavailableError(f"toxicity: {hint} (download failed: {e})") from None
    finally:
        socket.setdefaulttimeout(previous)
    return path


def _read_checkpoint(path: str, key: str) -> dict:
    import torch  # the detoxify extra, loaded only for this backend

    try:
        try:
            loaded = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
        except RuntimeError:  # an old (non-zip) checkpoint cannot be memory-mapped
            loaded = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001
        raise ScorerUnavailableError(f"toxicity: cannot read checkpoint {path} (filters.{key}.checkpoint): {e}") from None
    try:
        loaded["config"]["arch"]["args"]["model_name"]
        loaded["config"]["dataset"]["args"]["classes"]
        loaded["state_dict"]
    except (KeyError, TypeError):
        raise ScorerUnavailableError(
            f"toxicity: {path} is not a Detoxify checkpoint: it needs 'config' (with arch.args and dataset.args.classes) "
            f"and 'state_dict' (filters.{key}.checkpoint)"
        ) from None
    return loaded


TOKENIZER_FILES = ("vocab.txt", "tokenizer.json", "spiece.model", "sentencepiece.bpe.model", "vocab.json")


def _check_config_folder(path: str, key: str) -> None:
    missing = []
    if not os.path.isfile(os.path.join(path, "config.json")):
        missing.append("config.json")
    if not any(os.path.isfile(os.path.join(path, f)) for f in TOKENIZER_FILES):
        missing.append("tokenizer files (one of " + ", ".join(TOKENIZER_FILES) + ")")
    if missing:
        raise ScorerUnavailableError(
            f"toxicity: {path} (filters.{key}.huggingface_config_path) lacks {' and '.join(missing)}; "
            "save them there with `save_pretrained` of the base model's config and tokenizer"
        )


def _check_hub_files(base: str, model_name: str, tokenizer_name: str, key: str) -> bool:
    """The base model's config and tokenizer must load from the Hugging Face cache or the hub.

    True when both are in the local cache already.
    """
    import transformers  # the detoxify extra, loaded only for this backend

    def load(local_files_only: bool) -> None:
        getattr(transformers, model_name).config_class.from_pretrained(base, local_files_only=local_files_only)
        getattr(transformers, tokenizer_name).from_pretrained(base, local_files_only=local_files_only)

    try:
        load(True)
        return True
    except Exception:  # noqa: BLE001 - not cached: try the hub below
        pass
    try:
        load(False)
        return False
    except Exception as e:  # noqa: BLE001 - OSError from the hub, or a missing class
        where = "the hub is offline (HF_HUB_OFFLINE=1)" if _offline() else "the hub could not be reached"
        raise ScorerUnavailableError(
            f"toxicity: Detoxify builds its model on the Hugging Face config and tokenizer of {base!r}, which are not "
            f"in the local Hugging Face cache and {where}; set filters.{key}.huggingface_config_path to a folder "
            f"holding them (config.json and tokenizer files), see docs/filters/toxicity.md ({type(e).__name__})"
        ) from None


def resolve(spark, spec) -> ToxicitySettings:
    """Checks on the driver that the configured scorer can be built, and says how the workers find its files."""
    key = spec.key
    name = scorer_name(spec)
    if spec.backend == "profanity_check":
        ProfanityCheckScorer()  # imports and loads the small shipped model: fails here, not in a worker
        return ToxicitySettings("profanity_check", ProfanityCheckScorer.classes, name, batch_size=spec.batch_size)
    try:
        import detoxify  # noqa: F401
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as e:
        raise ScorerUnavailableError(
            f"toxicity: the detoxify backend needs torch, transformers and detoxify ({e}); `make setup` installs them, "
            f"or set filters.{key}.backend=profanity_check"
        ) from None
    if spec.checkpoint:
        checkpoint, driver_path = _file_ref(spark, spec.checkpoint, "checkpoint", f"{key}.checkpoint")
    else:
        driver_path = _released_checkpoint(spec.model_type, key)
        checkpoint, driver_path = _file_ref(spark, driver_path, "checkpoint", f"{key}.checkpoint")
    loaded = _read_checkpoint(driver_path, key)
    classes = tuple(_class_names(loaded))
    arch = loaded["config"]["arch"]["args"]
    hf_ref, cached = None, False
    if spec.huggingface_config_path:
        hf_ref, hf_local = _file_ref(
            spark, spec.huggingface_config_path, "Hugging Face config folder", f"{key}.huggingface_config_path", folder=True
        )
        _check_config_folder(hf_local, key)
    else:
        cached = _check_hub_files(arch.get("model_type"), arch["model_name"], arch["tokenizer_name"], key)
    del loaded
    # In local mode the workers share the driver's Hugging Face cache: no need to ask the hub again.
    offline = _offline() or (cached and master_of(spark).startswith("local"))
    return ToxicitySettings(
        "detoxify", classes, name, checkpoint, hf_ref, hub_offline=offline, device=spec.device,
        batch_size=spec.batch_size, max_tokens=spec.max_tokens,
    )


FILTER = Filter(spec=ToxicityFilter, apply=filter_toxicity, reasons=("toxic_instruction", "toxic_response"), scorer=scorer_name)
