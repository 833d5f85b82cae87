/**
 * The hold's rules over a fake cgroup hierarchy (a temporary directory that a made-up mountinfo
 * calls a cgroup mount): which directories may be held, and how a hold starts and ends. The
 * real kernel's freezer is tested in `tests/hold_test.ts`.
 */

import { assert, assertEquals, assertRejects, assertThrows } from "../tests/support/mod.ts";
import { answerHold, Holder, HoldError } from "./hold.ts";
import { type CgroupFacts, resolveHoldCgroup } from "./hold_cgroup.ts";
import { ErrorCode, FrameType, HoldState } from "../protocol/mod.ts";

/** A fake hierarchy at a temporary directory: `fstype` "cgroup2" or "cgroup" (v1 freezer). */
async function fakeHierarchy(fstype: "cgroup2" | "cgroup" = "cgroup2") {
  const root = await Deno.makeTempDir({ prefix: "ebpfmon-hold-" });
  const cg = `${root}/work`;
  await Deno.mkdir(`${cg}/inner`, { recursive: true });
  if (fstype === "cgroup2") {
    await Deno.writeTextFile(`${cg}/cgroup.freeze`, "0\n");
    await Deno.writeTextFile(`${cg}/cgroup.events`, "populated 1\nfrozen 1\n");
  } else {
    await Deno.writeTextFile(`${cg}/freezer.state`, "FROZEN\n");
  }
  let own = fstype === "cgroup2" ? "0::/" : "6:freezer:/\n0::/";
  const facts: CgroupFacts = {
    mountinfo: `22 1 0:21 / /sys rw - sysfs sysfs rw\n` +
      `99 22 0:99 / ${root} rw,relatime shared:9 - ${fstype} cgroup rw` +
      (fstype === "cgroup" ? ",freezer\n" : "\n"),
    selfCgroup: () => own,
    pid: 4242,
  };
  return {
    root,
    cg,
    facts,
    moveAgent(path: string) {
      own = fstype === "cgroup2" ? `0::${path}` : `6:freezer:${path}\n0::/`;
    },
    [Symbol.asyncDispose]: () => Deno.remove(root, { recursive: true }),
  };
}

Deno.test("resolveHoldCgroup() takes a cgroup directory and refuses what is not one", async () => {
  await using h = await fakeHierarchy();
  assertEquals(resolveHoldCgroup(h.cg, h.facts), { dir: h.cg, version: 2, path: "/work" });
  const refused: [string, string][] = [
    ["work", "expected an absolute path"],
    [`${h.cg}/../work`, 'must not have "." or ".." parts'],
    [`${h.root}/missing`, "no such directory"],
    [`${h.cg}/cgroup.freeze`, "it is not a directory"],
    [h.root, "it is the root of its hierarchy"],
    [`${h.cg}/inner`, "it has no cgroup.freeze"],
    ["/sys", "not in a cgroup v2 hierarchy or a v1 freezer hierarchy (it is on a sysfs mount"],
  ];
  for (const [dir, problem] of refused) {
    const error = assertThrows(() => resolveHoldCgroup(dir, h.facts), Error);
    assert(error.message.startsWith(`Cannot hold cgroup "${dir}": `), error.message);
    assert(error.message.includes(problem), `${dir}: ${error.message}`);
  }
});

Deno.test("resolveHoldCgroup() refuses the agent's own cgroup and every one above it", async () => {
  await using h = await fakeHierarchy();
  for (const own of ["/work", "/work/inner", "/work/inner/deeper"]) {
    h.moveAgent(own);
    const error = assertThrows(() => resolveHoldCgroup(h.cg, h.facts), Error);
    assert(error.message.includes(`pid 4242 is in cgroup "${own}"`), error.message);
    assert(error.message.includes("must never freeze itself"), error.message);
  }
  // A sibling whose name starts the same is not below it.
  h.moveAgent("/workers");
  assertEquals(resolveHoldCgroup(h.cg, h.facts).path, "/work");
});

Deno.test("resolveHoldCgroup() reads a v1 freezer hierarchy and the agent's freezer cgroup", async () => {
  await using h = await fakeHierarchy("cgroup");
  assertEquals(resolveHoldCgroup(h.cg, h.facts), { dir: h.cg, version: 1, path: "/work" });
  h.moveAgent("/work");
  assertThrows(() => resolveHoldCgroup(h.cg, h.facts), Error, "must never freeze itself");
  const noFreezer = { ...h.facts, mountinfo: h.facts.mountinfo.replace(",freezer", ",cpu") };
  assertThrows(() => resolveHoldCgroup(h.cg, noFreezer), Error, "v1 freezer hierarchy");
});

