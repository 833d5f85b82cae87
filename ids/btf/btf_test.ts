import { assertEquals, assertThrows } from "../../tests/support/mod.ts";
import { BtfBuilder, BtfError, parseBtf } from "./mod.ts";
import { sampleKernel } from "./_test_utils.ts";

const { builder, ids } = sampleKernel();
const btf = parseBtf(builder.build());

Deno.test("Btf.find() returns the ids of every type with a name, filtered by kind", () => {
  assertEquals(btf.find("task_struct"), [ids.task]);
  const all = Array.from({ length: btf.typeCount + 1 }, (_, id) => id);
  const uints = btf.find("unsigned int");
  assertEquals(uints, all.filter((id) => btf.name(id) === "unsigned int"));
  assertEquals(uints.length, 3);
  assertEquals(btf.find("kuid_t", "TYPEDEF"), [ids.kuidT]);
  assertEquals(btf.find("kuid_t", "STRUCT"), []);
  assertEquals(btf.find("no_such_type"), []);
  assertEquals(btf.find(""), []);
});

Deno.test("Btf.resolve() skips typedefs and qualifiers but not pointers", () => {
  assertEquals(btf.resolve(ids.kuidT), ids.kuid);
  assertEquals(btf.resolve(ids.credPtr), ids.credPtr);
  assertEquals(btf.resolve(ids.task), ids.task);
  assertEquals(btf.resolve(0), 0);
});

Deno.test("Btf.sizeof() sizes ints, pointers, arrays, structs and typedef chains", () => {
  assertEquals(btf.sizeof(ids.char), 1);
  assertEquals(btf.sizeof(ids.credPtr), 8);
  assertEquals(btf.sizeof(ids.comm), 16);
  assertEquals(btf.sizeof(ids.kuidT), 4);
  assertEquals(btf.sizeof(ids.task), 96);
  assertThrows(() => btf.sizeof(0), BtfError, "Cannot compute the size of type 0: type 0 (VOID)");
});

Deno.test("Btf methods throw RangeError for a type id outside the BTF", () => {
  for (const id of [-1, 1.5, btf.typeCount + 1, NaN]) {
    assertThrows(() => btf.type(id), RangeError, "Cannot look up type");
    assertThrows(() => btf.sizeof(id), RangeError);
    assertThrows(() => btf.resolve(id), RangeError);
  }
});

Deno.test("Btf.struct() returns a struct's members and names the struct it cannot find", () => {
  const task = btf.struct("task_struct");
  assertEquals(task.kind, "STRUCT");
  assertEquals(task.size, 96);
  assertEquals(task.members[1], { name: "pid", typeId: ids.int, bitOffset: 32, bitfieldSize: 0 });
  assertEquals(task.members[2].name, "");
  assertThrows(() => btf.struct("kuid_t"), BtfError, 'Cannot find struct "kuid_t" in BTF');
});

Deno.test("Btf.field() locates top-level members", () => {
  assertEquals(btf.field("task_struct", "pid"), {
    offset: 4,
    size: 4,
    bitOffset: 32,
    bitSize: 0,
    typeId: ids.int,
  });
  assertEquals(btf.field("task_struct", "comm").size, 16);
  assertEquals(btf.field("task_struct", "real_cred").size, 8);
});

Deno.test("Btf.field() adds the offsets along a dotted path through embedded structs", () => {
  const tasks = btf.field("task_struct", "tasks");
  assertEquals(btf.field("task_struct", "tasks.next").offset, tasks.offset);
  assertEquals(btf.field("task_struct", "tasks.prev").offset, tasks.offset + 8);
  assertEquals(btf.field("cred", "uid.val"), {
    offset: 4,
    size: 4,
    bitOffset: 32,
    bitSize: 0,
    typeId: ids.uint,
  });
  assertEquals(btf.field("cred", "gid.val").offset, 8, "through a const typedef");
  assertEquals(btf.field("task_struct", "cred_copy.suid.val").offset, 64 + 12);
});

Deno.test("Btf.field() finds members of anonymous structs and unions as C does", () => {
  assertEquals(btf.field("task_struct", "raw").offset, 8);
  assertEquals(btf.field("task_struct", "flags").offset, 8);
  assertEquals(btf.field("task_struct", "ptrace").offset, 12);
});

Deno.test("Btf.field() reports bitfields in both BTF encodings", () => {
  assertEquals(btf.field("task_struct", "sched_reset_on_fork"), {
    offset: 56,
    size: 1,
    bitOffset: 448,
    bitSize: 1,
    typeId: ids.uint,
  });
  const migrated = btf.field("task_struct", "sched_migrated");
  assertEquals([migrated.bitOffset, migrated.bitSize, migrated.offset, migrated.size], [
    449,
    3,
    56,
    1,
  ]);
  const lru = btf.field("task_struct", "in_lru_fault");
  assertEquals([lru.bitOffset, lru.bitSize, lru.offset, lru.size], [485, 2, 60, 1]);
});

