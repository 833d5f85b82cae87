/**
 * The shapes the API writes, as zod schemas (what it reads, its parameters and queries, are in
 * `parameters.ts`): they document every route in the OpenAPI document. They mirror the
 * monitor's types; a type check at the bottom of this file fails when the two drift apart.
 *
 * @module
 */

import { z } from "@hono/zod-openapi";
import type { Module, OpenFile, Process, Socket } from "../linux/mod.ts";
import { type FilesAnswer, MODES, type ModulesAnswer, type SnapshotStats } from "../client/mod.ts";
import { VIEWS, type VmStats, type VmStatus } from "../service/mod.ts";

function bytesHex(field: string) {
  return z.string().optional().openapi({
    description: `The bytes of ${field} in hex, when its text does not show them plainly: it ` +
      "holds a byte that is not UTF-8 (shown as \\xNN), a backslash (shown as \\\\), a control " +
      "or an invisible character; absent otherwise",
  });
}

/** A thread of a process. */
export const ThreadSchema = z.object({
  tid: z.number().int().openapi({ description: "Its own pid, as /proc/PID/task/TID names it" }),
  tgid: z.number().int().openapi({ description: "Its process" }),
  comm: z.string().openapi({ description: "Its own name (prctl PR_SET_NAME)" }),
  commHex: bytesHex("comm"),
  state: z.string().openapi({ description: "One letter, as in ps" }),
  task: z.string().openapi({ description: "Address of its task_struct" }),
  error: z.string().optional().openapi({
    description: "It does not belong to its process's thread group as it should",
  }),
}).openapi("Thread");

/** A process as the guest kernel holds it. */
export const ProcessSchema = z.object({
  pid: z.number().int(),
  tgid: z.number().int(),
  ppid: z.number().int(),
  comm: z.string(),
  commHex: bytesHex("comm"),
  state: z.string().openapi({ description: "One letter, as in ps (R, S, D, T, t, X, Z, P, I)" }),
  uid: z.number().int(),
  euid: z.number().int(),
  suid: z.number().int(),
  fsuid: z.number().int(),
  gid: z.number().int(),
  egid: z.number().int(),
  sgid: z.number().int(),
  fsgid: z.number().int(),
  capEffective: z.string().optional().openapi({
    description: "Effective capabilities, 64-bit hex; absent when its credentials were not read",
  }),
  capPermitted: z.string().optional().openapi({ description: "Permitted capabilities, as above" }),
  capInheritable: z.string().optional().openapi({
    description: "Inheritable capabilities, as above",
  }),
  initCred: z.boolean().optional().openapi({
    description: "It runs with the kernel's initial credentials (its real_cred is init_task's); " +
      "absent when init_task's real_cred is not a kernel address",
  }),
  kthread: z.boolean(),
  task: z.string().openapi({ description: "Address of its task_struct" }),
  cred: z.string().openapi({ description: "Address of its objective credentials" }),
  startTime: z.number().optional().openapi({ description: "Nanoseconds from boot to its start" }),
  execId: z.number().int().optional().openapi({ description: "Its exec count (self_exec_id)" }),
  seenIn: z.array(z.enum(["tasks", "pid_idr", "children"])).optional().openapi({
    description: "The kernel views that hold it: the task list, the pid IDR, its parent's " +
      "children list. A process missing from one is hidden from it",
  }),
  threads: z.number().int().optional().openapi({
    description: "Threads in its thread group (signal->nr_threads, as /proc/PID/status Threads:)",
  }),
  threadList: z.array(ThreadSchema).optional().openapi({
    description: "Its threads, as /proc/PID/task lists them: only with threads=true",
  }),
  pidNs: z.number().int().optional().openapi({
    description: "Its pid namespace's inode number, as readlink /proc/PID/ns/pid shows pid:[N]",
  }),
  nsPid: z.number().int().optional().openapi({
    description: "Its pid in that namespace: the last value of NSpid in /proc/PID/status",
  }),
  netNs: z.number().int().optional().openapi({
    description: "Its network namespace's inode number (/proc/PID/ns/net); absent once exited",
  }),
  cgroup: z.string().optional().openapi({
    description: "Its cgroup v2 path, as the 0:: line of /proc/PID/cgroup; absent when the " +
      "guest has no cgroup v2 hierarchy mounted",
  }),
  cgroupHex: bytesHex("cgroup"),
  error: z.string().optional().openapi({
    description: "Some fields could not be read; they are then -1 or an empty string",
  }),
}).openapi("Process");

