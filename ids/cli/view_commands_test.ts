import { assertEquals } from "../../tests/support/mod.ts";
import { fakeModule, fakeProcess } from "../api/testing/mod.ts";
import { formatProcesses, formatThreads } from "./commands.ts";
import { formatFiles, formatModules, formatSockets } from "./view_commands.ts";
import { decodeName } from "../kernel/mod.ts";

const utf8 = (text: string) => new TextEncoder().encode(text);

/** Hostile names as the kernel holds them, decoded as the IDS decodes them. */
const NAMES = {
  accent: decodeName(utf8("héllo")),
  row: decodeName(utf8("a\nFAKE 1 0 0 ro")),
  escape: decodeName(utf8("\x1b[31mred")),
  invalid: decodeName(new Uint8Array([0x62, 0x61, 0x64, 0xff, 0xfe])),
  bidi: decodeName(utf8("x\u202eevil")),
  backslash: decodeName(utf8("a\\x1b")),
};

/** What the tables show of each: a literal table, not the code under test. */
const SHOWN = {
  accent: "héllo",
  row: "a\\nFAKE 1 0 0 ro",
  escape: "\\x1b[31mred",
  invalid: "bad\\xff\\xfe",
  bidi: "x\\u202eevil",
  backslash: "a\\\\x1b",
};

const keys = Object.keys(NAMES) as (keyof typeof NAMES)[];

/** What no line of a table may hold (the lines' own newlines split off). */
// deno-lint-ignore no-control-regex -- the point is that none is there
const CONTROL = /[\x00-\x1f\x7f-\x9f\u202e]/;

Deno.test("formatProcesses() prints one row per process, names escaped", () => {
  const table = formatProcesses(keys.map((k, i) => fakeProcess(100 + i, 1, 0, NAMES[k])));
  const lines = table.split("\n");
  assertEquals(lines.length, 1 + keys.length, "no forged row");
  assertEquals(lines.filter((line) => CONTROL.test(line)), []);
  keys.forEach((k, i) => {
    const cells = lines[1 + i].trim().split(/ {2,}/);
    assertEquals(cells[0], String(100 + i));
    assertEquals(cells.at(-1), SHOWN[k]);
  });
});

Deno.test("formatModules() prints one row per module, names escaped", () => {
  const lines = formatModules(keys.map((k) => fakeModule(NAMES[k]))).split("\n");
  assertEquals(lines.length, 1 + keys.length);
  keys.forEach((k, i) => assertEquals(lines[1 + i].split(/ {2,}/)[0], SHOWN[k]));
});

Deno.test("formatFiles() prints one row per file, paths and errors escaped", () => {
  const table = formatFiles(keys.map((k, i) => ({
    fd: i,
    type: "file" as const,
    inode: 10 + i,
    path: `/tmp/${NAMES[k]}`,
    pathComplete: true,
    file: "0xffff888100001000",
    ...(k === "row" ? { error: "Cannot read dentry \x1b[2J\n" } : {}),
  })));
  const lines = table.split("\n");
  assertEquals(lines.length, 1 + keys.length);
  assertEquals(lines.filter((line) => CONTROL.test(line)), []);
  keys.forEach((k, i) => {
    const path = lines[1 + i].split(/ {2,}/)[3];
    assertEquals(path, `/tmp/${SHOWN[k]}`);
  });
  assertEquals(
    lines[1 + keys.indexOf("row")].endsWith("(error: Cannot read dentry \\x1b[2J\\n)"),
    true,
  );
});

Deno.test("formatSockets() escapes a socket's error", () => {
  const table = formatSockets([{
    protocol: "tcp",
    family: "",
    state: "LISTEN",
    localAddress: "0.0.0.0",
    localPort: 22,
    remoteAddress: "0.0.0.0",
    remotePort: 0,
    inode: 1,
    sock: "0xffff888100001000",
    owners: [],
    error: "family \x1b[2J\n7",
  }]);
  assertEquals(table.split("\n").length, 2);
  assertEquals(table.endsWith("(error: family \\x1b[2J\\n7)"), true, table);
});

Deno.test("formatProcesses() and formatThreads() show namespaces, cgroups and threads, escaped", () => {
  const p = {
    ...fakeProcess(500, 1, 33, "nginx"),
    threads: 2,
    pidNs: 4026532300,
    nsPid: 1,
    netNs: 4026532301,
    cgroup: `/docker-${NAMES.row}.scope`,
    threadList: keys.map((k, i) => ({
      tid: 500 + i,
      tgid: 500,
      comm: NAMES[k],
      state: "S",
      task: "0xffff888000000500",
    })),
  };
  const lines = formatProcesses([p, fakeProcess(1, 0, 0, "init")]).split("\n");
  assertEquals(lines.length, 3, "no forged row");
  assertEquals(lines[0].split(/ {2,}/).slice(5), [
    "S",
    "THR",
    "PIDNS",
    "NSPID",
    "NETNS",
    "CGROUP",
    "COMM",
  ]);
  assertEquals(
    lines[1].trim().split(/ {2,}/).slice(6),
    ["2", "4026532300", "1", "4026532301", `/docker-${SHOWN.row}.scope`, "nginx"],
  );
  assertEquals(lines[2].trim().split(/ {2,}/).slice(6), ["-", "-", "-", "-", "-", "init"]);
  const threads = formatThreads([p]).split("\n");
  assertEquals(threads.length, 1 + keys.length);
  assertEquals(threads.filter((line) => CONTROL.test(line)), []);
  keys.forEach((k, i) => {
    assertEquals(threads[1 + i].trim().split(/ {2,}/), [
      "500",
      String(500 + i),
      "33",
      "S",
      SHOWN[k],
    ]);
  });
});
