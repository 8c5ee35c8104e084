#!/usr/bin/env bash
# Creates .venv (if missing) and installs everything atomnas-mm needs.
#
# Idempotent: a stamp in .venv records a hash of the requirement files and of
# this script; when it matches, nothing is installed and the script returns at once.
#
# mmcv 2.1.0 (needed by mmdet 3.3.0, with its compiled ops) exists on PyPI only as
# an sdist that does not compile against torch 2.14 as-is. It is built once from
# source (about 30 min on 2 cores, progress shown) and the wheel is cached in
# $ATOMNAS_CACHE (default ~/.cache/atomnas_mm), keyed by torch version, so it is
# never rebuilt. A ready wheel is taken from $ATOMNAS_WHEELHOUSE when that folder
# holds one.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
VENV=${VENV:-$ROOT/.venv}
PYTHON=${PYTHON:-python3.11}
CACHE=${ATOMNAS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/atomnas_mm}
MMCV_VERSION=2.1.0
TORCH_VERSION=2.14.1

say() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }

stamp_of() {
    cat "$ROOT"/requirements/*.txt "$ROOT/setup.py" "$0" | sha256sum | cut -c1-16
}
STAMP=$(stamp_of)
if [ -f "$VENV/.atomnas-installed" ] && [ "$(cat "$VENV/.atomnas-installed")" = "$STAMP" ]; then
    say "environment up to date ($VENV)"
    exit 0
fi

if [ ! -x "$VENV/bin/python" ]; then
    say "creating $VENV with $PYTHON"
    "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip install --disable-pip-version-check --progress-bar off)
# pip warns once per package about this machine's local index folders; hide that noise.
quiet() { "$@" 2> >(grep -v 'is ignored: it is neither a file nor a directory' >&2); }

say "installing torch $TORCH_VERSION and torchvision (large: about 5.5 GB)"
quiet "${PIP[@]}" -q -r "$ROOT/requirements/torch.txt"
quiet "${PIP[@]}" -q -r "$ROOT/requirements/build.txt"

# ---------------------------------------------------------------- mmcv ----
installed_mmcv=$("$VENV/bin/python" - <<'PY' 2>/dev/null || true
import importlib.metadata as m
try:
    import mmcv._ext  # noqa: F401  (compiled ops load against this torch)
    print(m.version("mmcv"))
except Exception:
    pass
PY
)
if [ "$installed_mmcv" != "$MMCV_VERSION" ]; then
    WHEEL_DIR="$CACHE/mmcv-$MMCV_VERSION-torch$TORCH_VERSION"
    mkdir -p "$WHEEL_DIR"
    wheel=$(ls "$WHEEL_DIR"/mmcv-$MMCV_VERSION-*.whl 2>/dev/null | head -n1 || true)
    if [ -z "$wheel" ] && [ -n "${ATOMNAS_WHEELHOUSE:-}" ]; then
        src=$(ls "$ATOMNAS_WHEELHOUSE"/mmcv-$MMCV_VERSION-*.whl 2>/dev/null | head -n1 || true)
        if [ -n "$src" ]; then
            say "taking mmcv wheel from ATOMNAS_WHEELHOUSE: $src"
            cp "$src" "$WHEEL_DIR/"
            wheel="$WHEEL_DIR/$(basename "$src")"
        fi
    fi
    if [ -z "$wheel" ]; then
        say "building mmcv $MMCV_VERSION with CPU ops from source (once; ~30 min on 2 cores)"
        BUILD=$(mktemp -d)
        trap 'rm -rf "$BUILD"' EXIT
        "$VENV/bin/python" -m pip download -q --no-deps --no-binary :all: \
            "mmcv==$MMCV_VERSION" -d "$BUILD"
        tar -xzf "$BUILD"/mmcv-$MMCV_VERSION.tar.gz -C "$BUILD"
        # torch >= 2.14 headers require C++20; mmcv 2.1.0 hard-codes C++17.
        sed -i 's/-std=c++17/-std=c++20/g' "$BUILD/mmcv-$MMCV_VERSION/setup.py"
        # Show ninja's "[n/77]" lines as progress; keep the full log for failures.
        (cd "$BUILD/mmcv-$MMCV_VERSION" &&
            MMCV_WITH_OPS=1 FORCE_CUDA=0 MAX_JOBS=${MAX_JOBS:-2} \
            "$VENV/bin/python" -m pip wheel -v --no-deps --no-build-isolation . \
                -w "$BUILD/dist" 2>&1) | tee "$BUILD/build.log" |
            grep --line-buffered -oE '^ *\[[0-9]+/[0-9]+\]' |
            sed -u 's/^ */[setup] mmcv build: compiled /' || true
        built=$(ls "$BUILD"/dist/mmcv-$MMCV_VERSION-*.whl 2>/dev/null | head -n1 || true)
        if [ -z "$built" ]; then
            tail -n 40 "$BUILD/build.log"
            say "mmcv build failed; full log above"
            exit 1
        fi
        cp "$built" "$WHEEL_DIR/"
        wheel="$WHEEL_DIR/$(basename "$built")"
        say "cached mmcv wheel at $wheel"
    fi
    say "installing $wheel"
    quiet "${PIP[@]}" -q --no-deps "$wheel"
fi

# ------------------------------------------------------- the rest ---------
say "installing mmengine, mmpretrain, mmdet and test tools"
grep -v '^mmpretrain' "$ROOT/requirements/runtime.txt" > "$VENV/.runtime-no-mmpretrain.txt"
# mmcv's own requirements, minus mmcv (already installed from the wheel).
quiet "${PIP[@]}" -q addict packaging Pillow pyyaml yapf opencv-python \
    -r "$VENV/.runtime-no-mmpretrain.txt" -r "$ROOT/requirements/tests.txt"
quiet "${PIP[@]}" -q --no-deps "$(grep '^mmpretrain' "$ROOT/requirements/runtime.txt")"
quiet "${PIP[@]}" -q --no-deps --no-build-isolation -e "$ROOT"

"$VENV/bin/python" -c "import mmcv._ext, mmdet.models, mmpretrain.models, atomnas_mm; print('[setup] stack imports: ok')"
echo "$STAMP" > "$VENV/.atomnas-installed"
say "done"