/** A loaded kernel module, as /proc/modules shows it. */
export const ModuleSchema = z.object({
  name: z.string(),
  nameHex: bytesHex("name"),
  module: z.string().openapi({ description: "Address of its struct module" }),
  base: z.string().openapi({ description: "Start of its text; empty when unread" }),
  size: z.number().int().openapi({
    description: "Bytes of all its memory, as /proc/modules' size; -1 when unread",
  }),
  state: z.string().openapi({
    description: "live, coming, going or unformed; unknown (with an error) for anything else",
  }),
  refcount: z.number().int().nullable().openapi({
    description: "References, as /proc/modules prints them; null without module unloading",
  }),
  taints: z.string().openapi({ description: "The raw taint mask, 64-bit hex" }),
  taintFlags: z.string().openapi({
    description: 'The taint letters /proc/modules shows, e.g. "OE"',
  }),
  usedBy: z.array(z.string()).optional().openapi({
    description: 'The modules using it, as /proc/modules\' "used by" column lists them; absent ' +
      "when the kernel does not record them (no module unloading) or they could not be read",
  }),
  permanent: z.literal(true).optional().openapi({
    description: "It cannot be unloaded (an init function and no exit function): " +
      "/proc/modules' [permanent]",
  }),
  error: z.string().optional().openapi({ description: "Some of its fields make no sense" }),
}).openapi("Module");

const modulesAnswer = {
  supported: z.boolean().openapi({
    description: "False when the guest kernel has no loadable modules or hides their list; " +
      "`modules` is then empty and `reason` says why",
  }),
  reason: z.string().optional(),
  modules: z.array(ModuleSchema),
};

/** A TCP or UDP socket of the guest's initial network namespace, as `ss -tuan` shows it. */
export const SocketSchema = z.object({
  protocol: z.enum(["tcp", "udp"]),
  family: z.string().openapi({ description: "inet or inet6; empty (with an error) otherwise" }),
  state: z.string().openapi({
    description: "TCP: ESTABLISHED, LISTEN, TIME_WAIT...; UDP: UNCONN or ESTAB",
  }),
  localAddress: z.string().openapi({ description: "Dotted IPv4 or compressed IPv6 text" }),
  localPort: z.number().int(),
  remoteAddress: z.string(),
  remotePort: z.number().int(),
  inode: z.number().int().openapi({
    description: "Its socket's inode number; 0 for TIME_WAIT, NEW_SYN_RECV and orphans",
  }),
  sock: z.string().openapi({ description: "Address of the sock" }),
  owners: z.array(z.object({ pid: z.number().int(), fd: z.number().int() })).openapi({
    description: "Processes holding it in their fd table, with the fd",
  }),
  netNs: z.number().int().optional().openapi({
    description: "Its network namespace's inode number (its own skc_net), as /proc/PID/ns/net " +
      "shows it",
  }),
  error: z.string().optional(),
}).openapi("Socket");

/** An open file descriptor of a process, as /proc/PID/fd shows it. */
export const OpenFileSchema = z.object({
  fd: z.number().int(),
  type: z.enum(["file", "dir", "socket", "pipe", "anon", "char", "block", "link", "other"]),
  inode: z.number().int().openapi({ description: "Its inode number; -1 when unread" }),
  path: z.string().openapi({
    description: "As readlink of /proc/PID/fd/FD (socket:[INODE], pipe:[INODE], " +
      "anon_inode:[eventfd]...); when incomplete, the part rebuilt from the file up",
  }),
  pathHex: bytesHex("path"),
  pathComplete: z.boolean(),
  file: z.string().openapi({ description: "Address of its struct file" }),
  error: z.string().optional().openapi({ description: "Some of it could not be read" }),
}).openapi("OpenFile");

const filesAnswer = {
  pid: z.number().int(),
  task: z.string().openapi({ description: "Address of its task_struct" }),
  files: z.array(OpenFileSchema),
};

