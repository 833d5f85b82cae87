import { assert, assertEquals, assertThrows } from "../../tests/support/mod.ts";
import { BtfBuilder, parseBtf } from "../btf/mod.ts";
import { LayoutError } from "../kernel/mod.ts";
import { resolveKernelTypes } from "./kernel_types.ts";
import { checkPlan } from "../kernel/testing/mod.ts";
import { AddressSpace, CachedMemory } from "../memory/mod.ts";
import { fileType, listFiles, planFiles, resolveFileTypes } from "./files.ts";
import { planTasks } from "./processes.ts";
import { SyntheticFs, SyntheticKernel } from "./testing/mod.ts";

const space = AddressSpace.FOUR_LEVEL;

// Offsets come from this machine's real kernel BTF; the memory image is synthetic.
const btf = parseBtf(Deno.readFileSync("/sys/kernel/btf/vmlinux"));
const core = resolveKernelTypes(btf);
const types = resolveFileTypes(btf);

const LONG = "a-directory-name-too-long-to-live-inside-its-dentry";

/**
 * Task 1 (bash) has: 0 a regular file in a nested directory on a child mount, 1 a socket,
 * 2 a pipe, 3 an eventfd, 5 a directory. Task 2 (cat) has one file.
 */
function image() {
  const kernel = new SyntheticKernel(core, [
    { pid: 1, comm: "bash" },
    { pid: 2, comm: "cat" },
  ]);
  const fs = new SyntheticFs(kernel, types, btf);
  const root = fs.mount();
  const home = fs.dentry("home", root.root);
  const user = fs.dentry("user", home);
  const data = fs.path(user, `${LONG}/data`);
  const disk = fs.mount(root, data);
  const report = fs.path(disk.root, "projects/report.txt");
  const sockfs = fs.mount();
  const pipefs = fs.mount();
  const anonfs = fs.mount();
  const dentries = { home, user, data, report };
  const files = {
    report: fs.file(fs.inode(0o100644, 1201), report, disk.mount),
    socket: fs.file(fs.inode(0o140777, 4242), fs.dentry("", null), sockfs.mount),
    pipe: fs.file(fs.inode(0o010600, 777, 0x50495045), fs.dentry("", null), pipefs.mount),
    eventfd: fs.file(fs.inode(0o600, 9), fs.dentry("[eventfd]", null), anonfs.mount),
    home: fs.file(fs.inode(0o040755, 2), home, root.mount),
  };
  const fdt = fs.table(kernel.tasks[0], [
    files.report,
    files.socket,
    files.pipe,
    files.eventfd,
    null,
    files.home,
  ]);
  fs.table(kernel.tasks[1], [files.report]);
  return { kernel, fs, root, disk, dentries, files, fdt };
}

const EXPECTED = [
  [0, "file", 1201, `/home/user/${LONG}/data/projects/report.txt`, true],
  [1, "socket", 4242, "socket:[4242]", true],
  [2, "pipe", 777, "pipe:[777]", true],
  [3, "anon", 9, "anon_inode:[eventfd]", true],
  [5, "dir", 2, "/home", true],
];

const rows = (list: Awaited<ReturnType<typeof listFiles>>) =>
  list.files.map((f) => [f.fd, f.type, f.inode, f.path, f.pathComplete]);

Deno.test("listFiles() rebuilds a task's files, paths across mounts and pseudo-file names", async () => {
  const { kernel, files } = image();
  const list = await listFiles(new CachedMemory(kernel.build()), core, types, kernel.tasks[0]);
  assertEquals(list.truncated, false);
  assertEquals(list.pid, 1);
  assertEquals(rows(list), EXPECTED);
  assertEquals(list.files[0].file, space.hex(files.report));
  assertEquals(list.files.filter((f) => f.error), []);
});

Deno.test("listFiles() gives a task without files an empty list", async () => {
  const kernel = new SyntheticKernel(core, [{ pid: 7, comm: "exiting" }]);
  const list = await listFiles(new CachedMemory(kernel.build()), core, types, kernel.tasks[0]);
  assertEquals(list, {
    task: space.hex(kernel.tasks[0]),
    pid: 7,
    files: [],
    truncated: false,
    reason: undefined,
  });
});

Deno.test("listFiles() reports a d_parent chain that loops as an incomplete path", async () => {
  const { kernel, dentries } = image();
  kernel.mutate(dentries.home, { parent: dentries.user });
  const list = await listFiles(new CachedMemory(kernel.build()), core, types, kernel.tasks[0]);
  const report = list.files[0];
  assertEquals(report.pathComplete, false);
  assert(report.error?.includes("loops"), report.error);
  assertEquals(rows(list).slice(1, 4), EXPECTED.slice(1, 4));
});

Deno.test("listFiles() bounds the path depth", async () => {
  const { kernel } = image();
  const mem = new CachedMemory(kernel.build());
  const list = await listFiles(mem, core, types, kernel.tasks[0], { maxPathDepth: 3 });
  assertEquals(list.files[0].pathComplete, false);
  assertEquals(list.files[0].path, "/projects/report.txt");
  assert(list.files[0].error?.includes("more than 3 steps"), list.files[0].error);
});

Deno.test("listFiles() bounds the steps of all paths of a list", async () => {
  const { kernel } = image();
  const mem = new CachedMemory(kernel.build());
  const list = await listFiles(mem, core, types, kernel.tasks[0], { maxPathSteps: 9 });
  assertEquals(rows(list).slice(0, 4), EXPECTED.slice(0, 4));
  assertEquals(list.files[4].pathComplete, false);
  assert(list.files[4].error?.includes("more than 9 steps"), list.files[4].error);
});

