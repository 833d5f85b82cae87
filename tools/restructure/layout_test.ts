import { assertEquals, assertThrows } from "../../tests/support/mod.ts";
import { layoutProblems, layoutTable, tableFolders, withLayoutTable } from "./layout.ts";

const README = [
  "# Project",
  "",
  "| not | this |",
  "| --- | ---- |",
  "",
  "## Layout",
  "",
  "| folder | what |",
  "| ------ | ---- |",
  "| `a/`   | old  |",
  "",
  "## Tests",
  "",
].join("\n");

Deno.test("withLayoutTable() replaces the table under ## Layout and nothing else", () => {
  const next = withLayoutTable(README, layoutTable([["a/", "the a | b"], ["b/", "bees"]]));
  assertEquals(tableFolders(next), ["a/", "b/"]);
  assertEquals(
    next,
    README.replace(
      "| folder | what |\n| ------ | ---- |\n| `a/`   | old  |",
      "| folder | what |\n| --- | --- |\n| `a/` | the a \\| b |\n| `b/` | bees |",
    ),
  );
  assertThrows(() => withLayoutTable("# none\n", "| x |"), TypeError, 'no "## Layout" table');
});

Deno.test("layoutProblems() names the folders the table lacks and those the tree lacks", () => {
  assertEquals(layoutProblems(["a/", "gone/"], ["a/", "b/"]), [
    "README's layout table has no row for b/",
    "README's layout table lists gone/, which is not a folder of the tree",
  ]);
});
