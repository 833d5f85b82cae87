/**
 * The web console in a real browser (Debian's Chromium, driven by puppeteer-core) against the
 * real service monitoring a real local agent: the login refuses a wrong token, the guest shows
 * as up, test processes show in the process tree under their parent, a process named as HTML is
 * shown as text, a BPF program and a listener the test opens raise alerts that the open page
 * shows as new without a reload, and the agent going down is said plainly.
 *
 * Screenshots of the three views go to `tests/out/`; with `EBPFMON_UPDATE_DOCS=1` the guest
 * view is also written to `docs/console.png`, the README's image.
 */

import puppeteer, { type Page } from "puppeteer-core";
import {
  assert,
  assertEquals,
  eventually,
  freePort,
  missingPrivilege,
  requiringTest,
  TestProcesses,
} from "./support/mod.ts";
import { loadTestProgram, unloadTestProgram } from "./bpf_fixture.ts";
import { spawnAgent } from "../agent/mod.ts";
import { serveConfig } from "./serve.ts";
import { openSession } from "../ids/client/mod.ts";
import { runCheck } from "../ids/detect/mod.ts";

const CHROMIUM = Deno.env.get("EBPFMON_CHROMIUM") ?? "/usr/bin/chromium";
const OUT = new URL("./out/", import.meta.url);
const DOCS_IMAGE = new URL("../docs/console.png", import.meta.url);
/** The guest's refresh interval: one scan, then this long before the next. */
const REFRESH_MS = 1000;
/** A comm that is HTML: an element if the page parsed it, a request for `x` if it loaded it. */
const HTML_COMM = "<img src=x>";

function missingBrowser(): string | null {
  try {
    Deno.statSync(CHROMIUM);
    return null;
  } catch {
    return `needs Chromium at ${CHROMIUM} (./dev setup installs Debian's chromium)`;
  }
}

