#!/usr/bin/env bash
# A single-node Slurm cluster on this machine, to run deploy/slurm-scan.sbatch for real: one
# controller and one compute node with the machine's own CPUs and memory (as `slurmd -C`
# reports them), authenticated by its own munge daemon. Everything lives in one private folder
# (configuration, key, sockets, spool, logs), so no system configuration is read or changed,
# and the daemons are started directly, without systemd.
#
#   deploy/slurm-local.sh up       # configure and start; prints the line to source
#   . /tmp/synthscan-slurm/env     # SLURM_CONF for sbatch, squeue, scontrol, scancel
#   deploy/slurm-local.sh down     # stop every daemon it started and remove the folder
#
# Needs the Debian packages slurm-wlm and munge, and root (slurmd runs jobs as their submitter).
# SLURM_LOCAL_DIR (default /tmp/synthscan-slurm) and SLURM_LOCAL_PORT (default 16817, and the
# next one for slurmd) move it out of the way of another cluster.
set -euo pipefail

dir="${SLURM_LOCAL_DIR:-/tmp/synthscan-slurm}"
port="${SLURM_LOCAL_PORT:-16817}"
cmd="${1:-}"

# Every daemon writes its pid file here; `down` stops exactly these.
pids=("$dir/run/slurmd.pid" "$dir/run/slurmctld.pid" "$dir/run/munged.pid")

stop_daemons() {
  local f pid
  for f in "${pids[@]}"; do
    [[ -f "$f" ]] || continue
    pid="$(cat "$f")"
    if kill "$pid" 2>/dev/null; then
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null
    fi
    rm -f "$f"
  done
}

# Waits for a pid file to appear and for its daemon to be alive; shows the log if it does not.
wait_daemon() {
  local name="$1" pidfile="$2" log="$3"
  for _ in $(seq 100); do
    if [[ -s "$pidfile" ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
      return 0
    fi
    sleep 0.1
  done
  echo "error: $name did not start; its log ($log):" >&2
  tail -n 30 "$log" >&2 || true
  return 1
}

up() {
  for exe in munged slurmctld slurmd; do
    if ! command -v "$exe" >/dev/null 2>&1 && [[ ! -x "/usr/sbin/$exe" ]]; then
      echo "error: $exe not found; install the Debian packages: apt-get install slurm-wlm munge" >&2
      exit 1
    fi
  done
  if [[ "$(id -u)" != 0 ]]; then
    echo "error: run as root: slurmd starts each job as the user who submitted it" >&2
    exit 1
  fi
  if [[ -f "$dir/run/slurmctld.pid" ]] && kill -0 "$(cat "$dir/run/slurmctld.pid")" 2>/dev/null; then
    echo "a cluster is already running from $dir; run '$0 down' first" >&2
    exit 1
  fi
  export PATH="$PATH:/usr/sbin"
  rm -rf "$dir"
  mkdir -p "$dir"/{etc,run,log,munge,state,spool}
  chmod 700 "$dir/munge"

  # munge: a fresh key for this cluster only.
  dd if=/dev/urandom of="$dir/munge/munge.key" bs=1024 count=1 status=none
  chmod 400 "$dir/munge/munge.key"
  munged --force \
    --key-file="$dir/munge/munge.key" \
    --socket="$dir/munge/munge.socket" \
    --pid-file="$dir/run/munged.pid" \
    --log-file="$dir/log/munged.log" \
    --seed-file="$dir/munge/munged.seed"
  wait_daemon munged "$dir/run/munged.pid" "$dir/log/munged.log"

  # The node as this machine is: its hostname, CPU layout and memory.
  local host node_line
  host="$(hostname -s)"
  node_line="$(slurmd -C | head -n 1)"
  cat >"$dir/etc/slurm.conf" <<CONF
ClusterName=synthscan-local
SlurmctldHost=$host
SlurmctldPort=$port
SlurmdPort=$((port + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$dir/munge/munge.socket
CredType=cred/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/run/slurmctld.pid
SlurmdPidFile=$dir/run/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
# No cgroups in a container: track processes by parent id, bind nothing.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
MpiDefault=none
SwitchType=switch/none
# No accounting database (sacct does not work): finished jobs stay visible to scontrol long
# enough for a test to read their state.
MinJobAge=600
$node_line State=UNKNOWN
PartitionName=local Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
  # Our own cgroup.conf and plugstack.conf keep slurmd from reading the system ones.
  echo "# no cgroup plugins: ProctrackType=proctrack/linuxproc, TaskPlugin=task/none" >"$dir/etc/cgroup.conf"
  echo "# no SPANK plugins" >"$dir/etc/plugstack.conf"
  echo "PlugStackConfig=$dir/etc/plugstack.conf" >>"$dir/etc/slurm.conf"
  chmod 644 "$dir/etc/"*.conf

  export SLURM_CONF="$dir/etc/slurm.conf"
  slurmctld -i -f "$SLURM_CONF"
  wait_daemon slurmctld "$dir/run/slurmctld.pid" "$dir/log/slurmctld.log"
  slurmd -f "$SLURM_CONF"
  wait_daemon slurmd "$dir/run/slurmd.pid" "$dir/log/slurmd.log"

  # The node registers within a few seconds.
  for _ in $(seq 100); do
    if sinfo -h -N -o '%T' 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then
      echo "export SLURM_CONF=$SLURM_CONF" >"$dir/env"
      echo "Slurm is up: node $host ($(echo "$node_line" | grep -o 'CPUs=[0-9]*'), $(echo "$node_line" | grep -o 'RealMemory=[0-9]*') MB)"
      echo "  . $dir/env   # then sbatch, squeue, scontrol, scancel"
      return 0
    fi
    sleep 0.2
  done
  echo "error: the node did not register; sinfo says:" >&2
  sinfo -N -l >&2 || true
  tail -n 20 "$dir/log/slurmctld.log" "$dir/log/slurmd.log" >&2 || true
  return 1
}

case "$cmd" in
  up) up || { stop_daemons; exit 1; } ;;
  down)
    stop_daemons
    rm -rf "$dir"
    echo "Slurm stopped; $dir removed"
    ;;
  *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
