/**
 * The IDS, run outside the guests. `serve.ts` is its composition root: {@linkcode startService}
 * wires the monitor service (`service/`), the alert store (`alerts/`) and the REST API (`api/`,
 * with the web console) together and serves them; `main.ts` is the `ebpfmon-ids` program (its
 * commands are in `cli/`). The parts are folders of their own, each with its `mod.ts`: the agent
 * client and sessions (`client/`), guest memory (`memory/`), the BTF parser (`btf/`), kernel
 * layouts and walk plans (`kernel/`), the Linux views (`linux/`), detection (`detect/`).
 *
 * ```ts
 * import { startService } from "./mod.ts";
 *
 * await using service = await startService(config);
 * console.log(service.url, service.tokenFile);
 * ```
 *
 * @module
 */

export { serveCommand, startService } from "./serve.ts";
