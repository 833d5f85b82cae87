/**
 * A BPF program a test loads itself, as a third party would: a tiny socket filter compiled with
 * clang, loaded and pinned with bpftool, and what bpftool says of it (the ground truth).
 *
 * @module
 */

const PROGRAM = `
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} ebpfmon_t_hits SEC(".maps");

SEC("socket")
int ebpfmon_t(struct __sk_buff *skb)
{
	__u32 key = 0;
	__u64 *hits = bpf_map_lookup_elem(&ebpfmon_t_hits, &key);

	if (hits)
		__sync_fetch_and_add(hits, 1);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
`;

export async function run(cmd: string, args: string[]): Promise<string> {
  const out = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
  const text = new TextDecoder().decode(out.stdout);
  if (!out.success) {
    throw new Error(`"${cmd} ${args.join(" ")}" failed: ${new TextDecoder().decode(out.stderr)}`);
  }
  return text;
}

/** What bpftool says of a program. */
export interface BpftoolProgram {
  id: number;
  type: string;
  name: string;
  tag: string;
  jited: boolean;
  map_ids?: number[];
  /** Wall-clock seconds since the epoch. */
  loaded_at: number;
}

/**
 * Compiles the test program in `dir`, loads it pinned at `pin` (a path in /sys/fs/bpf) and
 * returns what bpftool says of it. Unpin it with {@linkcode unloadTestProgram}.
 */
export async function loadTestProgram(dir: string, pin: string): Promise<BpftoolProgram> {
  await Deno.writeTextFile(`${dir}/t.bpf.c`, PROGRAM);
  await run("clang", [
    "-O2",
    "-g",
    "-target",
    "bpf",
    "-I/usr/include/x86_64-linux-gnu",
    "-c",
    `${dir}/t.bpf.c`,
    "-o",
    `${dir}/t.bpf.o`,
  ]);
  await run("bpftool", ["prog", "load", `${dir}/t.bpf.o`, pin]);
  return JSON.parse(await run("bpftool", ["prog", "show", "pinned", pin, "-j"])) as BpftoolProgram;
}

/**
 * Unpins the program and waits until bpftool no longer lists it (the kernel frees an unpinned
 * program after an RCU grace period).
 */
export async function unloadTestProgram(pin: string, id: number): Promise<void> {
  await Deno.remove(pin);
  for (let i = 0; i < 100; i++) {
    const all = JSON.parse(await run("bpftool", ["prog", "show", "-j"])) as BpftoolProgram[];
    if (!all.some((p) => p.id === id)) return;
    await new Promise((r) => setTimeout(r, 50));
  }
}
