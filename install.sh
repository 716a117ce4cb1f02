#!/usr/bin/env bash
# Installs everything Cadenza needs on a fresh Debian machine: system packages, then Python packages.
# Safe to run twice. Never installs torchaudio (it drags a CUDA torch); torch is the CPU build 2.13.0.
set -euo pipefail
cd "$(dirname "$0")"

SUDO=""
if [ "$(id -u)" != "0" ] && command -v sudo >/dev/null; then SUDO="sudo"; fi
if command -v apt-get >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  # libsndfile: audio I/O; fluid-soundfont-gm: FluidR3_GM for corpus rendering; ffmpeg: mp3 fallback.
  $SUDO apt-get install -y -qq --no-install-recommends libsndfile1 fluid-soundfont-gm >/dev/null
  # chromium: the headless browser the studio's end-to-end test drives through Playwright (never 'playwright install').
  $SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi

PIP="python3 -m pip"
$PIP install -q --upgrade pip
$PIP install -q torch==2.13.0
$PIP install -q -e ".[dev]"
# tinysoundfont declares pyaudio (for playback only); we render offline, so skip its deps.
$PIP install -q --no-deps tinysoundfont
# basic-pitch (optional melody cross-check in cadenza.eval): its bundled ONNX model runs on onnxruntime;
# its declared deps pull TensorFlow, so --no-deps (it imports neither TF nor torchaudio without them).
$PIP install -q onnxruntime "resampy>=0.4.3"
$PIP install -q --no-deps basic-pitch==0.4.0
# vocoder: onnx for the ONNX export; vocos only as a speed peer in benchmarks/vocoder.py. vocos declares
# torchaudio (which drags a CUDA torch), so --no-deps: the benchmark loads its model classes without it.
$PIP install -q "onnx>=1.16"
$PIP install -q --no-deps vocos==0.1.0
python3 -c "import cadenza, torch; print('cadenza', cadenza.__version__, 'torch', torch.__version__)"
