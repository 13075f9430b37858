#!/usr/bin/env bash
# Submits wsiseg over INPUT as a Slurm array of TASKS tasks (one GPU each,
# segment-array.sbatch) and the merge that runs when all have ended
# (summary.sbatch); prints both job IDs.
#
#   scripts/slurm/submit.sh INPUT OUT TASKS [wsiseg segment options…]
#
# Extra sbatch options for both jobs (partition, account, resources):
# WSISEG_SBATCH_OPTIONS="--partition=gpu --account=lab". Logs go to the
# current folder (wsiseg-JOB_TASK.log, wsiseg-summary-JOB.log).
set -euo pipefail
if [ $# -lt 3 ]; then
    echo "usage: submit.sh INPUT OUT TASKS [wsiseg segment options…]" >&2
    exit 2
fi
here=$(cd "$(dirname "$0")" && pwd)
input=$1 out=$2 tasks=$3
shift 3
case $tasks in
    '' | *[!0-9]* | 0) echo "error: TASKS must be a whole number above 0, not '$tasks'" >&2; exit 2 ;;
esac
# shellcheck disable=SC2206 # options are words
extra=(${WSISEG_SBATCH_OPTIONS:-})
recursive=()
case " $* " in *" --recursive "* | *" -r "*) recursive=(--recursive) ;; esac
array=$(sbatch --parsable "${extra[@]}" --array="0-$((tasks - 1))" \
    "$here/segment-array.sbatch" "$input" "$out" "$@")
array=${array%%;*}
merge=$(sbatch --parsable "${extra[@]}" --dependency="afterany:$array" \
    "$here/summary.sbatch" "$out" "$input" "${recursive[@]}")
merge=${merge%%;*}
echo "array job $array ($tasks tasks), merge job $merge (after all of them): squeue -j $array,$merge"