const ModeSchema = z.enum(MODES).openapi("Mode");

const SnapshotStatsSchema = z.object({
  mode: ModeSchema,
  roundTrips: z.number().int(),
  bytes: z.number().int(),
  ms: z.number(),
  truncated: z.boolean(),
  reason: z.string().optional(),
  misses: z.number().int(),
  lookups: z.number().int(),
  prefetch: z.object({
    objects: z.number().int(),
    bytes: z.number().int(),
    guestMs: z.number(),
    agentMs: z.number(),
    stop: z.string(),
    pruned: z.number().int(),
    rejected: z.number().int(),
    delta: z.boolean().openapi({ description: "Asked as a delta against the previous answer" }),
    carried: z.number().int().openapi({
      description: "Records unchanged since, sent by reference",
    }),
    carriedBytes: z.number().int(),
  }).optional(),
  hold: z.object({
    state: z.enum(["held", "expired", "refused"]),
    capMs: z.number().int(),
    heldMs: z.number(),
    freezeMs: z.number(),
    error: z.string().optional(),
  }).optional().openapi({ description: "How the snapshot's hold of the workload went, if any" }),
}).openapi("SnapshotStats");

/** What a snapshot is, without its value. */
export const SnapshotInfoSchema = z.object({
  takenAt: z.number().int().openapi({ description: "Epoch milliseconds" }),
  mode: ModeSchema,
  stats: SnapshotStatsSchema,
  stale: z.boolean().openapi({
    description: "The agent could not be reached and this snapshot is older than asked for",
  }),
}).openapi("SnapshotInfo");

/** The body of `GET /v1/vms/{vm}/processes`. */
export const ProcessesSchema = z.object({
  vm: z.string(),
  snapshot: SnapshotInfoSchema,
  processes: z.array(ProcessSchema),
}).openapi("Processes");

/** The body of `GET /v1/vms/{vm}/processes/{pid}`. */
export const ProcessAnswerSchema = z.object({
  vm: z.string(),
  snapshot: SnapshotInfoSchema,
  process: ProcessSchema,
}).openapi("ProcessAnswer");

/** The body of `GET /v1/vms/{vm}/modules`. */
export const ModulesSchema = z.object({
  vm: z.string(),
  snapshot: SnapshotInfoSchema,
  ...modulesAnswer,
}).openapi("Modules");

/** The body of `GET /v1/vms/{vm}/sockets`. */
export const SocketsSchema = z.object({
  vm: z.string(),
  snapshot: SnapshotInfoSchema,
  sockets: z.array(SocketSchema),
}).openapi("Sockets");

/** The body of `GET /v1/vms/{vm}/processes/{pid}/files`. */
export const FilesSchema = z.object({
  vm: z.string(),
  snapshot: SnapshotInfoSchema,
  ...filesAnswer,
}).openapi("Files");

/** The body of `POST /v1/vms/{vm}/refresh`. */
export const RefreshSchema = z.object({
  vm: z.string(),
  snapshot: SnapshotInfoSchema,
  count: z.number().int().openapi({ description: "Number of processes in the new snapshot" }),
}).openapi("Refresh");

/** One in-guest program the agent loaded for the IDS. */
const LoadedProgramSchema = z.object({
  name: z.string(),
  section: z.string(),
  type: z.string().openapi({
    description: 'The kernel program type, as libbpf names it ("kprobe")',
  }),
  tag: z.string().openapi({
    description: "The kernel's tag of the loaded program (16 hex digits)",
  }),
  instructions: z.number().int(),
});

const VmEventSchema = z.object({
  at: z.number().int().openapi({ description: "Epoch milliseconds" }),
  message: z.string(),
  kind: z.enum(["connected", "migrated", "agent-restarted", "rebooted", "kernel-changed"])
    .optional().openapi({
      description: "What the event says about the guest's identity: its agent answered for the " +
        "first time, the same agent process of the same boot answered again after its connection " +
        "was lost (a live migration, or a broken connection), another agent process, another " +
        "boot, another kernel",
    }),
  gapMs: z.number().int().optional().openapi({
    description: "For migrated: from the last whole snapshot before the connection was lost to " +
      "the first after",
  }),
}).openapi("VmEvent");

