"""OpenAI-compatible LLM client and the LLM planner. Called by manager.graph's plan node (through the Planner interface)
with the diagnosis, the weights in force and reward statistics; feeds a validated Proposal, or a PlannerError on which
the caller falls back to the rule planner. Works against any OpenAI-compatible server: vLLM in production, llama.cpp's
server locally.

The reply is constrained to ``proposal_schema()`` by the server (``response_format``) and validated again here: a
reply that is cut off, is not JSON or breaks the schema, and a server that does not answer, all raise one-line
``PlannerError``s. The planner never runs anything itself; the guard and the approval gate judge what it proposes.
"""

from __future__ import annotations

import copy
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import openai
from pydantic import ValidationError

from manager import prompts
from manager.state import Diagnosis, Proposal
from simulators.errors import ConfigError, TransientError
from simulators.rewards import REWARD_COMPONENTS, RewardWeights
from simulators.snapshot import ClusterSnapshot
from tools.catalog import CATALOG

ResponseFormat = Literal["json_schema", "json_object"]
RESPONSE_FORMATS: tuple[str, ...] = ("json_schema", "json_object")
MAX_MESSAGE = 300
"""Longest detail (server error, JSON error) quoted in a PlannerError."""

_SERVE_HINT = "start one (ama llm serve) or point AMA_LLM_BASE_URL at one, or use --manager rule"
_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL)


class PlannerError(TransientError):
    """The LLM planner could not produce a valid proposal; ``str(e)`` is one line. The caller falls back to the rule planner."""


def _env(name: str, default: str) -> str:
    return os.environ.get(name) or default


def _env_seconds(name: str, default: float) -> float:
    text = os.environ.get(name)
    if not text:
        return default
    try:
        return float(text)
    except ValueError:
        raise ConfigError(f"{name} must be a number of seconds, got {text!r}") from None


@dataclass(frozen=True)
class LLMSettings:
    """Where the LLM server is and how to ask it. Defaults come from the environment (AMA_LLM_*) when set."""

    base_url: str = field(default_factory=lambda: _env("AMA_LLM_BASE_URL", "http://127.0.0.1:8000/v1"))
    """The server's OpenAI-compatible API root, ending in /v1 (env AMA_LLM_BASE_URL)."""
    model: str = field(default_factory=lambda: _env("AMA_LLM_MODEL", "smollm2-135m-instruct"))
    """The model name the server serves (env AMA_LLM_MODEL)."""
    api_key: str = field(default_factory=lambda: _env("AMA_LLM_API_KEY", "not-needed"), repr=False)
    """Sent as the bearer token; local servers ignore it (env AMA_LLM_API_KEY)."""
    timeout_s: float = field(default_factory=lambda: _env_seconds("AMA_LLM_TIMEOUT_S", 20.0))
    """Seconds to wait for one reply before the planner gives up on that attempt (env AMA_LLM_TIMEOUT_S; a small model
    on a busy CPU needs a minute)."""
    retries: int = 1
    """Extra attempts after a timeout, a connection error or a 5xx/429 (the openai client's max_retries)."""
    max_tokens: int = 512
    """Longest reply; a reply cut off there is rejected."""
    temperature: float = 0.0
    """Sampling temperature; 0 makes plans repeatable."""
    response_format: ResponseFormat = field(default_factory=lambda: _env("AMA_LLM_RESPONSE_FORMAT", "json_schema"))  # type: ignore[assignment]
    """How the reply is constrained to the schema: "json_schema" (vLLM, OpenAI) or "json_object" with a schema (llama.cpp)
    (env AMA_LLM_RESPONSE_FORMAT)."""

    def __post_init__(self) -> None:
        if self.response_format not in RESPONSE_FORMATS:
            raise ConfigError(f"LLM response format must be one of {', '.join(RESPONSE_FORMATS)}, got {self.response_format!r}")
        if self.timeout_s <= 0 or self.retries < 0 or self.max_tokens < 1:
            got = f"timeout_s={self.timeout_s}, retries={self.retries}, max_tokens={self.max_tokens}"
            raise ConfigError(f"LLM settings need timeout_s > 0, retries >= 0 and max_tokens >= 1, got {got}")

    @classmethod
    def from_env(cls, **overrides: Any) -> LLMSettings:
        """Settings from AMA_LLM_BASE_URL, AMA_LLM_MODEL, AMA_LLM_API_KEY, AMA_LLM_RESPONSE_FORMAT and AMA_LLM_TIMEOUT_S,
        read now."""
        return cls(**overrides)