Deno.test("listFiles() refuses a name longer than allowed", async () => {
  const { kernel, dentries } = image();
  kernel.mutate(dentries.user, { nameLen: 300 });
  const list = await listFiles(new CachedMemory(kernel.build()), core, types, kernel.tasks[0]);
  assertEquals(list.files[0].pathComplete, false);
  assert(list.files[0].error?.includes("300 bytes, more than 255"), list.files[0].error);
  assertEquals(list.files[0].path, `/${LONG}/data/projects/report.txt`);
});

Deno.test("listFiles() reports a mount chain that loops as an incomplete path", async () => {
  const { kernel, root, disk } = image();
  kernel.mutate(root.mount, { parent: disk.mount, mountpoint: disk.root });
  const list = await listFiles(new CachedMemory(kernel.build()), core, types, kernel.tasks[0]);
  assertEquals(list.files[0].pathComplete, false);
  assert(list.files[0].error?.includes("loops"), list.files[0].error);
});

Deno.test("listFiles() lists a file with a bad inode or missing from memory with an error", async () => {
  const { kernel, files } = image();
  kernel.mutate(files.pipe, { inode: { raw: 0x7fff_0000_1000n } });
  kernel.remove(files.eventfd);
  const list = await listFiles(new CachedMemory(kernel.build()), core, types, kernel.tasks[0]);
  assertEquals(list.truncated, false);
  assert(list.files[2].error?.includes("0x7fff00001000"), list.files[2].error);
  assert(list.files[3].error?.includes("Cannot read"), list.files[3].error);
  assertEquals(rows(list)[4], EXPECTED[4]);
});

Deno.test("listFiles() bounds a huge max_fds and reports a broken fd array", async () => {
  const { kernel, fdt } = image();
  kernel.mutate(fdt, { maxFds: 1 << 30 });
  const mem = new CachedMemory(kernel.build());
  const bounded = await listFiles(mem, core, types, kernel.tasks[0], { maxFds: 64 });
  assert(bounded.truncated);
  assert(bounded.reason!.includes("max_fds 1073741824 is more than 64"), bounded.reason);
  assertEquals(rows(bounded), EXPECTED);
  const unbounded = await listFiles(mem, core, types, kernel.tasks[0]);
  assert(unbounded.truncated);
  assert(unbounded.reason!.includes("open_fds of fdtable"), unbounded.reason);

  const broken = image();
  broken.kernel.mutate(broken.fdt, { fd: { raw: 0xdead_0000_0000n } });
  const list = await listFiles(
    new CachedMemory(broken.kernel.build()),
    core,
    types,
    broken.kernel.tasks[0],
  );
  assert(list.truncated);
  assert(list.reason!.includes("0xdead00000000"), list.reason);
  assertEquals(list.files, []);
});

Deno.test("fileType() reads the type bits of i_mode", () => {
  assertEquals(
    [0o100644, 0o040755, 0o140777, 0o010600, 0o600, 0o020666, 0o060660, 0o120777, 0o170000].map(
      fileType,
    ),
    ["file", "dir", "socket", "pipe", "anon", "char", "block", "link", "other"],
  );
});

Deno.test("resolveFileTypes() names the struct a kernel lacks", () => {
  const b = new BtfBuilder();
  b.addStruct("files_struct", { size: 8, members: [] });
  assertThrows(() => resolveFileTypes(parseBtf(b.build())), LayoutError, "fdt");
});

Deno.test("planFiles() covers listFiles() in both modes, for every task or one pid", async () => {
  const { kernel } = image();
  const image_ = kernel.build();
  for (const task of kernel.tasks) {
    const expected = await listFiles(new CachedMemory(image_), core, types, task);
    const all = await checkPlan(
      image_,
      (b) => planFiles(b, types, planTasks(b, core, kernel.initTask)),
      (mem) => listFiles(mem, core, types, task),
    );
    const one = await checkPlan(
      image_,
      (b) => planFiles(b, types, planTasks(b, core, kernel.initTask), { pid: 1 }),
      (mem) => listFiles(mem, core, types, task),
    );
    for (
      const check of [
        all.whole,
        all.selective,
        ...(task === kernel.tasks[0] ? [one.whole, one.selective] : []),
      ]
    ) {
      assertEquals(check.misses, []);
      assertEquals(check.result, expected);
    }
    if (task === kernel.tasks[1]) assert(one.selective.misses.length > 0);
    assert(all.selective.bytes * 2 < all.whole.bytes);
    assert(one.selective.bytes < all.selective.bytes);
  }
});

Deno.test("listFiles() says an open file whose name was unlinked is (deleted), as readlink does", async () => {
  const { kernel, dentries } = image();
  // Unhashed: d_hash.pprev NULL, as d_delete() leaves a dentry still open.
  kernel.mutate(dentries.report, { hashed: null });
  const list = await listFiles(new CachedMemory(kernel.build()), core, types, kernel.tasks[0]);
  assertEquals(list.files[0].path, `${EXPECTED[0][3]} (deleted)`);
  assertEquals(list.files[0].pathComplete, true);
  // Its directory unlinked instead: only the file's own dentry counts, as in d_path().
  const { kernel: k2, dentries: d2 } = image();
  k2.mutate(d2.data, { hashed: null });
  const other = await listFiles(new CachedMemory(k2.build()), core, types, k2.tasks[0]);
  assertEquals(other.files[0].path, EXPECTED[0][3]);
});
