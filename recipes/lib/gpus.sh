#!/usr/bin/env bash
# How many CUDA devices this process may use (sourced): the stage recipes size torchrun's
# --nproc_per_node and veRL's trainer.n_gpus_per_node with it.
#
# `nvidia-smi -L` lists every physical GPU ("GPU 0: ... (UUID: GPU-...)") and, indented under a
# GPU in MIG mode, its MIG devices ("  MIG 3g.40gb Device 0: (UUID: MIG-...)"). Counting its lines
# counts MIG devices as extra GPUs and ignores CUDA_VISIBLE_DEVICES, which schedulers (Slurm, Ray,
# Kubernetes) set to the devices a job was given. The rules below are CUDA's own for that
# variable (CUDA C Programming Guide, "CUDA Environment Variables"): a comma-separated list of
# indices, GPU-/MIG- UUIDs or unique UUID prefixes; set but empty means no device; enumeration
# stops at the first entry that names no device (so "0,-1,2" is one device).

# Print the count; a note on stderr when an entry of CUDA_VISIBLE_DEVICES names no device.
count_visible_gpus() {
  local listing
  listing="$(nvidia-smi -L 2>/dev/null || true)"
  local -a uuids=()
  local n_physical=0 line
  while IFS= read -r line; do
    [[ "$line" =~ ^GPU[[:space:]]+[0-9]+: ]] && n_physical=$((n_physical + 1))
    [[ "$line" =~ \(UUID:[[:space:]]*([^\)]+)\) ]] && uuids+=("${BASH_REMATCH[1]}")
  done <<< "$listing"

  if [[ -z "${CUDA_VISIBLE_DEVICES+set}" ]]; then
    echo "$n_physical"
    return 0
  fi
  local count=0 entry u matches
  local -a entries=()
  IFS=',' read -r -a entries <<< "${CUDA_VISIBLE_DEVICES}"
  for entry in "${entries[@]}"; do
    entry="${entry//[[:space:]]/}"
    if [[ "$entry" =~ ^[0-9]+$ ]]; then
      if (( entry < n_physical )); then count=$((count + 1)); continue; fi
    elif [[ -n "$entry" ]]; then
      matches=0
      for u in "${uuids[@]}"; do [[ "$u" == "$entry"* ]] && matches=$((matches + 1)); done
      if (( matches == 1 )); then count=$((count + 1)); continue; fi
    fi
    echo "[gpus] CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES}: '${entry}' names no device of \`nvidia-smi -L\`;" \
         "CUDA ignores it and every entry after it" >&2
    break
  done
  echo "$count"
}
