/** Merging the named imports of one module into one statement. */

import { assertEquals } from "../../tests/support/mod.ts";
import { mergeImports } from "./_statements.ts";

Deno.test("mergeImports() merges the named imports of one module into the first", () => {
  const text = [
    'import type { A } from "../a/mod.ts";',
    'import { z } from "./z.ts";',
    'import { b, type C } from "../a/mod.ts";',
    'import TEXT from "../a/mod.ts";',
    "",
  ].join("\n");
  assertEquals(
    mergeImports("b/x.ts", text, new Map()),
    [
      'import { type A, b, type C } from "../a/mod.ts";',
      'import { z } from "./z.ts";',
      'import TEXT from "../a/mod.ts";',
      "",
    ].join("\n"),
  );
  assertEquals(mergeImports("b/x.ts", 'import { z } from "./z.ts";\n', new Map()), undefined);
});
