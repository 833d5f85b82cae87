/**
 * Names are data, not terminal control: real processes name themselves (and files) with a
 * newline, an escape sequence, a bidi override, a backslash and bytes that are not UTF-8, and the
 * real `ps` and `lsof` CLIs, against a real agent, print one row for each, nothing a terminal acts
 * on, and JSON with their exact bytes.
 */

import { assert, assertEquals, privilegedTest, runIds } from "./support/mod.ts";
import { spawnAgent } from "../agent/mod.ts";

const utf8 = (text: string) => new TextEncoder().encode(text);
const hexOf = (bytes: Uint8Array) =>
  Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");

interface Case {
  /** The bytes the process writes to its comm (the kernel keeps 15 of them). */
  set: Uint8Array;
  /** Its COMM cell in the table. */
  shown: string;
  /** `comm` in the JSON. */
  json: string;
  /** Whether the JSON carries `commHex` beside it. */
  hex: boolean;
}

const CASES: Case[] = [
  { set: utf8("héllo"), shown: "héllo", json: "héllo", hex: false },
  {
    set: utf8("a\nFAKE 1 0 0 root"),
    shown: "a\\nFAKE 1 0 0 ro",
    json: "a\nFAKE 1 0 0 ro",
    hex: true,
  },
  { set: utf8("\x1b[31mred"), shown: "\\x1b[31mred", json: "\x1b[31mred", hex: true },
  {
    set: new Uint8Array([0x62, 0x61, 0x64, 0xff, 0xfe]),
    shown: "bad\\xff\\xfe",
    json: "bad\\xff\\xfe",
    hex: true,
  },
  { set: utf8("x\u202eevil"), shown: "x\\u202eevil", json: "x\u202eevil", hex: true },
  { set: utf8("a\\x1b"), shown: "a\\\\x1b", json: "a\\\\x1b", hex: true },
  // The kernel cuts the seventh "é" after its first byte.
  { set: utf8("abééééééé"), shown: "abéééééé\\xc3", json: "abéééééé\\xc3", hex: true },
];

/** `bytes` as octal escapes, for the shell's printf. */
const octal = (bytes: Uint8Array) =>
  Array.from(bytes, (b) => `\\${b.toString(8).padStart(3, "0")}`).join("");

