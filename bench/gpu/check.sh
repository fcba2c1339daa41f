#!/usr/bin/env bash
# kdtool's GPU half in one command, sized for 8 minutes on an H200 (README "Verifying on a GPU").
#
#   bench/gpu/check.sh [--out DIR] [--steps 1,2,3,4,5] [--budget 480]   # on the GPU machine (OUT is the default DIR)
#   bench/gpu/check.sh --cpu-dry-run --out /tmp/check                  # anywhere: tiny shapes, what CI runs
#
# Needs the wheels of bench/gpu/wheels.sh in bench/gpu/wheels (carried: the folder is git-ignored).
# Everything else (steps, time limits, JSON, summary) is bench/gpu/check.py; PYTHON picks the interpreter
# (default python3, the one that holds torch on the GPU image).
set -u
cd "$(dirname "$0")/../.." || exit 2
export PYTHONUNBUFFERED=1
exec "${PYTHON:-python3}" bench/gpu/check.py "$@"
