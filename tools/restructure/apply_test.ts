import { join } from "node:path";
import { assertEquals } from "../../tests/support/mod.ts";
import { apply, plan } from "./apply.ts";
import { checkTree } from "./check.ts";

const FILES: Record<string, string> = {
  "deno.json": "{}\n",
  "README.md": [
    "# t",
    "",
    "Run `deno run ids/loose.ts`.",
    "",
    "## Layout",
    "",
    "| folder | what |",
    "| ------ | ---- |",
    "",
  ].join("\n"),
  "ids/main.ts": 'import { loose } from "./loose.ts";\n\nloose();\n',
  "ids/loose.ts": "/** Loose. */\nexport function loose(): void {}\n",
  "ids/loose_test.ts":
    'import { loose } from "./loose.ts";\n\nDeno.test("loose", () => loose());\n',
  "other/user.ts": 'import { loose } from "../ids/loose.ts";\n\nexport const use = loose;\n',
  "other/spawn.ts": 'export const MAIN = new URL("../ids/loose.ts", import.meta.url);\n',
  "tools/restructure/moves.json": JSON.stringify({ "ids/loose.ts": "ids/part/loose.ts" }),
  "tools/restructure/modules.json": JSON.stringify({ "ids/part": ["The part."] }),
  "tools/restructure/layout.json": JSON.stringify([
    ["ids/", "the IDS"],
    ["ids/part/", "the part"],
    ["other/", "others"],
    ["tools/", "tools"],
  ]),
};

async function git(root: string, ...args: string[]): Promise<void> {
  const { code } = await new Deno.Command("git", {
    args,
    cwd: root,
    stdout: "null",
    stderr: "null",
  })
    .output();
  assertEquals(code, 0, `git ${args.join(" ")}`);
}

Deno.test("apply() moves, rewrites and routes so that the rules hold, and a second run changes nothing", async () => {
  const root = await Deno.makeTempDir();
  try {
    for (const [path, text] of Object.entries(FILES)) {
      await Deno.mkdir(join(root, path, ".."), { recursive: true });
      await Deno.writeTextFile(join(root, path), text);
    }
    await git(root, "init", "-q");
    await git(root, "add", ".");
    const first = await plan(root);
    assertEquals(first.problems, []);
    assertEquals([...first.moves], [
      ["ids/loose.ts", "ids/part/loose.ts"],
      ["ids/loose_test.ts", "ids/part/loose_test.ts"],
    ]);
    await apply(root, first);
    assertEquals((await checkTree(root)).map((v) => v.message), []);
    const read = (path: string) => Deno.readTextFile(join(root, path));
    assertEquals(await read("ids/main.ts"), 'import { loose } from "./part/mod.ts";\n\nloose();\n');
    assertEquals(
      await read("other/spawn.ts"),
      'export const MAIN = new URL("../ids/part/loose.ts", import.meta.url);\n',
    );
    assertEquals(
      await read("ids/part/mod.ts"),
      '/**\n * The part.\n *\n * @module\n */\n\nexport { loose } from "./loose.ts";\n',
    );
    assertEquals((await read("README.md")).split("\n").slice(2, 12), [
      "Run `deno run ids/part/loose.ts`.",
      "",
      "## Layout",
      "",
      "| folder      | what     |",
      "| ----------- | -------- |",
      "| `ids/`      | the IDS  |",
      "| `ids/part/` | the part |",
      "| `other/`    | others   |",
      "| `tools/`    | tools    |",
    ]);
    const second = await plan(root);
    assertEquals([second.moves.size, [...second.writes.keys()], second.problems], [0, [], []]);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
