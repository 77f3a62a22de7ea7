#!/bin/sh
# PID 1 of the throw-away test VM (tests/vm/runner.py), in two stages.
#
# Stage 1 runs from the initramfs under busybox: it mounts the host's root,
# shared read-only over 9p, puts an overlay with a RAM upper layer on it (so the
# guest may write anywhere and the host is never modified) and switches to it,
# running this same file from the host's tree as stage 2.
#
# Stage 2 runs under the host's /bin/sh: it mounts what a Linux userland
# expects, mounts the writable share at the same path as on the host, runs the
# share's "script" once, writes its output and exit status next to it and
# powers off at once.
#
# Parameters arrive on the kernel command line: kpyvm.init=<path of this file>
# and kpyvm.share=<the share's host path>.

param() {
    for word in $(cat /proc/cmdline); do
        case $word in "$1"=*) echo "${word#*=}"; return;; esac
    done
}

halt() {
    echo "kpyvm: $*"
    # wait on a fifo nobody writes: the shell's own redirection, no program to load
    # from a root that the power-off is tearing down (PID 1 must not exit)
    mkfifo /run/kpyvm-halt
    echo o > /proc/sysrq-trigger
    read -r _ < /run/kpyvm-halt
}

if [ "$1" != guest ]; then
    export PATH=/bin
    mount -t proc proc /proc
    mount -t sysfs sys /sys
    mount -t devtmpfs dev /dev
    for module in $(cat /modules.order); do
        insmod "/modules/$module" || echo "kpyvm: insmod $module failed"
    done
    # cache=loose: the root never changes under the guest, and it is much faster
    mount -t 9p -o ro,trans=virtio,version=9p2000.L,msize=512000,cache=loose hostroot /lower \
        || halt "cannot mount the host's root over 9p"
    mount -t tmpfs -o size=50% tmpfs /upper
    mkdir /upper/data /upper/work
    mount -t overlay overlay -o lowerdir=/lower,upperdir=/upper/data,workdir=/upper/work /newroot \
        || halt "cannot mount the overlay root"
    init=$(param kpyvm.init)
    umount /sys
    mount --move /dev /newroot/dev
    umount /proc
    exec switch_root /newroot /bin/sh "$init" guest
fi

export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8
mount -t proc proc /proc
mount -t sysfs sys /sys
mkdir -p /dev/pts /dev/shm
mount -t devpts -o newinstance,ptmxmode=0666 devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
mount -t tmpfs -o mode=755 tmpfs /run
mkdir -p /run/netns /run/lock
share=$(param kpyvm.share)
mkdir -p "$share"
# no cache: what the guest writes must be on the host when the VM is gone
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 share "$share" \
    || halt "cannot mount the share"
hostname kpyvm
ip link set lo up
cd /
KPY_VM_SHARE=$share sh "$share/script" < /dev/null > "$share/output" 2>&1
echo $? > "$share/status.tmp"
mv "$share/status.tmp" "$share/status"
sync
umount "$share"
halt "done"
