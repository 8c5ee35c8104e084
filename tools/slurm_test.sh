#!/usr/bin/env bash
# [GPUS=8] [GPUS_PER_NODE=8] [CPUS_PER_TASK=5] [SRUN_ARGS="..."] \
#     bash tools/slurm_test.sh PARTITION JOB_NAME CONFIG CHECKPOINT [test.py options...]
# One srun task per GPU; tools/test.py --launcher slurm takes rank, world size
# and master address from Slurm's variables (mmengine's slurm launcher).
# SRUN_ARGS is split into words (e.g. "--time=1:00:00 --qos=high").
PARTITION=$1
JOB_NAME=$2
CONFIG=$3
CHECKPOINT=$4
GPUS=${GPUS:-8}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
CPUS_PER_TASK=${CPUS_PER_TASK:-5}
SRUN_ARGS=${SRUN_ARGS:-""}
DIR=$(cd "$(dirname "$0")" && pwd)
PYTHON=${PYTHON:-python}
# Fewer GPUs than a node has: reserve only those.
PER_NODE=$(( GPUS < GPUS_PER_NODE ? GPUS : GPUS_PER_NODE ))

# A config that needs mmdet on the light set-up: one line, before the job is
# queued.
PYTHONPATH="$DIR/..":$PYTHONPATH "$PYTHON" "$DIR/../atomnas_mm/utils/stack.py" "$CONFIG" || exit 1

# shellcheck disable=SC2086  # SRUN_ARGS: several options in one variable
PYTHONPATH="$DIR/..":$PYTHONPATH \
exec srun -p "$PARTITION" \
    --job-name="$JOB_NAME" \
    --gres=gpu:"$PER_NODE" \
    --ntasks="$GPUS" \
    --ntasks-per-node="$PER_NODE" \
    --cpus-per-task="$CPUS_PER_TASK" \
    --kill-on-bad-exit=1 \
    ${SRUN_ARGS} \
    "$PYTHON" -u "$DIR/test.py" "$CONFIG" "$CHECKPOINT" --launcher=slurm \
    "${@:5}"
