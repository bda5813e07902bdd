"""The gateway's policy: one YAML file, and the pure decisions taken from it (no I/O, no model).

Example (``guardrl/stages/serve/gateway_policy.yaml`` holds every key with its default)::

    judge_request: true          # judge the caller's messages (text + images) before forwarding
    judge_response: true         # judge the upstream's answer before returning it
    on_guard_error: closed       # closed: block when the guard cannot give a verdict; open: let it through
    harmful_request: block       # block | rewrite (needs --rewriter)
    rewrite_all: false           # rewrite every request, harmful or not (VLMGuard-R1's use); needs --rewriter
    refusal: "I can't help with that request."

A guard *error* is anything that leaves a side without a verdict: an answer that does not parse, a guard
timeout or overload, a failed rewrite. An unknown key or a bad value is an error naming the file.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal

Action = Literal["forward", "block", "rewrite"]


class PolicyError(ValueError):
    """A policy file with an unknown key or a bad value (the message names the file and the key)."""


@dataclass(frozen=True)
class GatewayPolicy:
    """What the gateway judges and what it does with a verdict.

    Attributes:
        judge_request: judge the request (the text of every user message, and their images) before forwarding.
        judge_response: judge each answer of the upstream (against the request) before returning it.
        on_guard_error: ``closed`` blocks a side the guard could not judge (unparsable verdict, guard timeout or
            overload, failed rewrite); ``open`` lets it through. Closed is the default: a guard that fails must
            not turn into no guard.
        harmful_request: ``block`` answers a harmful request with :attr:`refusal` (``finish_reason:
            "content_filter"``); ``rewrite`` sends it to the rewriter and forwards the rewritten request
            (judged again when :attr:`judge_request`; still harmful -> blocked).
        rewrite_all: rewrite every request before forwarding (the rewriter as VLMGuard-R1 uses it).
        refusal: the assistant message of a blocked completion.
        max_concurrency: requests handled at once; more wait (up to :attr:`queue_timeout_s`, then 503).
        queue_timeout_s: seconds a request may wait for a slot.
        upstream_timeout_s: seconds for the upstream's answer (then 504 ``upstream_timeout``).
        guard_timeout_s: seconds for one guard verdict (then a guard error).
        max_body_mb: largest request body (MiB; then 413).
        max_images: most images the guard judges in one request (more: 422).
        fetch_image_urls: fetch remote ``http(s)://`` image URLs so the guard can see them; off, a request
            with one is refused (400 ``image_url_refused``): an image the guard cannot see is not judged.
    """

    judge_request: bool = True
    judge_response: bool = True
    on_guard_error: Literal["closed", "open"] = "closed"
    harmful_request: Literal["block", "rewrite"] = "block"
    rewrite_all: bool = False
    refusal: str = "I can't help with that request."
    max_concurrency: int = 64
    queue_timeout_s: float = 30.0
    upstream_timeout_s: float = 120.0
    guard_timeout_s: float = 60.0
    max_body_mb: float = 16.0
    max_images: int = 4
    fetch_image_urls: bool = False

    def __post_init__(self) -> None:
        choices = {"on_guard_error": ("closed", "open"), "harmful_request": ("block", "rewrite")}
        for name, valid in choices.items():
            if getattr(self, name) not in valid:
                raise PolicyError(f"{name}: {getattr(self, name)!r} is not one of {list(valid)}")
        for f in fields(self):
            value = getattr(self, f.name)
            if f.type == "bool" and not isinstance(value, bool):
                raise PolicyError(f"{f.name}: must be true or false, got {value!r}")
            if f.type in ("int", "float") and (isinstance(value, bool) or not isinstance(value, int | float)
                                               or value <= 0):
                raise PolicyError(f"{f.name}: must be a positive number, got {value!r}")
        if not isinstance(self.refusal, str) or not self.refusal.strip():
            raise PolicyError("refusal: must be a non-empty string")

    @property
    def needs_rewriter(self) -> bool:
        return self.harmful_request == "rewrite" or self.rewrite_all

    @property
    def fail_closed(self) -> bool:
        return self.on_guard_error == "closed"

    def request_action(self, verdict: str | None) -> Action:
        """What to do with a request the guard judged ``verdict``.

        ``verdict``: ``"harmful"`` / ``"unharmful"`` / ``None`` (not judged: the guard failed, or the policy
        does not judge requests -> ``"skipped"``).
        """
        if verdict == "harmful":
            return "rewrite" if self.harmful_request == "rewrite" else "block"
        if verdict is None and self.judge_request and self.fail_closed:
            return "block"
        return "rewrite" if self.rewrite_all else "forward"

    def rewritten_action(self, verdict: str | None) -> Action:
        """What to do with a rewritten request judged ``verdict``: forward it, or block (no second rewrite)."""
        if verdict == "harmful" or (verdict is None and self.judge_request and self.fail_closed):
            return "block"
        return "forward"

    def answer_blocked(self, verdict: str | None) -> bool:
        """Is an answer the guard judged ``verdict`` (``None``: the guard failed) replaced by the refusal?"""
        return verdict == "harmful" or (verdict is None and self.judge_response and self.fail_closed)


def load_policy(path: str | Path | None, **overrides: Any) -> GatewayPolicy:
    """The policy of a YAML file (``None``: the defaults), with ``overrides`` on top.

    Raises:
        PolicyError: unreadable YAML, not a mapping, an unknown key or a bad value (file and key named).
    """
    import yaml

    doc: dict[str, Any] = {}
    where = str(path) if path else "the gateway policy"
    if path is not None:
        try:
            doc = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise PolicyError(f"{where}: not valid YAML: {exc}") from exc
        if not isinstance(doc, dict):
            raise PolicyError(f"{where}: must be a mapping of policy keys")
    doc.update({k: v for k, v in overrides.items() if v is not None})
    valid = [f.name for f in fields(GatewayPolicy)]
    unknown = sorted(set(doc) - set(valid))
    if unknown:
        raise PolicyError(f"{where}: unknown key(s) {unknown}; valid: {valid}")
    try:
        return GatewayPolicy(**doc)
    except PolicyError as exc:
        raise PolicyError(f"{where}: {exc}") from exc