/** Starts `sleep` under the name `comm` (a symlink), in `dir`. */
async function sleeper(dir: string, comm: string): Promise<Deno.ChildProcess> {
  const path = `${dir}/${comm}`;
  await Deno.symlink("/usr/bin/sleep", path);
  const child = new Deno.Command(path, {
    args: ["600"],
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  await eventually("the HTML-named process", async () => {
    const name = await Deno.readTextFile(`/proc/${child.pid}/comm`).catch(() => "");
    return name.trim() === comm || undefined;
  });
  return child;
}

/** The tags of the BPF programs this machine loaded at boot, allow-listed as an operator would. */
async function bootProgramTags(agent: string, state: string): Promise<string[]> {
  using session = await openSession({ agent, state });
  const bpf = (await runCheck(session, "prefetch")).scan.sections.bpf;
  return bpf?.supported ? bpf.value.programs.filter((p) => !p.own).map((p) => p.tag) : [];
}

async function screenshot(page: Page, name: string): Promise<Uint8Array> {
  await Deno.mkdir(OUT, { recursive: true });
  const image = await page.screenshot({ type: "png" });
  await Deno.writeFile(new URL(`${name}.png`, OUT), image);
  return image;
}

/** The text of the element at `selector`, once there (waiting for it). */
async function textOf(page: Page, selector: string): Promise<string> {
  const element = await page.waitForSelector(selector);
  return await element!.evaluate((node) => node.textContent ?? "");
}

requiringTest(
  "console: login, guests, the process tree, live alerts, HTML names as text, agent down",
  missingPrivilege() ?? missingBrowser(),
  async () => {
    const state = await Deno.makeTempDir({ prefix: "ebpfmon-console-" });
    const agentAddress = `127.0.0.1:${freePort()}`;
    const agent = await spawnAgent({ stateDir: state, listen: agentAddress });
    let agentUp = true;
    try {
      const allow = await bootProgramTags(agentAddress, state);
      await using processes = await TestProcesses.start("ebpfmon-con", [0, 65534]);
      const dir = await Deno.makeTempDir({ prefix: "ebpfmon-console-html-" });
      const html = await sleeper(dir, HTML_COMM);
      await using serve = await serveConfig(state, {
        listen: "127.0.0.1:0",
        stateDir: state,
        rules: { bpf_program: { allow } },
        alerts: { resolveAfter: 2 },
        guests: [{ name: "vm1", agent: agentAddress, refreshMs: REFRESH_MS }],
      });
      const fetches = async () =>
        (await (await serve.request("/v1/vms/vm1/stats")).json()).fetches as number;
      // Closed before the service stops: it waits for the page's alert stream to end.
      await using browser = await puppeteer.launch({
        executablePath: CHROMIUM,
        pipe: true,
        args: ["--no-sandbox", "--disable-dev-shm-usage"],
      });
      try {
        const page = await browser.newPage();
        await page.setViewport({ width: 1280, height: 900 });
        // Scans slow down when this machine is busy: waits are bounded, generously.
        page.setDefaultTimeout(90_000);
        const dialogs: string[] = [];
        const problems: string[] = [];
        const requests: string[] = [];
        page.on("dialog", (dialog) => {
          dialogs.push(dialog.message());
          dialog.dismiss();
        });
        page.on("pageerror", (error) => problems.push(`page error: ${error}`));
        // Errors the page logs (a refused script or style, a failed module), but the browser's
        // own line for each 401 the wrong tokens get.
        page.on("console", (message) => {
          const text = message.text();
          if (message.type() === "error" && !/status of 401 \(Unauthorized\)/.test(text)) {
            problems.push(`console: ${text}`);
          }
        });
        page.on("request", (request) => requests.push(new URL(request.url()).pathname));

        // The login form, and nothing of the console, without the token.
        await page.goto(serve.url);
        await page.waitForSelector("#login:not([hidden])");
        assertEquals(await page.$eval("#app", (app) => app.childElementCount), 0);
        const bare = await fetch(`${serve.url}/console/app.json`);
        assertEquals(bare.status, 401);
        await bare.body?.cancel();

        // A wrong token: refused, the form again, nothing kept.
        await page.type("#token", "not-the-token");
        await page.click("#login button");
        await page.waitForSelector('#login-message ::-p-text("The API refused this token")');
        assertEquals(await page.$eval("#login", (form) => form.hasAttribute("hidden")), false);
        assertEquals(await page.evaluate(() => sessionStorage.getItem("ebpfmon.token")), null);

        // The token: the guests view, vm1 up.
        await page.type("#token", serve.token);
        await page.click("#login button");
        await page.waitForSelector('tr[data-vm="vm1"] [data-state="up"]');
        await page.waitForSelector("#login", { hidden: true });
        assertEquals(
          await page.evaluate(() => sessionStorage.getItem("ebpfmon.token")),
          serve.token,
        );
        assertEquals(await page.evaluate("document.cookie"), "");
        assert(requests.every((path) => !path.includes(serve.token)), "the token is in no URL");
        await page.waitForSelector('tr[data-vm="vm1"] td:last-child ::-p-text(prefetch)');
        await screenshot(page, "console-guests");

        // The guest: the test processes under their parent, the HTML name as text.
        await page.click('a[href="#/vm/vm1"]');
        for (const { name, uid, process } of processes.children) {
          const item = `li[data-pid="${Deno.pid}"] > ul > li[data-pid="${process.pid}"] > .row`;
          assertEquals(await textOf(page, `${item} .comm`), name);
          assertEquals(await textOf(page, `${item} .uid`), String(uid));
        }
        const htmlRow = `li[data-pid="${Deno.pid}"] > ul > li[data-pid="${html.pid}"] > .row`;
        assertEquals(await textOf(page, `${htmlRow} .comm`), HTML_COMM);
        assertEquals(await page.$eval(`${htmlRow} .comm`, (comm) => comm.childElementCount), 0);
        assertEquals(await page.$$eval("img", (images) => images.length), 0);

        // A process's open files on click: sleep's stdin is /dev/null.
        const first = processes.children[0].process.pid;
        const openFiles = async () => {
          await page.click(`li[data-pid="${first}"] > .row .comm`);
          await page.waitForSelector('aside.files ::-p-text("/dev/null")');
        };
        await openFiles();
        assertEquals(await Deno.readLink(`/proc/${first}/fd/0`), "/dev/null");

        // Alerts, live: a BPF program and a listener opened while the page is open.
        await page.click('a[data-nav="alerts"]');
        await page.waitForSelector('[data-view="alerts"]');
        await page.evaluate(() => Object.assign(globalThis, { sameDocument: true }));
        const pin = `/sys/fs/bpf/ebpfmon-console-${Deno.pid}`;
        const program = await loadTestProgram(dir, pin);
        const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
        const port = (listener.addr as Deno.NetAddr).port;
        try {
          const before = await fetches();
          const alert =
            `li.alert[data-fresh][data-subject="bpf prog ${program.id} ${program.name}"]`;
          await page.waitForSelector(alert);
          // Seen by the scan after the load (or the one under way), at most two refreshes.
          assert((await fetches()) - before <= 2, "the alert was on the page within two scans");
          assertEquals(await page.evaluate(() => "sameDocument" in globalThis), true);
          assertEquals(await textOf(page, `${alert} .new-mark`), "new");
          await page.waitForSelector(`li.alert[data-fresh][data-subject="tcp 127.0.0.1:${port}"]`);
          // Other new alerts may come (this machine is the guest: anyone may open a listener).
          const fresh = async () => Number((await textOf(page, ".fresh-count")).split(" ")[0]);
          const unseen = await fresh();
          assert(unseen >= 2, `${unseen} new`);
          await page.click(`${alert} .alert-head`);
          assertEquals(await fresh(), unseen - 1);
          const body = await textOf(page, `${alert.replace("[data-fresh]", "")} .alert-body`);
          assert(body.includes(program.tag) && body.includes("opened"), body);
          await screenshot(page, "console-alerts");

          // The listener's owner carries the alert's mark in the tree.
          await page.evaluate(() => location.hash = "#/vm/vm1");
          await page.waitForSelector(`li.marked[data-pid="${Deno.pid}"] > .row .marks .severity`);
          assertEquals(
            await textOf(page, `li[data-pid="${Deno.pid}"] > .row .marks`),
            "new_listener",
          );
          await openFiles();
          await page.evaluate("scrollTo(0, 0)");
          const guestImage = await screenshot(page, "console-guest");
          if (Deno.env.get("EBPFMON_UPDATE_DOCS") === "1") {
            await Deno.mkdir(new URL(".", DOCS_IMAGE), { recursive: true });
            await Deno.writeFile(DOCS_IMAGE, guestImage);
          }

          // The sockets: the test's listener, owned by the test. The modules: none on a kernel
          // without loadable modules (no /proc/modules), else the first /proc/modules lists.
          await page.click('button[data-tab="sockets"]');
          const socket = `[data-view="guest"] .content tr ::-p-text("127.0.0.1:${port}")`;
          const row = await (await page.waitForSelector(socket))!.evaluate((cell) =>
            cell.closest("tr")!.textContent
          );
          assert(row.includes(`${Deno.pid} (deno)`) && row.includes("LISTEN"), row);
          await page.click('button[data-tab="modules"]');
          const modules = await Deno.readTextFile("/proc/modules").catch(() => undefined);
          const listed = modules?.split(" ")[0];
          const said = listed === undefined
            ? '.content .banner.info ::-p-text("This kernel has no loadable modules")'
            : `.content td ::-p-text("${listed}")`;
          await page.waitForSelector(`[data-view="guest"] ${said}`);
        } finally {
          listener.close();
          await unloadTestProgram(pin, program.id).catch(() => {});
        }

        // The agent down: said on the guests row and the guest's view, the last snapshot kept.
        await agent[Symbol.asyncDispose]();
        agentUp = false;
        await page.waitForSelector('[data-view="guest"] .guest-head .banner.warning');
        const banner = await textOf(page, '[data-view="guest"] .guest-head .banner.warning');
        assert(banner.startsWith("The agent is down since"), banner);
        assert(banner.includes("The views show the last snapshot"), banner);
        await page.click('a[data-nav="guests"]');
        await page.waitForSelector('tr[data-vm="vm1"] [data-state="down"]');

        // A token the API no longer takes: the login again.
        await page.evaluate(() => sessionStorage.setItem("ebpfmon.token", "stale-token"));
        await page.reload();
        await page.waitForSelector('#login-message ::-p-text("The API refused this token")');
        assertEquals(await page.$eval("#app", (app) => app.childElementCount), 0);

        assertEquals(dialogs, [], "no dialog opened");
        assert(!requests.some((path) => path.endsWith("/x")), "the HTML name loaded nothing");
        assertEquals(problems, []);
      } finally {
        html.kill("SIGKILL");
        await html.status;
        await Deno.remove(dir, { recursive: true });
      }
    } finally {
      if (agentUp) await agent[Symbol.asyncDispose]();
      await Deno.remove(state, { recursive: true });
    }
  },
);
