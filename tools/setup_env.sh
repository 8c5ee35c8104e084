#!/usr/bin/env bash
# Creates .venv (if missing) and installs what atomnas-mm needs, at one of two levels:
#
#   tools/setup_env.sh light   classification, the search and the demo (`make demo`):
#                              torch + torchvision, mmcv-lite 2.1.0 (pure Python, no
#                              compiled ops; a wheel from PyPI), mmengine, mmpretrain,
#                              scikit-learn, matplotlib, atomnas_mm (editable).
#   tools/setup_env.sh [full]  light + mmcv 2.1.0 with its compiled ops (in place of
#                              mmcv-lite), mmdet 3.3.0 and the test tools (`make setup`,
#                              `make test`).
#   ... --check                say whether .venv is up to date for that level (exit 0)
#                              or not (exit 1); installs nothing.
#
# Idempotent: a stamp in .venv records the level and a hash of the requirement files,
# setup.py and this script; while it matches, nothing is installed. A full stamp also
# satisfies `light`. The stamp is removed before anything changes and written only
# at the very end, so an interrupted run is finished by the next one.
#
# Never downgrades: once .venv holds the compiled mmcv, `light` keeps it (and repairs
# it if needed) instead of installing mmcv-lite. To go back to the light set-up,
# delete .venv.
#
# mmcv 2.1.0 with compiled ops exists on PyPI only as an sdist that does not compile
# against torch 2.14 as-is. It is built once from source (about 30 min on 2 cores,
# progress shown) and the wheel is cached in $ATOMNAS_CACHE (default
# ~/.cache/atomnas_mm), keyed by torch version, so it is never rebuilt. A ready wheel
# is taken from $ATOMNAS_WHEELHOUSE when that folder holds one.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
SCRIPT="$ROOT/tools/setup_env.sh"
VENV=${VENV:-$ROOT/.venv}
PYTHON=${PYTHON:-python3.11}
CACHE=${ATOMNAS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/atomnas_mm}
MMCV_VERSION=2.1.0
TORCH_VERSION=2.14.1
STAMP_FILE="$VENV/.atomnas-installed"

say() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }
usage() { echo "usage: tools/setup_env.sh [light|full] [--check]" >&2; exit 2; }

LEVEL=full
CHECK=0
for arg in "$@"; do
    case "$arg" in
        light|full) LEVEL=$arg ;;
        --check) CHECK=1 ;;
        *) usage ;;
    esac
done

