import { fileURLToPath } from "node:url";
import { assertEquals } from "./support/mod.ts";
import { checkTree } from "../tools/restructure/mod.ts";

Deno.test("every import keeps to the module rules, and the README's layout table to the tree", async () => {
  const violations = await checkTree(fileURLToPath(new URL("..", import.meta.url)));
  assertEquals(violations.map((v) => v.message), []);
});
