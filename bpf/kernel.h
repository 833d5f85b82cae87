/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The few kernel types the ebpfmon programs touch, declared by hand for BPF CO-RE.
 *
 * Every struct carries preserve_access_index, so each field access is compiled as a relocation
 * that libbpf resolves against the running kernel's BTF when the object is loaded: the field
 * lists below only need the members we use, in any order, and their offsets here are irrelevant.
 * A header written this way (instead of a vmlinux.h dumped from the build machine) keeps builds
 * byte-for-byte independent of whichever kernel the build runs on, stays reviewable, and makes
 * plain which kernel fields the agent depends on.
 */
#ifndef EBPFMON_KERNEL_H
#define EBPFMON_KERNEL_H

typedef signed char __s8;
typedef unsigned char __u8;
typedef short __s16;
typedef unsigned short __u16;
typedef int __s32;
typedef unsigned int __u32;
typedef long long __s64;
typedef unsigned long long __u64;
typedef __u16 __be16;
typedef __u32 __be32;
typedef __u32 __wsum;
typedef __u16 __sum16;

/* Stable UAPI values from include/uapi/linux/bpf.h. */
#define BPF_MAP_TYPE_ARRAY 2
#define BPF_MAP_TYPE_PERCPU_ARRAY 6
#define BPF_MAP_TYPE_RINGBUF 27
#define BPF_RB_NO_WAKEUP 1

struct pt_regs;

#pragma clang attribute push(__attribute__((preserve_access_index)), apply_to = record)

struct list_head {
	struct list_head *next;
	struct list_head *prev;
};

struct cred {
	int usage;
};

struct task_struct {
	unsigned int __state;
	unsigned int flags;
	struct list_head tasks;
	int pid;
	int tgid;
	struct task_struct *real_parent;
	struct task_struct *group_leader;
	const struct cred *real_cred;
	const struct cred *cred;
};

#pragma clang attribute pop

#endif