# ------------------------------------------------------------ the stamp ----
HASH=$(cat "$ROOT"/requirements/*.txt "$ROOT/setup.py" "$SCRIPT" | sha256sum | cut -c1-16)
have=$(cat "$STAMP_FILE" 2>/dev/null || true)
# "full HASH" satisfies both levels, "light HASH" only light.
up_to_date=0
if [ "$have" = "full $HASH" ] || { [ "$LEVEL" = light ] && [ "$have" = "light $HASH" ]; }; then
    up_to_date=1
fi
if [ "$CHECK" = 1 ]; then
    if [ "$up_to_date" = 1 ]; then
        say "$LEVEL set-up: up to date (stamp '$have' in $VENV)"
        exit 0
    fi
    say "$LEVEL set-up: needed (stamp '${have:-none}' in $VENV, want '$LEVEL $HASH')"
    exit 1
fi
if [ "$up_to_date" = 1 ]; then
    say "environment up to date (${have%% *} set-up, $VENV)"
    exit 0
fi
# From here on .venv changes: without a stamp, the next run finishes the job.
rm -f "$STAMP_FILE"

if [ ! -x "$VENV/bin/python" ]; then
    say "creating $VENV with $PYTHON"
    "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"
PIP=("$PY" -m pip install --disable-pip-version-check --progress-bar off)
# pip warns once per package about this machine's local index folders; hide that noise.
quiet() { "$@" 2> >(grep -v 'is ignored: it is neither a file nor a directory' >&2); }

if [ "$("$PY" -c 'import importlib.metadata as m; print(m.version("torch"))' 2>/dev/null)" \
        != "$TORCH_VERSION" ]; then
    say "installing torch $TORCH_VERSION and torchvision (large: about 5.5 GB)"
fi
quiet "${PIP[@]}" -q -r "$ROOT/requirements/torch.txt"
quiet "${PIP[@]}" -q -r "$ROOT/requirements/build.txt"

# ---------------------------------------------------------------- mmcv ----
# "<mmcv version> <mmcv-lite version> <version that `import mmcv` gives> <compiled
# ops import: yes|no>", '-' = absent. mmcv and mmcv-lite are two distributions of
# the same `mmcv` folder.
mmcv_state() {
    "$PY" - <<'PY' 2>/dev/null
import importlib.metadata as m
def version(name):
    try:
        return m.version(name)
    except m.PackageNotFoundError:
        return '-'
try:
    import mmcv
    imported = mmcv.__version__
except Exception:
    imported = '-'
try:
    import mmcv._ext  # noqa: F401  (compiled ops load against this torch)
    ops = 'yes'
except Exception:
    ops = 'no'
print(version('mmcv'), version('mmcv-lite'), imported, ops)
PY
}

# The compiled mmcv wheel: from the cache, else ATOMNAS_WHEELHOUSE, else built
# from source (then cached). Prints its path on stdout.
compiled_mmcv_wheel() {
    local dir="$CACHE/mmcv-$MMCV_VERSION-torch$TORCH_VERSION" wheel src built build
    mkdir -p "$dir"
    wheel=$(ls "$dir"/mmcv-$MMCV_VERSION-*.whl 2>/dev/null | head -n1 || true)
    if [ -n "$wheel" ]; then
        say "taking the cached mmcv wheel $wheel" >&2
        echo "$wheel"
        return
    fi
    if [ -n "${ATOMNAS_WHEELHOUSE:-}" ]; then
        src=$(ls "$ATOMNAS_WHEELHOUSE"/mmcv-$MMCV_VERSION-*.whl 2>/dev/null | head -n1 || true)
        if [ -n "$src" ]; then
            say "taking mmcv wheel from ATOMNAS_WHEELHOUSE: $src" >&2
            cp "$src" "$dir/"
            echo "$dir/$(basename "$src")"
            return
        fi
    fi
    say "building mmcv $MMCV_VERSION with CPU ops from source (once; about 30 min on 2 cores)" >&2
    build=$(mktemp -d)
    quiet "$PY" -m pip download -q --no-deps --no-binary :all: \
        "mmcv==$MMCV_VERSION" -d "$build" >&2
    tar -xzf "$build"/mmcv-$MMCV_VERSION.tar.gz -C "$build"
    # torch >= 2.14 headers require C++20; mmcv 2.1.0 hard-codes C++17.
    sed -i 's/-std=c++17/-std=c++20/g' "$build/mmcv-$MMCV_VERSION/setup.py"
    # Show ninja's "[n/77]" lines as progress; keep the full log for failures.
    (cd "$build/mmcv-$MMCV_VERSION" &&
        MMCV_WITH_OPS=1 FORCE_CUDA=0 MAX_JOBS=${MAX_JOBS:-2} \
        "$PY" -m pip wheel -v --no-deps --no-build-isolation . \
            -w "$build/dist" 2>&1) | tee "$build/build.log" |
        grep --line-buffered -oE '^ *\[[0-9]+/[0-9]+\]' |
        sed -u 's/^ */[setup] mmcv build: compiled /' >&2 || true
    built=$(ls "$build"/dist/mmcv-$MMCV_VERSION-*.whl 2>/dev/null | head -n1 || true)
    if [ -z "$built" ]; then
        tail -n 40 "$build/build.log" >&2
        say "mmcv build failed; the end of its log is above (all of it: $build/build.log)" >&2
        exit 1
    fi
    # Copy under a temporary name, then rename: an interrupted copy is never taken
    # for a wheel.
    cp "$built" "$dir/.partial"
    mv "$dir/.partial" "$dir/$(basename "$built")"
    rm -rf "$build"
    say "cached mmcv wheel at $dir/$(basename "$built")" >&2
    echo "$dir/$(basename "$built")"
}

