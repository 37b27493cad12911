"""Crew settings that need no crewai: task names, default kickoff inputs, LLM detection.

Kept apart from `crew.py` so the CLI can validate arguments and explain a missing LLM
without paying for the crewai import.
"""

from __future__ import annotations

import os
from typing import Any, Optional

TASK_NAMES: tuple[str, ...] = (
    "run_performance_analytics",
    "monitor_performance_alerts",
    "predictive_performance_analysis",
    "optimize_system_performance",
    "send_performance_executive_summary",
)
DEFAULT_INPUTS: dict[str, Any] = {
    "lookback_hours": 24,
    "horizon_hours": 6,
    "agent": "",
    "send_notifications": False,
}


def kickoff_inputs(inputs: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    """The defaults every placeholder needs, overridden by `inputs`."""
    out = dict(DEFAULT_INPUTS)
    out.update({k: v for k, v in (inputs or {}).items() if v is not None})
    return out


LLM_ENV_HINT = (
    "no LLM is configured for the crew. Set CrewAI's usual environment, for example:\n"
    "  export MODEL=gpt-4o-mini OPENAI_API_KEY=sk-...            (OpenAI)\n"
    "  export MODEL=anthropic/claude-sonnet-4 ANTHROPIC_API_KEY=...  (Anthropic)\n"
    "  export MODEL=ollama/llama3.1 API_BASE=http://localhost:11434  (a local Ollama)\n"
    "or pass --llm-factory module:function returning a crewai LLM."
)

_KEY_VARS = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY", "AZURE_API_KEY",
             "AZURE_OPENAI_API_KEY", "GROQ_API_KEY", "MISTRAL_API_KEY", "DEEPSEEK_API_KEY", "OPENROUTER_API_KEY",
             "AWS_ACCESS_KEY_ID", "CEREBRAS_API_KEY", "XAI_API_KEY", "WATSONX_APIKEY", "NVIDIA_API_KEY",
             "HUGGINGFACE_API_KEY", "SAMBANOVA_API_KEY", "TOGETHERAI_API_KEY", "FIREWORKS_API_KEY")


def llm_configured(env: Optional[dict[str, str]] = None) -> bool:
    """Whether CrewAI's environment names a usable LLM (a provider key, or a local model)."""
    env = dict(os.environ) if env is None else env
    model = (env.get("MODEL") or env.get("OPENAI_MODEL_NAME") or "").strip()
    if model.startswith(("ollama/", "ollama_chat/", "lm_studio/", "hosted_vllm/")):
        return True
    return any((env.get(k) or "").strip() for k in _KEY_VARS)
