/**
 * Tests that need the real kernel path (BPF, uprobes) run only where the kernel allows it.
 * Elsewhere they are skipped with the reason printed, unless `EBPFMON_REQUIRE_PRIVILEGED=1`
 * (as CI sets it), which turns each such skip into a failure: a green CI means the kernel
 * path really ran.
 *
 * @module
 */

const CAP_SYS_ADMIN = 21;
const CAP_PERFMON = 38;
const CAP_BPF = 39;

/** Set in CI: a privileged test that cannot run fails instead of being skipped. */
export const REQUIRE_PRIVILEGED = Deno.env.get("EBPFMON_REQUIRE_PRIVILEGED") === "1";

function exists(path: string | URL): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

function capabilities(): bigint {
  const status = Deno.readTextFileSync("/proc/self/status");
  const match = /^CapEff:\s*([0-9a-f]+)$/m.exec(status);
  return match ? BigInt("0x" + match[1]) : 0n;
}

function has(caps: bigint, cap: number): boolean {
  return (caps & (1n << BigInt(cap))) !== 0n;
}

let cached: string | null | undefined;

/** Why the kernel path cannot run here, or null when it can. */
export function missingPrivilege(): string | null {
  if (cached !== undefined) return cached;
  const caps = capabilities();
  const bpf = has(caps, CAP_SYS_ADMIN) || (has(caps, CAP_BPF) && has(caps, CAP_PERFMON));
  cached = !bpf
    ? "needs CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN): run as root"
    : !exists("/sys/kernel/btf/vmlinux")
    ? "the kernel has no BTF at /sys/kernel/btf/vmlinux"
    : !exists("/sys/bus/event_source/devices/uprobe/type")
    ? "the kernel has no uprobe PMU (CONFIG_UPROBE_EVENTS)"
    : !exists(new URL("../../bpf/out/walk.bpf.o", import.meta.url))
    ? "bpf/out/walk.bpf.o is not built (deno task build:bpf)"
    : null;
  return cached;
}

/**
 * Registers a test of the real kernel path: skipped with its reason where the kernel does not
 * allow BPF, failed instead when {@linkcode REQUIRE_PRIVILEGED} is set.
 */
export function privilegedTest(
  name: string,
  fn: (t: Deno.TestContext) => void | Promise<void>,
  options: Omit<Deno.TestDefinition, "name" | "fn" | "ignore"> = {},
): void {
  requiringTest(name, missingPrivilege(), fn, options);
}

/**
 * Registers a test that can run only where `reason` is null: elsewhere it is skipped with the
 * reason printed, or failed with it when {@linkcode REQUIRE_PRIVILEGED} is set.
 */
export function requiringTest(
  name: string,
  reason: string | null,
  fn: (t: Deno.TestContext) => void | Promise<void>,
  options: Omit<Deno.TestDefinition, "name" | "fn" | "ignore"> = {},
): void {
  if (reason === null) {
    Deno.test({ ...options, name, fn });
  } else if (REQUIRE_PRIVILEGED) {
    Deno.test({
      ...options,
      name,
      fn() {
        throw new Error(`Cannot run a privileged test here: ${reason}`);
      },
    });
  } else {
    console.error(`skipping "${name}": ${reason}`);
    Deno.test({ ...options, name, ignore: true, fn });
  }
}
