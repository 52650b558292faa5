#!/usr/bin/env bash
# Build .venv-int/<tool>/ from tests/integrations/<tool>.txt when missing or older than the pins.
# torch==2.13.0 goes in first: the CPU wheel lies on disk, and anything else would pull a multi-GB CUDA build.
set -euo pipefail
tool=$1
root="$(cd "$(dirname "$0")/../.." && pwd)"
pins="$root/tests/integrations/$tool.txt"
venv="$root/.venv-int/$tool"
if [[ -f "$venv/stamp" && "$venv/stamp" -nt "$pins" ]]; then exit 0; fi
rm -rf "$venv"
python3 -m venv "$venv"
pip=("$venv/bin/python" -m pip install --quiet --disable-pip-version-check)
quiet() { sed '/is ignored: it is neither a file nor a directory/d'; }  # this machine's absent extra indexes
nice -n 10 "${pip[@]}" torch==2.13.0 2>&1 | quiet
nice -n 10 "${pip[@]}" -r "$pins" torch==2.13.0 2>&1 | quiet
# `# drop: NAME` in the pins: a dependency pulled in that cannot load beside the CPU torch and is never imported
drop=$(sed -n 's/^# drop: \([A-Za-z0-9_.-]*\).*/\1/p' "$pins")
if [[ -n "$drop" ]]; then "$venv/bin/python" -m pip uninstall --quiet --yes $drop; fi
"$venv/bin/python" -m pip freeze > "$venv/freeze.txt"
touch "$venv/stamp"
