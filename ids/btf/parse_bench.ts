import { parseBtf } from "./mod.ts";

const bytes = await Deno.readFile("/sys/kernel/btf/vmlinux");

Deno.bench("parseBtf() of this kernel's /sys/kernel/btf/vmlinux", () => {
  parseBtf(bytes);
});

Deno.bench("parseBtf() then the first Btf.field(), which builds the name index", () => {
  parseBtf(bytes).field("task_struct", "tasks.next");
});