Deno.test("Btf.field() names the struct and path it cannot resolve", () => {
  assertThrows(
    () => btf.field("task_struct", "tasks.nxt"),
    BtfError,
    'Cannot find field "tasks.nxt" in struct "task_struct"',
  );
  assertThrows(() => btf.field("task_struct", ""), BtfError, 'Cannot find field ""');
  assertThrows(() => btf.field("task_struct", "pid."), BtfError, '"pid" is of kind INT');
  assertThrows(
    () => btf.field("task_struct", "real_cred.uid"),
    BtfError,
    'Cannot resolve field "real_cred.uid" in struct "task_struct": "real_cred" is of kind PTR',
  );
  assertThrows(() => btf.field("nothing", "x"), BtfError, 'Cannot find struct "nothing"');
});

Deno.test("Btf.type() describes every kind", () => {
  const b = new BtfBuilder();
  const int = b.addInt("int", 4, { signed: true });
  const proto = b.addFuncProto(int, [{ name: "a", typeId: int }, { name: "", typeId: 0 }]);
  const e = b.addEnum("e", { values: [["A", -1], ["B", 2]], signed: true });
  const e64 = b.addEnum64("e64", { values: [["BIG", 1n << 40n], ["NEG", -2n]], signed: true });
  const fwd = b.addFwd("u", { union: true });
  const restrict = b.addRestrict(int);
  const tag = b.addTypeTag("user", int);
  const func = b.addFunc("f", proto, { linkage: 1 });
  const v = b.addVar("v", int, { linkage: 1 });
  const sec = b.addDatasec(".data", { size: 4, vars: [{ typeId: v, offset: 0, size: 4 }] });
  const float = b.addFloat("double", 8);
  const decl = b.addDeclTag("kfunc", func, { componentIndex: 0 });
  const array = b.addArray(int, 3);
  const parsed = parseBtf(b.build());
  assertEquals(parsed.type(0), { id: 0, kind: "VOID", name: "" });
  assertEquals(parsed.type(int), {
    id: int,
    kind: "INT",
    name: "int",
    size: 4,
    bits: 32,
    bitOffset: 0,
    signed: true,
    char: false,
    bool: false,
  });
  assertEquals(parsed.type(proto), {
    id: proto,
    kind: "FUNC_PROTO",
    name: "",
    returnTypeId: int,
    params: [{ name: "a", typeId: int }, { name: "", typeId: 0 }],
  });
  assertEquals(parsed.type(e), {
    id: e,
    kind: "ENUM",
    name: "e",
    size: 4,
    signed: true,
    values: [{ name: "A", value: -1 }, { name: "B", value: 2 }],
  });
  assertEquals(parsed.type(e64), {
    id: e64,
    kind: "ENUM64",
    name: "e64",
    size: 8,
    signed: true,
    values: [{ name: "BIG", value: 1n << 40n }, { name: "NEG", value: -2n }],
  });
  assertEquals(parsed.type(fwd), { id: fwd, kind: "FWD", name: "u", union: true });
  assertEquals(parsed.type(restrict), { id: restrict, kind: "RESTRICT", name: "", typeId: int });
  assertEquals(parsed.type(tag), { id: tag, kind: "TYPE_TAG", name: "user", typeId: int });
  assertEquals(parsed.type(func), { id: func, kind: "FUNC", name: "f", typeId: proto, linkage: 1 });
  assertEquals(parsed.type(v), { id: v, kind: "VAR", name: "v", typeId: int, linkage: 1 });
  assertEquals(parsed.type(sec), {
    id: sec,
    kind: "DATASEC",
    name: ".data",
    size: 4,
    vars: [{ typeId: v, offset: 0, size: 4 }],
  });
  assertEquals(parsed.type(float), { id: float, kind: "FLOAT", name: "double", size: 8 });
  assertEquals(parsed.type(decl), {
    id: decl,
    kind: "DECL_TAG",
    name: "kfunc",
    typeId: func,
    componentIndex: 0,
  });
  assertEquals(parsed.type(array), {
    id: array,
    kind: "ARRAY",
    name: "",
    typeId: int,
    indexTypeId: 0,
    count: 3,
  });
  assertEquals([parsed.sizeof(array), parsed.sizeof(v), parsed.sizeof(float)], [12, 4, 8]);
  assertThrows(() => parsed.sizeof(func), BtfError, "type 8 (FUNC) has no size");
  assertThrows(() => parsed.sizeof(fwd), BtfError, "type 5 (FWD) has no size");
});
