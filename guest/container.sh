#!/bin/busybox sh
# The init of the test guest's container, /opt/container/init.sh: pid 1 of a pid namespace of
# its own, with its own mount (and /proc), UTS, network and IPC namespaces. The guest's /init
# (guest/init.sh) starts it with busybox unshare, fd 3 a FIFO it reads. This init moves itself
# into the workload cgroup (what it starts is born there), sets the container's hostname, mounts
# a /tmp of its own and an empty tmpfs over the agent's state dir, starts the known processes,
# and tells the guest's init about each on fd 3, one line each:
#
#   container NSPID HOSTNAME    itself
#   process NAME NSPID UID      a known process (NSPID: its pid in the container)
#   ready                       all of them started
#
# then closes fd 3 and stays, as the container ends with its init.

export PATH=/bin:/usr/bin
. /etc/ebpfmon-guest.conf

# $$ is 1 here, and the kernel reads a pid written to cgroup.procs in the writer's namespace.
echo $$ >"/sys/fs/cgroup$GUEST_CONTAINER_CGROUP/cgroup.procs" || exit 1
hostname "$GUEST_CONTAINER_HOSTNAME"
mount -t tmpfs tmpfs /tmp
# The agent's key and certificate are out of the container's sight (root in it could unmount
# this: it is root of the guest, without a user namespace).
mount -t tmpfs -o mode=0700 tmpfs /var/lib/ebpfmon
ip link set lo up
echo "container $$ $(hostname)" >&3

# Known processes: coreutils sleep under distinctive names (comm is the name of the path run).
index=0
for uid in $GUEST_PROCESS_UIDS; do
  name="$GUEST_PROCESS_PREFIX$index"
  ln -s /usr/bin/sleep "/opt/procs/$name"
  if [ "$uid" = 0 ]; then
    "/opt/procs/$name" 1000000 3>&- &
  else
    /usr/bin/setpriv --reuid="$uid" --regid="$uid" --clear-groups "/opt/procs/$name" 1000000 \
      3>&- &
  fi
  echo "process $name $! $uid" >&3
  index=$((index + 1))
done
echo ready >&3
exec 3>&-

# Reap what ends, then hold on: a FIFO this shell keeps open at both ends never ends a read.
wait
mkfifo /tmp/init.hold
exec 4<>/tmp/init.hold
read -r _ <&4
