# Sourced by ./xnorflow and ./run-tests: create or reuse .venv and keep it in sync with
# pyproject.toml and setup.py. Re-installs only when either changed (a stamp holds its hash).
set -euo pipefail
XNF_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
XNF_VENV="${XNORFLOW_VENV:-$XNF_ROOT/.venv}"
_py="${PYTHON:-python3.11}"
command -v "$_py" >/dev/null 2>&1 || _py=python3
if [ ! -x "$XNF_VENV/bin/python" ]; then
    echo "xnorflow: creating $XNF_VENV" >&2
    "$_py" -m venv "$XNF_VENV"
fi
_stamp="$XNF_VENV/.xnorflow-installed"
_want="$(cat "$XNF_ROOT/pyproject.toml" "$XNF_ROOT/setup.py" | sha256sum | cut -d' ' -f1)"
if [ ! -f "$_stamp" ] || [ "$(cat "$_stamp")" != "$_want" ]; then
    echo "xnorflow: installing dependencies into $XNF_VENV (first run takes about a minute)" >&2
    # pip's notes about this machine's local package mirrors are noise to a user: drop them.
    # Every extra: the test suite exercises them all, and one environment serves both commands.
    "$XNF_VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e "$XNF_ROOT[test,onnx,dask]" 2>&1 \
        | { grep -v "is ignored: it is neither a file nor a directory" || true; } >&2
    echo "$_want" > "$_stamp"
fi
