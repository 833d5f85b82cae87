/**
 * The permissions the agent runs with, under `deno run` and in the compiled `ebpfmon-agent`
 * alike. The agent loads libbpf through FFI, which already puts it beyond Deno's sandbox, and
 * Deno grants reads of kernel files such as /sys/kernel/btf/vmlinux only with every permission:
 * so the agent runs with all of them.
 *
 * With them goes the size of the agent's young generation: it lives in a customer's VM, and
 * V8's default (semi-spaces growing to 16 MB) let a flood of connections or a push of frames
 * raise its RSS by 42-70 MB, where 2 MB semi-spaces held it near 35 MB (`tools/flood.ts`).
 *
 * @module
 */

export const AGENT_PERMISSIONS: readonly string[] = [
  "--allow-all",
  "--v8-flags=--max-semi-space-size=2",
];
