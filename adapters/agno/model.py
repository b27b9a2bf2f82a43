"""`OfflineModel`: a deterministic Agno model that needs no network and no API key.

It answers from what it is given — the latest user message, how much history reached it, the
session state — so tests and the demo can see memory working without a real LLM. When a
memory tool is offered and the user asks it to remember something ("remember that ...",
"my name is ...", "I prefer ..."), it calls that tool, like a real model would.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

from agno.models.base import Model
from agno.models.message import Message
from agno.models.response import ModelResponse

_FACT = re.compile(
    r"(?:please\s+)?remember(?:\s+that)?\s+(?P<a>[^.!?]+)|(?P<b>\bmy\s+(?:name|favou?rite\s+\w+)\s+is\s+[^.!?]+)"
    r"|(?P<c>\bI\s+(?:prefer|like|love|use|work|live|am)\b[^.!?]*)",
    re.IGNORECASE,
)
_TOPICS = {
    "name": ("name", "called"),
    "preferences": ("prefer", "like", "love", "favourite", "favorite"),
    "tools": ("python", "editor", "vim", "emacs", "rust", "use"),
    "work": ("work", "job", "team", "project", "deploy"),
    "location": ("live", "city", "country"),
}


def _text(message: Message) -> str:
    content = message.content
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(part.get("text", "")) if isinstance(part, dict) else str(part) for part in content)
    return "" if content is None else str(content)


def extract_fact(text: str) -> str | None:
    """The first thing worth remembering in `text`, or None."""
    match = _FACT.search(text)
    if match is None:
        return None
    fact = next(g for g in match.groups() if g)
    return fact.strip().rstrip(",;:")


def topics_for(fact: str) -> list[str]:
    lowered = fact.lower()
    found = [topic for topic, words in _TOPICS.items() if any(w in lowered for w in words)]
    return found or ["general"]


@dataclass
class OfflineModel(Model):
    """A deterministic stand-in for an LLM (see the module docstring)."""

    id: str = "offline"
    name: str = "OfflineModel"
    provider: str = "offline"

    def _respond(self, messages: list[Message], tools: list[dict[str, Any]] | None) -> ModelResponse:
        tool_names = {(t.get("function") or {}).get("name") or t.get("name") for t in tools or []}
        last = messages[-1] if messages else None
        if last is not None and last.role == "tool":
            results = [_text(m) for m in messages if m.role == "tool"][-3:]
            return ModelResponse(role="assistant", content=f"Done: {'; '.join(results)}")
        system = " ".join(_text(m) for m in messages if m.role == "system")
        users = [m for m in messages if m.role == "user"]
        if "delegate_task_to_member" in tool_names or "delegate_task_to_members" in tool_names:
            return self._delegate(system, _text(users[-1]) if users else "", tool_names)
        current = _text(users[-1]) if users else ""
        earlier = [_text(m) for m in users[:-1]]
        fact = extract_fact(current)
        if fact and fact.lower() in system.lower():
            fact = None  # already remembered: a real model would not add it twice
        if fact and "add_memory" in tool_names:
            return self._call("add_memory", {"memory": fact, "topics": topics_for(fact)})
        if fact and "update_user_memory" in tool_names:
            return self._call("update_user_memory", {"task": f"Add a memory: {fact}"})
        if "add_memory" in tool_names:
            return ModelResponse(role="assistant", content="No new memories.")
        parts = [f"[{self.id}] You said: {current!r}."]
        if earlier:
            parts.append(f"Earlier in this session ({len(earlier)} messages) you said: {earlier[0]!r}.")
        else:
            parts.append("This is the start of our conversation.")
        remembered = re.findall(r"<memories_from_previous_interactions>(.*?)</memories_from_previous_interactions>",
                                system, re.DOTALL)
        if remembered:
            facts = [line.strip("- ").strip() for line in remembered[0].strip().splitlines() if line.strip()]
            if facts:
                parts.append(f"I remember about you: {'; '.join(facts[:5])}.")
        return ModelResponse(role="assistant", content=" ".join(parts))

    def _delegate(self, system: str, task: str, tool_names: set[Any]) -> ModelResponse:
        """As a team leader: hand the task to every member, in roster order."""
        if "delegate_task_to_members" in tool_names:
            return self._call("delegate_task_to_members", {"task": task})
        members = re.findall(r'<member id="([^"]+)"', system)
        return self._calls([("delegate_task_to_member", {"member_id": m, "task": task}) for m in members])

    def _call(self, name: str, arguments: dict[str, Any]) -> ModelResponse:
        return self._calls([(name, arguments)])

    def _calls(self, calls: list[tuple[str, dict[str, Any]]]) -> ModelResponse:
        tool_calls = []
        for i, (name, arguments) in enumerate(calls):
            digest = hashlib.sha256(json.dumps([name, arguments], sort_keys=True).encode()).hexdigest()[:12]
            tool_calls.append({"id": f"call_{i}_{digest}", "type": "function",
                               "function": {"name": name, "arguments": json.dumps(arguments)}})
        return ModelResponse(role="assistant", content="", tool_calls=tool_calls)

    # --- the Model interface --------------------------------------------------------------

    def invoke(self, messages: list[Message], assistant_message: Message | None = None, *args: Any,
               tools: list[dict[str, Any]] | None = None, **kwargs: Any) -> ModelResponse:
        return self._respond(messages, tools)

    async def ainvoke(self, messages: list[Message], assistant_message: Message | None = None, *args: Any,
                      tools: list[dict[str, Any]] | None = None, **kwargs: Any) -> ModelResponse:
        return self._respond(messages, tools)

    def invoke_stream(self, messages: list[Message], assistant_message: Message | None = None, *args: Any,
                      tools: list[dict[str, Any]] | None = None, **kwargs: Any) -> Iterator[ModelResponse]:
        yield self._respond(messages, tools)

    async def ainvoke_stream(self, messages: list[Message], assistant_message: Message | None = None,  # type: ignore[override]
                             *args: Any, tools: list[dict[str, Any]] | None = None,
                             **kwargs: Any) -> AsyncIterator[ModelResponse]:
        yield self._respond(messages, tools)

    def _parse_provider_response(self, response: Any, **kwargs: Any) -> ModelResponse:
        return response if isinstance(response, ModelResponse) else ModelResponse(content=str(response))

    def _parse_provider_response_delta(self, response: Any) -> ModelResponse:
        return response if isinstance(response, ModelResponse) else ModelResponse(content=str(response))