# mmcv with its compiled ops, replacing mmcv-lite if that is there.
ensure_compiled_mmcv() {
    local full lite imported ops wheel
    read -r full lite imported ops < <(mmcv_state || echo "- - - no")
    if [ "$full" = "$MMCV_VERSION" ] && [ "$lite" = - ] && [ "$ops" = yes ]; then
        return
    fi
    # The wheel first: if it cannot be had, mmcv-lite stays and the demo still runs.
    wheel=$(compiled_mmcv_wheel)
    if [ "$lite" != - ]; then
        say "replacing mmcv-lite $lite (pure Python) with mmcv $MMCV_VERSION (compiled ops)"
        quiet "$PY" -m pip uninstall -q -y mmcv-lite
    fi
    say "installing $wheel"
    # --force-reinstall: removing mmcv-lite also removed files that mmcv owns.
    quiet "${PIP[@]}" -q --no-deps --force-reinstall "$wheel"
}

# mmcv-lite: mmcv's pure-Python part, the same files as the sdist built with
# MMCV_WITH_OPS=0 (PyPI has it as a wheel). mmengine and mmpretrain need nothing more.
ensure_mmcv_lite() {
    local full lite imported ops
    read -r full lite imported ops < <(mmcv_state || echo "- - - no")
    if [ "$lite" = "$MMCV_VERSION" ] && [ "$full" = - ] && [ "$imported" = "$MMCV_VERSION" ]; then
        return
    fi
    say "installing mmcv-lite $MMCV_VERSION (pure Python, no compiled ops)"
    quiet "${PIP[@]}" -q --no-deps --force-reinstall "mmcv-lite==$MMCV_VERSION"
}

if [ "$LEVEL" = full ]; then
    ensure_compiled_mmcv
elif [ "$( (mmcv_state || echo -) | cut -d' ' -f1)" != - ]; then
    # This .venv had the full set-up: never downgrade it.
    say "keeping the compiled mmcv of the full set-up already in $VENV"
    ensure_compiled_mmcv
else
    ensure_mmcv_lite
fi

# ------------------------------------------------------- the rest ---------
grep -v '^mmpretrain' "$ROOT/requirements/runtime.txt" > "$VENV/.runtime-no-mmpretrain.txt"
if [ "$LEVEL" = full ]; then
    say "installing mmengine, mmpretrain, mmdet, onnx(runtime) and test tools"
    quiet "${PIP[@]}" -q -r "$VENV/.runtime-no-mmpretrain.txt" \
        -r "$ROOT/requirements/detection.txt" \
        -r "$ROOT/requirements/deploy.txt" -r "$ROOT/requirements/tests.txt"
else
    say "installing mmengine, mmpretrain and what the demo needs"
    quiet "${PIP[@]}" -q -r "$VENV/.runtime-no-mmpretrain.txt"
fi
quiet "${PIP[@]}" -q --no-deps "$(grep '^mmpretrain' "$ROOT/requirements/runtime.txt")"
quiet "${PIP[@]}" -q --no-deps --no-build-isolation -e "$ROOT"

# What is there now, read from .venv itself; fails (no stamp) if the stack does not import.
"$PY" - "$LEVEL" <<'PY'
import importlib.metadata as m
import sys
import warnings

warnings.simplefilter('ignore')
level = sys.argv[1]
import atomnas_mm  # noqa: E402,F401
import mmpretrain.models  # noqa: E402,F401


def v(name):
    try:
        return m.version(name)
    except m.PackageNotFoundError:
        return None


try:
    import mmcv._ext  # noqa: F401
    mmcv = f"mmcv {v('mmcv')} (compiled ops)"
except ImportError:
    mmcv = f"mmcv-lite {v('mmcv-lite')} (pure Python, no compiled ops)"
parts = [f"torch {v('torch')}", f"torchvision {v('torchvision')}", mmcv,
         f"mmengine {v('mmengine')}", f"mmpretrain {v('mmpretrain')}"]
if level == 'full':
    import mmdet.models  # noqa: F401
    import onnxruntime  # noqa: F401
    parts += [f"mmdet {v('mmdet')}", f"onnxruntime {v('onnxruntime')}",
              f"pytest {v('pytest')}"]
print(f'[setup] {level} set-up ready: ' + ', '.join(parts) + ', atomnas_mm')
if level == 'light' and not (v('mmdet') and 'compiled' in mmcv):
    print('[setup] detection (mmdet, mmcv\'s compiled ops) and the tests need the '
          'full set-up: make setup')
PY
echo "$LEVEL $HASH" > "$STAMP_FILE"
