#!/usr/bin/env bash
# Optional check, not part of `make test`: LeRobot's own LeRobotDataset reads what enpire's
# rollout node records. lerobot stays out of the default set-up (lerobot 0.4.4 pins torch < 2.11
# and its dataset module imports torchvision, which cannot sit beside our CPU torch), so this
# builds a separate environment, .venv-lerobot/ (~5.5 GB: torch 2.14.1 + torchvision 0.29.1 and
# lerobot installed without its pins), records a few episodes with a 1-cell simulated fleet
# (`enpire launch` + `enpire rollout`, the same nodes as always) and loads them there.
#
#   make setup && bash bench/lerobot_compat.sh [episodes]     # output: bench/results/lerobot_compat.txt
set -euo pipefail
cd "$(dirname "$0")/.."
episodes=${1:-3}
venv=${LEROBOT_VENV:-.venv-lerobot}
py=${PYTHON:-python3.11}
out=bench/results/lerobot_compat.txt

if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import lerobot.datasets, torchcodec" 2>/dev/null; then
  echo "[lerobot_compat] building $venv"
  "$py" -m venv "$venv"
  "$venv/bin/pip" install -q torch==2.14.1 torchvision==0.29.1
  "$venv/bin/pip" install -q --no-deps lerobot==0.4.4
  # what lerobot.datasets imports, within lerobot's own ranges (torchcodec, wandb, rerun... left
  # out: the check decodes video with PyAV)
  "$venv/bin/pip" install -q "datasets>=4,<5" "huggingface-hub>=0.34.2,<0.36" \
    "accelerate>=1.10,<2" "einops>=0.8,<0.9" "av>=15,<16" "jsonlines>=4,<5" \
    "packaging>=24.2,<26" "draccus==0.10.0" "deepdiff>=7.0.1,<9" "imageio>=2.34,<3" \
    "termcolor>=2.4,<4" "opencv-python-headless>=4.9,<4.13" "gymnasium>=1.1.1,<2" pyarrow
  # LeRobot's video decoder: torchcodec, the release built for torch 2.14 (lerobot pins < 0.11,
  # the releases for its older torch)
  "$venv/bin/pip" install -q --no-deps torchcodec==0.14.0
fi
# torchcodec needs FFmpeg's shared libraries; without a system FFmpeg, use the FFmpeg 7 that
# PyAV's wheel bundles (its files carry hashed names: link them under their sonames)
avlibs=$("$venv/bin/python" -c "import av, pathlib; print(pathlib.Path(av.__file__).parent.parent / 'av.libs')")
if ! ldconfig -p | grep -q "libavutil.so" && [ -d "$avlibs" ]; then
  mkdir -p "$venv/ffmpeg-libs"
  for f in "$avlibs"/libav*.so.* "$avlibs"/libsw*.so.*; do
    b=$(basename "$f")
    ln -sf "$f" "$venv/ffmpeg-libs/${b%%-*}.so.$(echo "$b" | sed -E 's/.*\.so\.([0-9]+).*/\1/')"
  done
  export LD_LIBRARY_PATH="$venv/ffmpeg-libs:$avlibs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi

data=$(mktemp -d /tmp/enpire-lerobot-compat.XXXXXX)
export ROS_DOMAIN_ID=${ROS_DOMAIN_ID:-$((100 + RANDOM % 100))} ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
scripts/run enpire launch --robots 1 --time-scale 5 --data-dir "$data" >"$data/launch.log" 2>&1 &
launch=$!
trap 'kill -INT $launch 2>/dev/null; wait $launch 2>/dev/null || true' EXIT
echo "[lerobot_compat] recording $episodes episodes (data in $data)"
scripts/run enpire rollout --episodes "$episodes" --seed 7 --timeout 900
dataset=$(ls -d "$data"/datasets/*/ | head -1)
{
  echo "# bench/lerobot_compat.sh on $(date -u +%F) ($(nproc) cores): $episodes episodes recorded"
  echo "# by enpire's rollout node (1 simulated cell, heuristic policy), loaded with LeRobot"
  echo "# (lerobot installed --no-deps beside torch 2.14.1, torchvision 0.29.1, torchcodec 0.14.0)"
  "$venv/bin/python" bench/lerobot_check.py "$dataset"
} 2>&1 | grep -v "^WARNING: Location" | tee "$out"
