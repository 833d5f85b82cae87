#!/bin/busybox sh
# /init of the ebpfmon test guest (Debian's stock kernel, an initramfs built by guest/build.ts).
#
# It mounts the kernel's file systems, loads stock modules with modprobe, brings up the network
# (QEMU user-mode networking), starts a few known processes in a container, and outside it a
# holder of sockets (guest/sockets.c) and the agent, then serves commands read from the console,
# one per line, answering between markers the host parses (guest/console.ts):
#
#   proc ID       the process list of /proc:  @@p PID PPID UID EUID GID KTHREAD COMM
#   ns ID [PID..] for each process (or each PID given), the NSpid line of /proc/PID/status and
#                 each line of /proc/PID/cgroup:  @@n PID NSPID...  then  @@g PID LINE
#   modules ID    /proc/modules:               @@m LINE
#   status ID     /proc/PID/status, stat and comm of every process, as grep -H prints them:
#                 @@s /proc/PID/FILE:LINE
#   net ID        for the guest's network namespace and the container's (PID 1 and the
#                 container's init): @@k PID net:[INODE], then /proc/PID/net/{tcp,tcp6,udp,udp6}
#                 as grep -H prints them: @@N /proc/PID/net/FILE:LINE
#   fds ID        every process's mount namespace and fds (readlink of each), as ls -ln prints
#                 /proc/PID/ns/mnt and /proc/PID/fd:  @@f LINE
#   run ID CMD    runs the shell command CMD (stdin /dev/null, stderr into stdout): each line of
#                 its output as @@o LINE, then its exit status as @@x STATUS
#   runin ID CMD  the same, run inside the container: its namespaces (nsenter) and its cgroup
#   poweroff      power the guest off
#
# Every answer is "@@ebpfmon KIND ID begin", its lines, "@@ebpfmon KIND ID end".
# The test rootkit (guest/rootkit/) is in /opt/rootkit, not loaded: only a run command loads it.
# Settings come from /etc/ebpfmon-guest.conf (written by the build).

/bin/busybox mkdir -p /bin /sbin /proc /sys /dev /tmp /run
/bin/busybox --install -s /bin
export PATH=/bin:/usr/bin

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
echo 1 >/proc/sys/kernel/printk
stty -F /dev/console -echo -onlcr 2>/dev/null

. /etc/ebpfmon-guest.conf
hostname "$GUEST_HOSTNAME"

say() { echo "@@ebpfmon $*"; }
say "init uptime=$(cut -d' ' -f1 /proc/uptime) kernel=$(uname -r)"

for module in $GUEST_MODULES; do
  modprobe "$module" || say "error modprobe $module failed"
done

ip link set lo up
ip link set eth0 up
ip addr add 10.0.2.15/24 dev eth0

# TCP and UDP sockets of both families, an unlinked file and a pipe (guest/sockets.c).
sockets_pid=$("$GUEST_SOCKETS" "$GUEST_SOCKETS_PORT") || say "error the sockets' holder failed"
say "sockets pid=$sockets_pid port=$GUEST_SOCKETS_PORT"

say "object sha256=$(sha256sum /opt/ebpfmon/bpf/out/walk.bpf.o | cut -d' ' -f1)"

# The known processes run in a container (guest/container.sh): busybox unshare gives its init
# new pid, mount (with its own /proc), UTS, network and IPC namespaces, and that init moves
# itself into the workload cgroup before it starts anything. The agent stays outside: root
# namespaces, root cgroup. The container's init reports on a FIFO; each known process is
# announced with its pid here (the root pid namespace) and in the container.
say "container-start uptime=$(cut -d' ' -f1 /proc/uptime)"
mount -t cgroup2 cgroup2 /sys/fs/cgroup
mkdir "/sys/fs/cgroup$GUEST_CONTAINER_CGROUP"
mkfifo /run/container.fifo
unshare --pid --fork --mount-proc --mount --uts --net --ipc /bin/sh /opt/container/init.sh \
  </dev/null >/dev/console 2>&1 3>/run/container.fifo &

# The pid in the root pid namespace of the workload's process whose pid in its own is $1.
root_pid() {
  while read -r pid; do
    while read -r key outer inner deeper; do
      [ "$key" = NSpid: ] && [ "$inner" = "$1" ] && [ -z "$deeper" ] && echo "$pid" && return
    done 2>/dev/null <"/proc/$pid/status"
  done <"/sys/fs/cgroup$GUEST_CONTAINER_CGROUP/cgroup.procs"
}

container_pid=
while read -r what a b c; do
  case $what in
    container)
      container_pid=$(root_pid "$a")
      say "container pid=$container_pid nspid=$a hostname=$b cgroup=$GUEST_CONTAINER_CGROUP"
      ;;
    process) say "process name=$a pid=$(root_pid "$b") nspid=$b uid=$c" ;;
    ready) break ;;
  esac
done </run/container.fifo
rm -f /run/container.fifo
say "container-ready uptime=$(cut -d' ' -f1 /proc/uptime)"
[ -n "$container_pid" ] || say "error the container did not start"

