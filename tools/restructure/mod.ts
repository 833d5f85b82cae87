/**
 * The project's module layout, as a rule and as a tool. {@linkcode checkTree} reports every
 * import that breaks the rules (`tests/structure_test.ts` runs it in the test command);
 * `apply.ts` moves files by the table of `moves.json`, rewrites what refers to them, and routes
 * every import of another folder through that folder's `mod.ts`:
 *
 * ```sh
 * deno run -A tools/restructure/apply.ts   # then: deno run -A tools/restructure/check.ts
 * ```
 *
 * @module
 */

export { checkTree, SKIPPED, TOP_LEVEL, type Violation } from "./check.ts";
