/**
 * What the tests of the API and of what it serves share: an in-memory {@linkcode FakeMonitor}
 * with guests, views and a clock the test sets, sample objects ({@linkcode fakeProcess}...), the
 * token the test apps accept and the check of error bodies ({@linkcode assertError}).
 *
 * @module
 */

export { fakeFile, fakeModule, FakeMonitor, fakeProcess, fakeSocket } from "./fake_monitor.ts";
export { assertError, AUTH, TOKEN } from "./helpers.ts";
