"""The crew from the command line and from an installed wheel (subprocesses: nothing leaks into
this process). The CLI and `import perf_alerts` must stay free of crewai."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
PY = sys.executable
NO_LLM_ENV = ("MODEL", "OPENAI_MODEL_NAME", "OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY",
              "AZURE_API_KEY", "AZURE_OPENAI_API_KEY", "GROQ_API_KEY", "MISTRAL_API_KEY", "DEEPSEEK_API_KEY",
              "OPENROUTER_API_KEY", "AWS_ACCESS_KEY_ID", "PERF_ALERTS_CREW_LLM", "DISCORD_WEBHOOK_URL")


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in NO_LLM_ENV}
    env.update({"CREWAI_DISABLE_TELEMETRY": "true", "CREWAI_TRACING_ENABLED": "false", "OTEL_SDK_DISABLED": "true",
                "PERF_ALERTS_DB": str(tmp_path / "cli.db"), "NO_COLOR": "1", **extra})
    return env


def _cli(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PY, "-m", "perf_alerts", *args], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=120)


def test_import_and_cli_help_do_not_import_crewai(tmp_path):
    code = ("import sys, perf_alerts, perf_alerts.crew.result\n"
            "from perf_alerts.cli.main import app\n"
            "from perf_alerts.crew import StepResult\n"
            "assert StepResult.ok().success\n"
            "print('crewai' in sys.modules)")
    r = subprocess.run([PY, "-c", code], env=_env(tmp_path), capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "False", r.stderr
    h = _cli(["--help"], _env(tmp_path), tmp_path)
    assert h.returncode == 0 and "crew" in h.stdout


def test_kickoff_without_an_llm_explains_and_exits_2(tmp_path):
    r = _cli(["crew", "kickoff"], _env(tmp_path), tmp_path)
    assert r.returncode == 2
    assert "no LLM is configured" in r.stderr and "OPENAI_API_KEY" in r.stderr
    assert "Traceback" not in r.stderr + r.stdout
    bad = _cli(["crew", "kickoff", "--inputs", "{oops"], _env(tmp_path), tmp_path)
    assert bad.returncode == 2 and "--inputs is not valid JSON" in bad.stderr
    unknown = _cli(["crew", "kickoff", "--task", "nope", "--llm-factory", "x:y"], _env(tmp_path), tmp_path)
    assert unknown.returncode == 2 and "valid: run_performance_analytics" in unknown.stderr


def test_kickoff_one_task_with_a_scripted_llm(tmp_path):
    env = _env(tmp_path, PYTHONPATH=str(TESTS))
    r = _cli(["crew", "kickoff", "--llm-factory", "test_crew:make_llm", "--task", "monitor_performance_alerts",
              "--inputs", '{"lookback_hours": 12}', "--json"], env, tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout)
    (task,) = out["tasks"]
    assert task["task"] == "monitor_performance_alerts"
    assert '"action":"alerts"' in task["output"] and '"success":true' in task["output"]
    # the crew measured itself into the same store
    code = ("from perf_alerts.store import Store\n"
            "print(sorted({s.metric for s in Store().list_series() if s.labels.get('crew') == 'perf_alerts_crew'}))")
    m = subprocess.run([PY, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert "crew_llm_call_seconds" in m.stdout and "crew_kickoff_seconds" in m.stdout, m.stderr


@pytest.mark.slow
def test_crew_config_is_found_from_an_installed_wheel(tmp_path):
    wheels = tmp_path / "wheels"
    # --no-build-isolation: hatchling comes from the dev extra, so building needs no network
    b = subprocess.run([PY, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
                        "-w", str(wheels), str(ROOT)], capture_output=True, text=True, timeout=300)
    if b.returncode != 0:
        pytest.fail(f"building the wheel failed: {b.stderr[-2000:]}")
    (whl,) = wheels.glob("perf_alerts-*.whl")
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    vpy = env_dir / "bin" / "python"
    # crewai and the other dependencies come from the project venv's site-packages, added *after* the
    # fresh venv's own (a plain path line: the editable perf_alerts hook there is not activated)
    import sysconfig

    site_dir = next((env_dir / "lib").glob("python*/site-packages"))
    (site_dir / "zz_project_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    # pip of the project venv installs into the fresh venv (no network: --no-deps, a local wheel)
    inst = subprocess.run([PY, "-m", "pip", "--python", str(vpy), "install", "--no-deps", "-q", str(whl)],
                          capture_output=True, text=True, timeout=300)
    if inst.returncode != 0:  # older pip without --python
        inst = subprocess.run([PY, "-m", "pip", "install", "--no-deps", "-q", "--target",
                               str(next((env_dir / "lib").glob("python*/site-packages"))), str(whl)],
                              capture_output=True, text=True, timeout=300)
    assert inst.returncode == 0, inst.stderr[-2000:]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    code = ("import perf_alerts, perf_alerts.config as c\n"
            "from perf_alerts.crew import PerformanceAnalyticsCrew\n"
            "from perf_alerts.crew.crew import TASK_NAMES\n"
            "from crewai.llms.base_llm import BaseLLM\n"
            "class L(BaseLLM):\n"
            "    def call(self, *a, **k): return 'Final Answer: x'\n"
            "crew = PerformanceAnalyticsCrew(llm=L(model='m')).crew()\n"
            "import json\n"
            "print(json.dumps({'pkg': perf_alerts.__file__, 'config': str(c.packaged_config_dir()),\n"
            "  'tasks': [t.name for t in crew.tasks], 'role': crew.agents[0].role.strip()}))\n")
    r = subprocess.run([str(vpy), "-c", code], env=_env(tmp_path), cwd=elsewhere, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    info = json.loads(r.stdout.strip().splitlines()[-1])
    assert str(env_dir) in info["pkg"] and str(ROOT / "src") not in info["pkg"]
    assert info["config"].endswith("_bundled_config") and str(env_dir) in info["config"]
    assert info["role"] == "System Alert Manager"
    assert len(info["tasks"]) == 5
