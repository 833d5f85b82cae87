/**
 * A cgroup the agent may hold, as a directory of the cgroup filesystem: whether one qualifies
 * ({@linkcode resolveHoldCgroup}, the first rule of `hold.ts`), whether it holds the agent now,
 * and the control files that freeze and thaw it (v2: `cgroup.freeze` and `cgroup.events`; v1:
 * the freezer's `freezer.state`). The difference between the two versions stays here; the
 * holder (`hold.ts`) decides when to freeze and for how long.
 *
 * @module
 */

/** One cgroup the agent may hold, as checked at start. */
export interface HoldCgroup {
  /** Its directory (symbolic links resolved). */
  dir: string;
  version: 1 | 2;
  /** Its path within its hierarchy, as `/proc/PID/cgroup` writes it. */
  path: string;
}

/** What the checks read of the system (the files themselves unless a test gives others). */
export interface CgroupFacts {
  /** `/proc/self/mountinfo`. */
  mountinfo: string;
  /** `/proc/self/cgroup`. */
  selfCgroup: () => string;
  pid: number;
}

/** The facts of this process, read from `/proc/self`. */
export function systemFacts(): CgroupFacts {
  return {
    mountinfo: Deno.readTextFileSync("/proc/self/mountinfo"),
    selfCgroup: () => Deno.readTextFileSync("/proc/self/cgroup"),
    pid: Deno.pid,
  };
}

interface Mount {
  root: string;
  point: string;
  fstype: string;
  superOptions: string[];
}

/** `\040`-style escapes of mountinfo's paths. */
function unescape(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, octal) => String.fromCharCode(parseInt(octal, 8)));
}

function parseMountinfo(text: string): Mount[] {
  const mounts: Mount[] = [];
  for (const line of text.split("\n")) {
    const fields = line.split(" ");
    const dash = fields.indexOf("-", 6);
    if (dash < 0 || dash + 3 >= fields.length) continue;
    mounts.push({
      root: unescape(fields[3]),
      point: unescape(fields[4]),
      fstype: fields[dash + 1],
      superOptions: (fields[dash + 3] ?? "").split(","),
    });
  }
  return mounts;
}

function under(path: string, dir: string): boolean {
  return path === dir || path.startsWith(dir === "/" ? "/" : `${dir}/`);
}

/** The agent's own cgroup in the hierarchy of `version` (v1: the freezer's), if it has one. */
function ownCgroup(selfCgroup: string, version: 1 | 2): string | undefined {
  for (const line of selfCgroup.split("\n")) {
    const match = /^(\d+):([^:]*):(.*)$/.exec(line);
    if (!match) continue;
    if (
      version === 2 ? match[1] === "0" && match[2] === "" : match[2].split(",").includes("freezer")
    ) {
      return match[3];
    }
  }
  return undefined;
}

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

/** Why the agent, as `facts` sees it now, must not hold `cgroup`; undefined when it may. */
export function containsAgent(cgroup: HoldCgroup, facts: CgroupFacts): string | undefined {
  const own = ownCgroup(facts.selfCgroup(), cgroup.version);
  if (own === undefined) {
    return `the agent cannot tell its own cgroup of that hierarchy (no line of /proc/self/cgroup names it)`;
  }
  if (!under(own, cgroup.path)) return undefined;
  return `it holds the agent itself (pid ${facts.pid} is in cgroup "${own}"${
    own === cgroup.path ? "" : `, below it`
  }), and the agent must never freeze itself`;
}

/**
 * Checks that the agent may hold the cgroup directory `dir` (see the module's rules).
 * @throws {Error} naming the directory and the problem.
 */
export function resolveHoldCgroup(dir: string, facts: CgroupFacts = systemFacts()): HoldCgroup {
  const fail = (problem: string): never => {
    throw new Error(`Cannot hold cgroup "${dir}": ${problem}`);
  };
  if (!dir.startsWith("/")) fail("expected an absolute path");
  if (dir.split("/").some((part) => part === "." || part === "..")) {
    fail('the path must not have "." or ".." parts');
  }
  let real = dir;
  try {
    real = Deno.realPathSync(dir);
    if (!Deno.statSync(real).isDirectory) fail("it is not a directory");
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) fail("no such directory");
    if (!(error instanceof Deno.errors.PermissionDenied)) throw error;
    fail(`cannot read it: ${error.message}`);
  }
  // The mount it is on: the deepest mount point above it, the last one mounted there.
  let mount: Mount | undefined;
  for (const m of parseMountinfo(facts.mountinfo)) {
    if (under(real, m.point) && (!mount || m.point.length >= mount.point.length)) mount = m;
  }
  const version = mount?.fstype === "cgroup2"
    ? 2
    : mount?.fstype === "cgroup" && mount.superOptions.includes("freezer")
    ? 1
    : fail(
      `it is not in a cgroup v2 hierarchy or a v1 freezer hierarchy (it is on ${
        mount
          ? `a ${mount.fstype} mount at "${mount.point}"`
          : "no mount /proc/self/mountinfo lists"
      })`,
    );
  const rest = real.slice(mount!.point.length);
  const path = mount!.root === "/" ? rest || "/" : `${mount!.root}${rest}`;
  if (rest === "") {
    fail(`it is the root of its hierarchy ("${mount!.point}"), which holds everything`);
  }
  const control = version === 2 ? ["cgroup.freeze", "cgroup.events"] : ["freezer.state"];
  for (const file of control) if (!exists(`${real}/${file}`)) fail(`it has no ${file}`);
  const cgroup: HoldCgroup = { dir: real, version, path };
  const problem = containsAgent(cgroup, facts);
  if (problem) fail(problem);
  return cgroup;
}

/** Asks the kernel to freeze (or thaw) every task of `cgroup`; it may take a while to. */
export function freeze(cgroup: HoldCgroup, frozen: boolean): void {
  if (cgroup.version === 2) {
    Deno.writeTextFileSync(`${cgroup.dir}/cgroup.freeze`, frozen ? "1" : "0");
  } else {
    Deno.writeTextFileSync(`${cgroup.dir}/freezer.state`, frozen ? "FROZEN" : "THAWED");
  }
}

/** Whether every task of `cgroup` is frozen now. */
export function isFrozen(cgroup: HoldCgroup): boolean {
  if (cgroup.version === 2) {
    return /^frozen 1$/m.test(Deno.readTextFileSync(`${cgroup.dir}/cgroup.events`));
  }
  return Deno.readTextFileSync(`${cgroup.dir}/freezer.state`).trim() === "FROZEN";
}

/** Why `cgroup` is frozen (or freezing) by someone else already; undefined when it is not. */
export function frozenElsewhere(cgroup: HoldCgroup): string | undefined {
  if (cgroup.version === 2) {
    const asked = Deno.readTextFileSync(`${cgroup.dir}/cgroup.freeze`).trim();
    return asked === "0" ? undefined : "it is frozen already, by someone else: left as it is";
  }
  const state = Deno.readTextFileSync(`${cgroup.dir}/freezer.state`).trim();
  return state === "THAWED"
    ? undefined
    : `it is ${state} already, by someone else (or a frozen parent): left as it is`;
}