export HOME=/root DENO_DIR=/opt/deno-dir DENO_NO_UPDATE_CHECK=1 NO_COLOR=1
say "agent-start uptime=$(cut -d' ' -f1 /proc/uptime)"
/opt/deno/deno run --allow-all --cached-only /opt/ebpfmon/agent/main.ts \
  --listen "0.0.0.0:$GUEST_AGENT_PORT" --state /var/lib/ebpfmon --ring-mb "$GUEST_RING_MB" \
  --hold-cgroup "/sys/fs/cgroup$GUEST_CONTAINER_CGROUP" </dev/null >/dev/console 2>&1 &
say "agent pid=$!"

dump_processes() {
  answer=$1
  say "proc $answer begin"
  for dir in /proc/[0-9]*; do
    pid=${dir#/proc/}
    ppid=
    uid=
    euid=
    gid=
    while read -r key a b rest; do
      case $key in
        PPid:) ppid=$a ;;
        Uid:) uid=$a euid=$b ;;
        Gid:) gid=$a ;;
      esac
    done 2>/dev/null <"$dir/status"
    stat=
    comm=
    read -r stat 2>/dev/null <"$dir/stat"
    read -r comm 2>/dev/null <"$dir/comm"
    [ -n "$ppid" ] && [ -n "$stat" ] || continue
    set -- ${stat##*) }
    echo "@@p $pid $ppid $uid $euid $gid $(($7 >> 21 & 1)) $comm"
  done
  say "proc $answer end"
}

dump_modules() {
  say "modules $1 begin"
  while read -r line; do
    echo "@@m $line"
  done </proc/modules
  say "modules $1 end"
}

dump_namespaces() {
  answer=$1
  shift
  [ $# -gt 0 ] || set -- /proc/[0-9]*
  say "ns $answer begin"
  for pid; do
    pid=${pid#/proc/}
    case $pid in '' | *[!0-9]*) continue ;; esac
    nspid=
    while read -r key rest; do
      [ "$key" = NSpid: ] && nspid=$rest
    done 2>/dev/null <"/proc/$pid/status"
    [ -n "$nspid" ] || continue
    echo "@@n $pid" $nspid
    while IFS= read -r line; do
      echo "@@g $pid $line"
    done 2>/dev/null <"/proc/$pid/cgroup"
  done
  say "ns $answer end"
}

# Answers KIND ID with what the script $3 prints, run by a child shell with the arguments that
# follow: nothing of this shell (pid 1, whose fds the fds answer lists) is redirected meanwhile,
# as a redirection or a pipe here would be (ash redirects before it forks).
child_answer() {
  kind=$1 answer=$2 script=$3
  shift 3
  say "$kind $answer begin"
  sh -c "$script" - "$@"
  say "$kind $answer end"
}

DUMP_STATUS='grep -H "" /proc/[0-9]*/status /proc/[0-9]*/stat /proc/[0-9]*/comm 2>/dev/null |
  sed "s/^/@@s /"'
DUMP_NET='for pid; do
  ns=$(readlink "/proc/$pid/ns/net") && echo "@@k $pid $ns" || continue
  grep -H "" "/proc/$pid/net/tcp" "/proc/$pid/net/tcp6" "/proc/$pid/net/udp" \
    "/proc/$pid/net/udp6" | sed "s/^/@@N /"
done'
DUMP_FDS='ls -ln /proc/[0-9]*/ns/mnt /proc/[0-9]*/fd 2>/dev/null | sed "s/^/@@f /"'

# In the container: the shell joins its cgroup, then nsenter runs CMD in its namespaces.
in_container() {
  sh -c 'echo $$ >"$1/cgroup.procs" && exec nsenter -t "$2" -m -u -i -n -p -- sh -c "$3"' - \
    "/sys/fs/cgroup$GUEST_CONTAINER_CGROUP" "$container_pid" "$1"
}

run_command() {
  kind=$1
  answer=$2
  shift 2
  if [ "$kind" = runin ]; then
    in_container "$*" </dev/null >/tmp/run.out 2>&1
  else
    sh -c "$*" </dev/null >/tmp/run.out 2>&1
  fi
  status=$?
  say "$kind $answer begin"
  while IFS= read -r line || [ -n "$line" ]; do
    echo "@@o $line"
  done </tmp/run.out
  echo "@@x $status"
  say "$kind $answer end"
}

say "ready uptime=$(cut -d' ' -f1 /proc/uptime)"
while read -r command id rest; do
  case $command in
    proc) dump_processes "$id" ;;
    modules) dump_modules "$id" ;;
    status) child_answer status "$id" "$DUMP_STATUS" ;;
    net) child_answer net "$id" "$DUMP_NET" 1 "$container_pid" ;;
    fds) child_answer fds "$id" "$DUMP_FDS" ;;
    ns) dump_namespaces "$id" $rest ;;
    run | runin) run_command "$command" "$id" "$rest" ;;
    poweroff)
      say "poweroff"
      poweroff -f
      ;;
  esac
done </dev/console
poweroff -f