def describe_server(settings: LLMSettings) -> str:
    """One line for logs and the CLI: where the planner's LLM is."""
    return f"LLM server {settings.base_url}, model {settings.model}, response format {settings.response_format}"


def proposal_schema() -> dict[str, Any]:
    """The JSON schema the model fills: Proposal's, without ``planner`` (set here), refs inlined, weights limited to the
    known reward components and action names to the catalog's tools."""
    schema = _inline_refs(Proposal.model_json_schema())
    schema["properties"].pop("planner", None)
    schema["required"] = [name for name in schema.get("required", []) if name != "planner"]
    weight = schema["properties"]["weights"].pop("additionalProperties")
    schema["properties"]["weights"].update(properties={name: dict(weight) for name in REWARD_COMPONENTS}, additionalProperties=False)
    action = schema["properties"]["actions"]["items"]
    action["properties"]["name"]["enum"] = sorted(CATALOG)
    return _without_lengths(schema)


def _without_lengths(node: Any) -> Any:
    """String length limits off: grammar-based decoders (llama.cpp) unroll ``maxLength: 2000`` into thousands of
    nested rules and fail to load; the length is checked by pydantic when the reply comes back."""
    if isinstance(node, dict):
        return {k: _without_lengths(v) for k, v in node.items() if k not in ("maxLength", "minLength")}
    if isinstance(node, list):
        return [_without_lengths(v) for v in node]
    return node


def response_format(settings: LLMSettings) -> dict[str, Any]:
    """The ``response_format`` request field for the settings' server kind."""
    if settings.response_format == "json_object":
        return {"type": "json_object", "schema": proposal_schema()}
    return {"type": "json_schema", "json_schema": {"name": "proposal", "schema": proposal_schema(), "strict": True}}


class LLMPlanner:
    """Plans with an LLM over an OpenAI-compatible API. ``last_raw`` keeps the last reply text for the decision log."""

    name = "llm"

    def __init__(self, settings: LLMSettings | None = None) -> None:
        self.settings = settings or LLMSettings.from_env()
        self.last_raw: str | None = None

    def plan(
        self,
        diagnosis: Diagnosis,
        weights: RewardWeights | Mapping[str, float],
        reward_stats: Mapping[str, Mapping[str, float]] | None,
        snapshot: ClusterSnapshot | Mapping[str, Any] | None,
    ) -> Proposal:
        return self._ask(self._messages(diagnosis, weights, reward_stats, snapshot))

    def refine(
        self,
        diagnosis: Diagnosis,
        weights: RewardWeights | Mapping[str, float],
        reward_stats: Mapping[str, Mapping[str, float]] | None,
        snapshot: ClusterSnapshot | Mapping[str, Any] | None,
        verification: Mapping[str, Any],
    ) -> Proposal:
        """One refinement round (manager.graph's verify node): the same request, then the twin's verdict on the
        first candidates, and one new proposal."""
        messages = self._messages(diagnosis, weights, reward_stats, snapshot)
        messages.append({"role": "user", "content": prompts.refine_prompt(verification)})
        return self._ask(messages)

    def _messages(
        self,
        diagnosis: Diagnosis,
        weights: RewardWeights | Mapping[str, float],
        reward_stats: Mapping[str, Mapping[str, float]] | None,
        snapshot: ClusterSnapshot | Mapping[str, Any] | None,
    ) -> list[dict[str, str]]:
        return [
            {"role": "system", "content": prompts.system_prompt()},
            {"role": "user", "content": prompts.user_prompt(diagnosis, weights, reward_stats, snapshot, CATALOG)},
        ]

    def _ask(self, messages: list[dict[str, str]]) -> Proposal:
        self.last_raw = None
        content, finish_reason = self._complete(messages)
        self.last_raw = content
        if finish_reason == "length":
            raise PlannerError(f"LLM reply was cut off at max_tokens ({self.settings.max_tokens}); raise max_tokens or shorten the prompt")
        return parse_proposal(content)

    def _complete(self, messages: list[dict[str, str]]) -> tuple[str, str | None]:
        return complete(self.settings, messages, structured=True)

    def check_server(self) -> None:
        """Refuse to run as the ``llm`` manager without a server: a ConfigError in one line unless the server at
        ``base_url`` answers its model list within the timeout (the runtime asks before its first tick, so a run
        labelled llm never plans with the rule planner alone)."""
        s = self.settings
        try:
            # the reply timeout, not less: a one-request-at-a-time server (llama.cpp's) lists its models only after the
            # completion it is busy with, and an eval's other worker may be asking for one
            with openai.OpenAI(base_url=s.base_url, api_key=s.api_key, timeout=s.timeout_s, max_retries=0) as client:
                client.models.list()
        except openai.APIStatusError as exc:
            if exc.status_code not in (502, 503, 504):  # it answers (some servers have no model list): a server is there
                return
            raise ConfigError(f"manager llm: the LLM server at {s.base_url} fails (HTTP {exc.status_code}); {_SERVE_HINT}") from None
        except openai.APIError as exc:
            raise ConfigError(f"manager llm: no LLM server answers at {s.base_url} ({one_line(exc, 120)}); {_SERVE_HINT}") from None