Deno.test("Holder holds one owner at a time and thaws on release and when its owner goes", async () => {
  await using h = await fakeHierarchy();
  const holder = Holder.open([h.cg], { facts: h.facts, maxHoldMs: 5000 });
  const freeze = () => Deno.readTextFileSync(`${h.cg}/cgroup.freeze`).trim();
  const a = {}, b = {};
  try {
    const held = await holder.hold(a, 9000);
    assertEquals(held.state, HoldState.HOLDING);
    assertEquals(held.capMs, 5000, "the agent's cap wins over what is asked");
    assertEquals(freeze(), "1");
    const other = await assertRejects(() => holder.hold(b, 100), HoldError);
    assert(other.message.includes("another connection holds"), other.message);
    await assertRejects(() => holder.hold(a, 100), HoldError, "holds the workload already");
    assertEquals(holder.release(b).state, HoldState.NONE, "b holds nothing");
    assertEquals(freeze(), "1");
    const released = holder.release(a);
    assertEquals(released.state, HoldState.RELEASED);
    assert(released.heldNs >= released.freezeNs, JSON.stringify(released));
    assertEquals(freeze(), "0");
    assertEquals(holder.release(a).state, HoldState.NONE, "a second release finds nothing");
    await holder.hold(b, 1000);
    holder.forget(b);
    assertEquals(freeze(), "0", "a closed connection's hold is thawed");
    await holder.hold(a, 1000);
    holder.close();
    assertEquals(freeze(), "0", "closing the agent thaws");
  } finally {
    holder.dispose();
  }
});

Deno.test("Holder thaws when the cap runs out, and the release then says it expired", async () => {
  await using h = await fakeHierarchy();
  const holder = Holder.open([h.cg], { facts: h.facts });
  const owner = {};
  try {
    assertEquals((await holder.hold(owner, 20)).capMs, 20);
    while (Deno.readTextFileSync(`${h.cg}/cgroup.freeze`).trim() !== "0") {
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    const answer = holder.release(owner);
    assertEquals(answer.state, HoldState.EXPIRED);
    assertEquals(answer.capMs, 20);
    assertEquals(holder.release(owner).state, HoldState.NONE);
  } finally {
    holder.dispose();
  }
});

Deno.test("Holder refuses a cgroup frozen by someone else, or holding the agent now", async () => {
  await using h = await fakeHierarchy();
  const holder = Holder.open([h.cg], { facts: h.facts });
  try {
    await Deno.writeTextFile(`${h.cg}/cgroup.freeze`, "1\n");
    await assertRejects(() => holder.hold({}, 100), HoldError, "frozen already, by someone else");
    assertEquals(Deno.readTextFileSync(`${h.cg}/cgroup.freeze`).trim(), "1", "left as it was");
    await Deno.writeTextFile(`${h.cg}/cgroup.freeze`, "0\n");
    h.moveAgent("/work/inner");
    await assertRejects(() => holder.hold({}, 100), HoldError, "must never freeze itself");
    assertEquals(Deno.readTextFileSync(`${h.cg}/cgroup.freeze`).trim(), "0");
  } finally {
    holder.dispose();
  }
});

Deno.test("Holder thaws and refuses when the kernel does not report the cgroup frozen", async () => {
  await using h = await fakeHierarchy();
  await Deno.writeTextFile(`${h.cg}/cgroup.events`, "populated 1\nfrozen 0\n");
  const holder = Holder.open([h.cg], { facts: h.facts });
  try {
    const error = await assertRejects(() => holder.hold({}, 5000), HoldError);
    assert(error.message.includes(`"${h.cg}" did not freeze within 1000 ms`), error.message);
    assert(error.message.includes("the workload is thawed"), error.message);
    assertEquals(error.code, ErrorCode.FAULT);
    assertEquals(Deno.readTextFileSync(`${h.cg}/cgroup.freeze`).trim(), "0");
  } finally {
    holder.dispose();
  }
});

Deno.test("answerHold() answers HELD then END, and an ERROR without cgroups to hold", async () => {
  const none = await answerHold(undefined, {}, { type: FrameType.HOLD, id: 5, maxMs: 100 });
  assertEquals(none.length, 1);
  const [error] = none;
  assert(error.type === FrameType.ERROR && error.code === ErrorCode.UNSUPPORTED, "an ERROR");
  assert(error.message.includes("started without --hold-cgroup"), error.message);
  await using h = await fakeHierarchy();
  const holder = Holder.open([h.cg], { facts: h.facts });
  try {
    const owner = {};
    const held = await answerHold(holder, owner, { type: FrameType.HOLD, id: 6, maxMs: 100 });
    assertEquals(held.map((f) => [f.type, f.id]), [[FrameType.HELD, 6], [FrameType.END, 6]]);
    const released = await answerHold(holder, owner, { type: FrameType.RELEASE, id: 7 });
    assert(released[0].type === FrameType.HELD, "HELD");
    assertEquals(released[0].hold.state, HoldState.RELEASED);
  } finally {
    holder.dispose();
  }
});

Deno.test("Holder.open() refuses a cap outside 1..LIMITS.maxHoldMs", async () => {
  await using h = await fakeHierarchy();
  for (const maxHoldMs of [0, 10_001, 1.5]) {
    assertThrows(() => Holder.open([h.cg], { facts: h.facts, maxHoldMs }), RangeError);
  }
});
