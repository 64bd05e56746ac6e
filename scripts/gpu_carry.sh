#!/usr/bin/env bash
# Take scripts/gpu_speed.py to a GPU machine that has torch but no internet (nor ../shared/data).
#
#   scripts/gpu_carry.sh prepare        # here, with internet to the package index: fills gpu-carry/
#   scripts/gpu_carry.sh run OUT [ARGS] # there, from the repository root with gpu-carry/ beside it
#
# `prepare` puts into gpu-carry/ (ignored by git, about 30 MB): wheels of what the GPU machine lacks
# (open_clip_torch, ftfy, wcwidth, platformdirs, pydicom) for its Python (TARGET_PYTHON, default 3.12)
# on x86-64 Linux, a wheel of vip itself, and a copy of the ISIC melanoma/nevus folder that the
# Derm7pt-sized benchmark folder is made from. `run` installs the wheels into a folder of their own
# (SITE, default /tmp/vip-site, put on PYTHONPATH: no root needed, the machine's torch untouched) and
# runs gpu_speed.py; ARGS go to gpu_speed.py (e.g. --time-limit 420). Its JSON is OUT/gpu_speed.json.
set -euo pipefail
cd "$(dirname "$0")/.."
CARRY=gpu-carry
PYTHON=${PYTHON:-python3}
SITE=${SITE:-/tmp/vip-site}

case ${1:-} in
prepare)
    SOURCE=${SOURCE:-../shared/data/isic2017_mel_nv}
    [[ -d $SOURCE ]] || { echo "error: no ISIC folder at $SOURCE: set SOURCE=DIR" >&2; exit 2; }
    rm -rf "$CARRY" && mkdir -p "$CARRY/wheels"
    platforms=()
    for tag in manylinux_2_28 manylinux_2_27 manylinux_2_17 manylinux2014 manylinux1; do
        platforms+=(--platform "${tag}_x86_64")
    done
    "$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version "${TARGET_PYTHON:-3.12}" \
        --implementation cp "${platforms[@]}" -d "$CARRY/wheels" open_clip_torch ftfy wcwidth platformdirs pydicom
    "$PYTHON" -m pip wheel -q --no-deps -w "$CARRY/wheels" .
    cp -r "$SOURCE" "$CARRY/isic"
    du -sh "$CARRY" && ls "$CARRY/wheels"
    ;;
run)
    out=${2:?usage: scripts/gpu_carry.sh run OUT [gpu_speed.py options]}; shift 2
    [[ -d $CARRY/wheels && -d $CARRY/isic ]] || { echo "error: no $CARRY/: run scripts/gpu_carry.sh prepare first" >&2; exit 2; }
    "$PYTHON" -m pip install -q --no-deps --no-index --no-compile --no-cache-dir --upgrade --target "$SITE" \
        "$CARRY"/wheels/*.whl
    export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
    # what vip and open_clip import that the wheels do not bring: named at once, not after the GPU's minutes
    "$PYTHON" - <<'PY' || exit 2
import importlib.util, sys
# (not vipcli: run from the repository root, Python finds this checkout's own; gpu_speed.py checks it is installed)
needed = ["torch", "torchvision", "timm", "transformers", "typer", "rich", "safetensors", "yaml", "PIL", "numpy",
          "sklearn", "httpx", "matplotlib", "regex", "tqdm", "huggingface_hub", "open_clip"]
missing = [name for name in needed if importlib.util.find_spec(name) is None]
if missing:
    sys.exit(f"error: this Python ({sys.executable}) lacks {', '.join(missing)}: carry their wheels in gpu-carry/wheels")
PY
    exec "$PYTHON" scripts/gpu_speed.py --out "$out" --source "$CARRY/isic" "$@"
    ;;
*)
    echo "usage: scripts/gpu_carry.sh prepare | run OUT [gpu_speed.py options]" >&2; exit 2
    ;;
esac