def complete(s: LLMSettings, messages: list[dict[str, str]], structured: bool) -> tuple[str, str | None]:
    """Ask the server once (plus the client's retries): the reply text and its finish reason, or a one-line
    PlannerError. ``structured`` asks for a Proposal (the response format of ``s``); the console's chat asks for
    plain text. Used by the LLM planner and manager.chat."""
    extra = {"response_format": response_format(s)} if structured else {}
    choice = first_choice(s, messages, **extra)
    return choice.message.content or "", choice.finish_reason


def first_choice(s: LLMSettings, messages: list[dict[str, str]], **extra: Any) -> Any:
    """One chat completion (``extra``: response_format, or tools and tool_choice) and its first choice, or a one-line
    PlannerError: the server's errors all said the same way. Used by ``complete`` and manager.chat's tool call."""
    try:
        with openai.OpenAI(base_url=s.base_url, api_key=s.api_key, timeout=s.timeout_s, max_retries=s.retries) as client:
            completion = client.chat.completions.create(
                model=s.model,
                messages=messages,  # type: ignore[arg-type]
                max_tokens=s.max_tokens,
                temperature=s.temperature,
                timeout=s.timeout_s,
                **extra,
            )
    except openai.APITimeoutError:
        raise PlannerError(f"LLM server at {s.base_url} did not answer: timed out after {s.timeout_s:g} s") from None
    except openai.APIConnectionError as exc:
        raise PlannerError(f"LLM server at {s.base_url} did not answer: {one_line(exc)}") from None
    except openai.APIStatusError as exc:
        raise PlannerError(f"LLM server at {s.base_url} did not answer: HTTP {exc.status_code}: {one_line(exc.message)}") from None
    except openai.APIError as exc:
        raise PlannerError(f"LLM server at {s.base_url} gave an unusable reply: {one_line(exc)}") from None
    if not completion.choices:
        raise PlannerError(f"LLM server at {s.base_url} returned no choices")
    return completion.choices[0]


def parse_proposal(content: str) -> Proposal:
    """A reply text as a validated Proposal from the LLM planner, or a one-line PlannerError."""
    text = content.strip()
    fenced = _FENCE.match(text)
    if fenced:
        text = fenced.group(1)
    if not text:
        raise PlannerError("LLM reply is empty")
    try:
        data = json.loads(text, strict=False)  # a raw newline inside a string is a common small-model slip, not an error
    except json.JSONDecodeError as exc:
        raise PlannerError(f"LLM reply is not valid JSON: {one_line(exc)}") from None
    if not isinstance(data, dict):
        raise PlannerError(f"LLM reply is not valid JSON for a proposal: expected an object, got {type(data).__name__}")
    try:
        proposal = Proposal.model_validate({**data, "planner": "llm"})
    except ValidationError as exc:
        raise PlannerError(f"LLM proposal is invalid: {first_error(exc)}") from None
    unknown = sorted(set(proposal.weights) - set(REWARD_COMPONENTS))
    if unknown:
        raise PlannerError(
            f"LLM proposal is invalid: weights.{unknown[0]}: unknown reward component; known: {', '.join(REWARD_COMPONENTS)}"
        )
    return proposal


def first_error(exc: ValidationError) -> str:
    """``"field.path: message"`` of the first error, with a count of the others."""
    errors = exc.errors(include_url=False)
    first = errors[0]
    where = ".".join(str(part) for part in first["loc"]) or "reply"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return one_line(f"{where}: {first['msg']}{more}")


def one_line(value: object, limit: int = MAX_MESSAGE) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _inline_refs(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema with every ``$ref`` to its ``$defs`` replaced by the definition (Proposal has no recursive models)."""
    defs = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return resolve(copy.deepcopy(defs[ref.removeprefix("#/$defs/")]))
            return {key: resolve(value) for key, value in node.items()}
        if isinstance(node, list):
            return [resolve(item) for item in node]
        return node

    return resolve(schema)
