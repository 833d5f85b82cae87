/**
 * Real cgroups for the hold's tests and benchmark: which freezers this machine has (a cgroup v2
 * hierarchy, a v1 `freezer` hierarchy), throwaway cgroups in them, and processes started inside
 * one. Everything made is removed on dispose: the processes killed (thawed first), the cgroup
 * removed.
 *
 * @module
 */

/** A hierarchy that can freeze: where it is mounted, and which freezer it has. */
export interface FreezerHierarchy {
  version: 1 | 2;
  mount: string;
}

/** The freezing hierarchies mounted here (v2 first), from /proc/self/mountinfo. */
export function freezerHierarchies(): FreezerHierarchy[] {
  let text = "";
  try {
    text = Deno.readTextFileSync("/proc/self/mountinfo");
  } catch {
    return [];
  }
  const found: FreezerHierarchy[] = [];
  for (const line of text.split("\n")) {
    const fields = line.split(" ");
    const dash = fields.indexOf("-", 6);
    if (dash < 0 || dash + 3 >= fields.length) continue;
    const [fstype, , options] = fields.slice(dash + 1);
    const mount = fields[4];
    if (fstype === "cgroup2") found.push({ version: 2, mount });
    if (fstype === "cgroup" && options.split(",").includes("freezer")) {
      found.push({ version: 1, mount });
    }
  }
  return found.sort((a, b) => b.version - a.version);
}

/** Why a throwaway cgroup cannot be made in `hierarchy`, or null when it can (tried once). */
export async function cannotMakeCgroup(hierarchy: FreezerHierarchy): Promise<string | null> {
  if (Deno.uid() !== 0) return "needs root to make cgroups";
  try {
    await using cgroup = await TestCgroup.create(hierarchy, "probe");
    const file = hierarchy.version === 2 ? "cgroup.freeze" : "freezer.state";
    await Deno.stat(`${cgroup.dir}/${file}`);
    return null;
  } catch (error) {
    return `cannot make a cgroup under ${hierarchy.mount}: ${(error as Error).message}`;
  }
}

let made = 0;

/** A cgroup made for one test or run, removed (with its processes killed) on dispose. */
export class TestCgroup implements AsyncDisposable {
  readonly #children: Deno.ChildProcess[] = [];
  private constructor(readonly hierarchy: FreezerHierarchy, readonly dir: string) {}

  static async create(hierarchy: FreezerHierarchy, name: string): Promise<TestCgroup> {
    const dir = `${hierarchy.mount}/ebpfmon-${name}-${Deno.pid}-${made++}`;
    await Deno.mkdir(dir);
    return new TestCgroup(hierarchy, dir);
  }

  /** Its path within its hierarchy, as /proc/PID/cgroup names it. */
  get path(): string {
    return this.dir.slice(this.hierarchy.mount.length);
  }

  /** Moves a process in. */
  async add(pid: number, dir = this.dir): Promise<void> {
    await Deno.writeTextFile(`${dir}/cgroup.procs`, String(pid));
  }

  /** The processes in it (and in its children). */
  async pids(dir = this.dir): Promise<number[]> {
    const own = (await Deno.readTextFile(`${dir}/cgroup.procs`)).split("\n").filter(Boolean);
    const below: number[] = [];
    for await (const entry of Deno.readDir(dir)) {
      if (entry.isDirectory) below.push(...await this.pids(`${dir}/${entry.name}`));
    }
    return [...own.map(Number), ...below];
  }

  /** Whether the kernel reports it frozen (v2: `frozen 1`; v1: FROZEN). */
  async frozen(): Promise<boolean> {
    if (this.hierarchy.version === 2) {
      return /^frozen 1$/m.test(await Deno.readTextFile(`${this.dir}/cgroup.events`));
    }
    return (await Deno.readTextFile(`${this.dir}/freezer.state`)).trim() === "FROZEN";
  }

  async thaw(): Promise<void> {
    const [file, value] = this.hierarchy.version === 2
      ? ["cgroup.freeze", "0"]
      : ["freezer.state", "THAWED"];
    await Deno.writeTextFile(`${this.dir}/${file}`, value).catch(() => {});
  }

  /** Makes a child cgroup (removed with this one). */
  async child(name: string): Promise<string> {
    const dir = `${this.dir}/${name}`;
    await Deno.mkdir(dir);
    return dir;
  }

  /**
   * Starts `sh -c SCRIPT` inside the cgroup `dir` (its own by default) from its first
   * instruction: the shell moves itself in before it runs the script.
   */
  spawn(script: string, dir = this.dir, options: Deno.CommandOptions = {}): Deno.ChildProcess {
    const child = new Deno.Command("sh", {
      args: ["-c", `echo $$ > '${dir}/cgroup.procs' && ${script}`],
      stdin: "null",
      stdout: "null",
      stderr: "null",
      ...options,
    }).spawn();
    this.#children.push(child);
    return child;
  }

  /** Thaws it, kills every process in it and waits until it is empty, then removes it. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.thaw();
    for (let i = 0; i < 500; i++) {
      const pids = await this.pids().catch(() => []);
      if (!pids.length) break;
      for (const pid of pids) {
        try {
          Deno.kill(pid, "SIGKILL");
        } catch {
          // gone already
        }
      }
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    for (const child of this.#children) await child.status;
    await removeTree(this.dir);
  }
}

async function removeTree(dir: string): Promise<void> {
  for await (const entry of Deno.readDir(dir)) {
    if (entry.isDirectory) await removeTree(`${dir}/${entry.name}`);
  }
  for (let i = 0;; i++) {
    try {
      await Deno.remove(dir);
      return;
    } catch (error) {
      // An exiting process may keep it busy for a moment.
      if (i === 100) throw error;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }
}