const vmStatus = {
  name: z.string(),
  agent: z.string().openapi({
    description: "HOST:PORT of its agent: the one that answered last (the first configured before)",
  }),
  agents: z.array(z.string()).openapi({
    description: "Every address configured for its agent, in the order they are tried",
  }),
  state: z.enum(["connecting", "up", "down"]),
  kernel: z.object({
    release: z.string(),
    btfHash: z.string(),
    bootId: z.string(),
    programs: z.array(LoadedProgramSchema).openapi({
      description: "The in-guest programs the agent loaded for the IDS (LOAD), as the kernel " +
        "loaded them",
    }),
  }).optional(),
  refreshMs: z.number().int(),
  lastSnapshotAt: z.number().int().optional(),
  lastError: VmEventSchema.optional(),
  events: z.array(VmEventSchema),
};

/** One guest's status, with the age of its last snapshot at the time of the request. */
export const VmStatusSchema = z.object({
  ...vmStatus,
  lastSnapshotAgeMs: z.number().int().optional().openapi({
    description: "Milliseconds since lastSnapshotAt, when there is a snapshot",
  }),
}).openapi("VmStatus");

/** The body of `GET /v1/vms`. */
export const VmListSchema = z.object({ vms: z.array(VmStatusSchema) }).openapi("VmList");

const FetchRecordSchema = z.object({
  view: z.enum(VIEWS),
  at: z.number().int(),
  ms: z.number(),
  mode: ModeSchema,
  roundTrips: z.number().int(),
  bytes: z.number().int(),
  ok: z.boolean(),
  lateMs: z.number().int().optional().openapi({
    description: "For a refresh of the guest's own loop: milliseconds it started after it was " +
      "due (one refresh interval, or retry backoff, after the previous one ended)",
  }),
}).openapi("FetchRecord");

const vmStats = {
  fetches: z.number().int(),
  failures: z.number().int(),
  roundTrips: z.number().int(),
  bytes: z.number().int(),
  cacheHitRatio: z.number(),
  recent: z.array(FetchRecordSchema),
};

/** The body of `GET /v1/vms/{vm}/stats`: cumulative costs and latency percentiles. */
export const VmStatsSchema = z.object({
  ...vmStats,
  latencyMs: z.object({
    p50: z.number().nullable(),
    p90: z.number().nullable(),
    p99: z.number().nullable(),
  }).openapi({ description: "Percentiles of recent fetch times (null when there are none)" }),
}).openapi("VmStats");

/** Every error the API returns. */
export const ErrorSchema = z.object({
  error: z.object({
    code: z.string().openapi({ description: "Stable machine-readable code" }),
    message: z.string(),
    name: z.string().optional().openapi({ description: "The parameter of a bad_parameter" }),
    lastSnapshotAgeMs: z.number().int().optional().openapi({
      description: "Age of the last good snapshot of an agent_unreachable, when there is one",
    }),
  }),
}).openapi("Error");

/** The body of `GET /healthz`. */
export const HealthSchema = z.object({ status: z.literal("ok") }).openapi("Health");

/**
 * True when each type is assignable to the other and both have the same keys, so that an
 * optional field on one side only fails the check too.
 */
type Same<A, B> = [A, keyof A] extends [B, keyof B] ? [B, keyof B] extends [A, keyof A] ? true
  : false
  : false;
const _inSync: [
  Same<z.infer<typeof ProcessSchema>, Process>,
  Same<z.infer<typeof ModuleSchema>, Module>,
  Same<z.infer<z.ZodObject<typeof modulesAnswer>>, ModulesAnswer>,
  Same<z.infer<typeof SocketSchema>, Socket>,
  Same<z.infer<typeof OpenFileSchema>, OpenFile>,
  Same<z.infer<z.ZodObject<typeof filesAnswer>>, FilesAnswer>,
  Same<z.infer<typeof SnapshotStatsSchema>, SnapshotStats>,
  Same<z.infer<z.ZodObject<typeof vmStatus>>, VmStatus>,
  Same<z.infer<z.ZodObject<typeof vmStats>>, VmStats>,
] = [true, true, true, true, true, true, true, true, true];
