/**
 * The permissions the agent runs with, under `deno run` and in the compiled `ebpfmon-agent`
 * alike. The agent loads libbpf through FFI, which already puts it beyond Deno's sandbox, and
 * Deno grants reads of kernel files such as /sys/kernel/btf/vmlinux only with every permission:
 * so the agent runs with all of them.
 *
 * @module
 */

export const AGENT_PERMISSIONS: readonly string[] = ["--allow-all"];