/** Runs `script` in a shell that prints "ready" when done and then waits for its stdin to close. */
async function readyShell(script: string, cwd?: string): Promise<Deno.ChildProcess> {
  const child = new Deno.Command("/bin/sh", {
    args: ["-c", `${script} && echo ready && read _`],
    cwd,
    stdin: "piped",
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const reader = child.stdout.getReader();
  const { value } = await reader.read();
  reader.releaseLock();
  await child.stdout.cancel();
  if (new TextDecoder().decode(value) !== "ready\n") {
    await child.stdin.close();
    await child.status;
    throw new Error(`Cannot start a test shell: ${script}`);
  }
  return child;
}

/** A shell that sets its own comm (only a process itself may write it). */
function namedProcess(name: Uint8Array): Promise<Deno.ChildProcess> {
  return readyShell(`printf '${octal(name)}' > /proc/$$/comm`);
}

/** The comm bytes /proc holds for `pid` (without the newline /proc adds). */
function procComm(pid: number): Uint8Array {
  const bytes = Deno.readFileSync(`/proc/${pid}/comm`);
  return bytes.subarray(0, bytes.length - 1);
}

/** Runs `ebpfmon-ids COMMAND ARGS` against the agent; its stdout's bytes. */
async function ids(command: string[], agent: string, state: string): Promise<Uint8Array> {
  const { code, stderr, stdoutBytes } = await runIds([
    ...command,
    "--agent",
    agent,
    "--state",
    state,
  ]);
  assertEquals(code, 0, stderr);
  return stdoutBytes;
}

/**
 * The rows of a table the CLI printed: the lines between its header and its stats line, each
 * checked to start as `pattern` does (a forged row would not), and where the last column starts.
 */
function tableRows(stdout: Uint8Array, last: string, pattern: RegExp) {
  assertEquals(stdout.indexOf(0x1b), -1, "no ESC byte reaches the terminal");
  const lines = new TextDecoder("utf-8", { fatal: true }).decode(stdout).trimEnd().split("\n");
  const header = lines[0];
  assert(header.endsWith(last), header);
  assert(lines.at(-1)!.startsWith("mode="), lines.at(-1));
  const rows = lines.slice(1, -1);
  assertEquals(rows.filter((row) => !pattern.test(row)), [], "every line is a row");
  return { rows, column: header.indexOf(last) };
}

privilegedTest(
  "ps prints hostile process names as one escaped row each, and JSON keeps their bytes",
  async () => {
    const state = await Deno.makeTempDir({ prefix: "ebpfmon-names-" });
    const children: Deno.ChildProcess[] = [];
    try {
      for (const c of CASES) children.push(await namedProcess(c.set));
      const truth = children.map((child) => procComm(child.pid));
      CASES.forEach((c, i) => {
        assertEquals(hexOf(truth[i]), hexOf(c.set.subarray(0, 15)), "the kernel keeps 15 bytes");
      });
      await using agent = await spawnAgent({ stateDir: state });

      const table = await ids(["ps"], agent.address, state);
      const { rows, column } = tableRows(table, "COMM", /^ *\d+ +-?\d+ +-?\d+ +-?\d+ +-?\d+ +\S /);
      CASES.forEach((c, i) => {
        const mine = rows.filter((row) => row.trimStart().startsWith(`${children[i].pid} `));
        assertEquals(mine.length, 1, `one row for ${JSON.stringify(c.shown)}`);
        assertEquals(mine[0].slice(column), c.shown);
      });

      const json = await ids(["ps", "--json"], agent.address, state);
      assertEquals(json.indexOf(0x1b), -1, "no ESC byte in the JSON either");
      const { processes } = JSON.parse(new TextDecoder().decode(json)) as {
        processes: { pid: number; comm: string; commHex?: string }[];
      };
      CASES.forEach((c, i) => {
        const found = processes.filter((p) => p.pid === children[i].pid);
        assertEquals(found.length, 1, `${JSON.stringify(c.json)} listed once`);
        assertEquals(found[0].comm, c.json);
        assertEquals(found[0].commHex, c.hex ? hexOf(truth[i]) : undefined);
        if (!c.hex) assertEquals(hexOf(utf8(found[0].comm)), hexOf(truth[i]));
      });
    } finally {
      for (const child of children) {
        await child.stdin.close();
        await child.status;
      }
      await Deno.remove(state, { recursive: true });
    }
  },
);

/** File names: the bytes the shell creates, as lsof shows them and as its JSON holds them. */
const FILES: Case[] = [
  { set: utf8("héllo"), shown: "héllo", json: "héllo", hex: false },
  {
    set: utf8("a\nFAKE 3 file 1 shadow"),
    shown: "a\\nFAKE 3 file 1 shadow",
    json: "a\nFAKE 3 file 1 shadow",
    hex: true,
  },
  { set: utf8("\x1b[31mred"), shown: "\\x1b[31mred", json: "\x1b[31mred", hex: true },
  {
    set: new Uint8Array([0x62, 0x61, 0x64, 0xff, 0xfe]),
    shown: "bad\\xff\\xfe",
    json: "bad\\xff\\xfe",
    hex: true,
  },
  { set: utf8("x\u202eevil"), shown: "x\\u202eevil", json: "x\u202eevil", hex: true },
  { set: utf8("a\\x1b"), shown: "a\\\\x1b", json: "a\\\\x1b", hex: true },
];

privilegedTest(
  "lsof prints hostile file names as one escaped row each, and JSON keeps their bytes",
  async () => {
    const dir = Deno.realPathSync(await Deno.makeTempDir({ prefix: "ebpfmon-names-files-" }));
    const state = await Deno.makeTempDir({ prefix: "ebpfmon-names-" });
    // A shell in `dir` that creates each file and holds it open as fd 3, 4, ...
    const script = FILES.map((f, i) => {
      const name = `"$(printf '${octal(f.set)}')"`;
      return `: > ${name} && exec ${3 + i}< ${name}`;
    }).join(" && ");
    let child: Deno.ChildProcess | undefined;
    try {
      child = await readyShell(script, dir);
      const pid = String(child.pid);
      await using agent = await spawnAgent({ stateDir: state });

      const table = await ids(["lsof", pid], agent.address, state);
      const { rows, column } = tableRows(table, "PATH", /^ *\d+ +\S+ +-?\d+ /);
      FILES.forEach((f, i) => {
        const mine = rows.filter((row) => row.trimStart().startsWith(`${3 + i} `));
        assertEquals(mine.length, 1, `one row for ${JSON.stringify(f.shown)}`);
        assertEquals(mine[0].slice(column), `${dir}/${f.shown}`);
      });

      const json = await ids(["lsof", pid, "--json"], agent.address, state);
      assertEquals(json.indexOf(0x1b), -1, "no ESC byte in the JSON either");
      const { files } = JSON.parse(new TextDecoder().decode(json)) as {
        files: { fd: number; path: string; pathHex?: string }[];
      };
      FILES.forEach((f, i) => {
        const found = files.filter((file) => file.fd === 3 + i);
        assertEquals(found.length, 1, `fd ${3 + i} listed once`);
        assertEquals(found[0].path, `${dir}/${f.json}`);
        const bytes = new Uint8Array([...utf8(`${dir}/`), ...f.set]);
        assertEquals(found[0].pathHex, f.hex ? hexOf(bytes) : undefined);
      });
    } finally {
      await child?.stdin.close();
      await child?.status;
      await Deno.remove(dir, { recursive: true });
      await Deno.remove(state, { recursive: true });
    }
  },
);
