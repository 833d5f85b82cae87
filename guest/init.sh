#!/bin/busybox sh
# /init of the ebpfmon test guest (Debian's stock kernel, an initramfs built by guest/build.ts).
#
# It mounts the kernel's file systems, loads stock modules with modprobe, brings up the network
# (QEMU user-mode networking), starts a few known processes and the agent, then serves commands
# read from the console, one per line, answering between markers the host parses
# (guest/console.ts):
#
#   proc ID     the process list of /proc:  @@p PID PPID UID EUID GID KTHREAD COMM
#   modules ID  /proc/modules:               @@m LINE
#   run ID CMD  runs the shell command CMD (stdin /dev/null, stderr into stdout): each line of
#               its output as @@o LINE, then its exit status as @@x STATUS
#   poweroff    power the guest off
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

say() { echo "@@ebpfmon $*"; }
say "init uptime=$(cut -d' ' -f1 /proc/uptime) kernel=$(uname -r)"

for module in $GUEST_MODULES; do
  modprobe "$module" || say "error modprobe $module failed"
done

ip link set lo up
ip link set eth0 up
ip addr add 10.0.2.15/24 dev eth0

say "object sha256=$(sha256sum /opt/ebpfmon/bpf/out/walk.bpf.o | cut -d' ' -f1)"

# Known processes: coreutils sleep under distinctive names (comm is the name of the path run).
index=0
for uid in $GUEST_PROCESS_UIDS; do
  name="$GUEST_PROCESS_PREFIX$index"
  ln -s /usr/bin/sleep "/opt/procs/$name"
  if [ "$uid" = 0 ]; then
    "/opt/procs/$name" 1000000 &
  else
    /usr/bin/setpriv --reuid="$uid" --regid="$uid" --clear-groups "/opt/procs/$name" 1000000 &
  fi
  say "process name=$name pid=$! uid=$uid"
  index=$((index + 1))
done

export HOME=/root DENO_DIR=/opt/deno-dir DENO_NO_UPDATE_CHECK=1 NO_COLOR=1
say "agent-start uptime=$(cut -d' ' -f1 /proc/uptime)"
/opt/deno/deno run --allow-all --cached-only /opt/ebpfmon/agent/main.ts \
  --listen "0.0.0.0:$GUEST_AGENT_PORT" --state /var/lib/ebpfmon --ring-mb "$GUEST_RING_MB" \
  </dev/null >/dev/console 2>&1 &
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

run_command() {
  answer=$1
  shift
  sh -c "$*" </dev/null >/tmp/run.out 2>&1
  status=$?
  say "run $answer begin"
  while IFS= read -r line || [ -n "$line" ]; do
    echo "@@o $line"
  done </tmp/run.out
  echo "@@x $status"
  say "run $answer end"
}

say "ready uptime=$(cut -d' ' -f1 /proc/uptime)"
while read -r command id rest; do
  case $command in
    proc) dump_processes "$id" ;;
    modules) dump_modules "$id" ;;
    run) run_command "$id" "$rest" ;;
    poweroff)
      say "poweroff"
      poweroff -f
      ;;
  esac
done </dev/console
poweroff -f
