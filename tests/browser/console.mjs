// The console in a real browser (contract §11): Debian's chromium driven by playwright-core.
// Signs in, visits every page (a screenshot of each into $SCREENSHOTS), edits a cluster through
// its preview, reverts that edit from the audit page, plans, creates, starts, pauses and
// resumes a rollout; at 390 px, no page scrolls sideways. Fails on any console error, failed
// request, request to another host, page wider than a phone, or accessibility violation that
// axe-core finds (WCAG 2.1 A and AA).
//
//   BASE=http://127.0.0.1:PORT WRITE_TOKEN=… SCREENSHOTS=dir node tests/browser/console.mjs
import { chromium } from "playwright-core";
import { mkdirSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";

// axe-core, run inside each page (through the DevTools protocol, so the page's strict CSP
// stays as served): WCAG 2.x A and AA rules.
const axeSource = readFileSync(createRequire(import.meta.url).resolve("axe-core/axe.min.js"), "utf8");

const base = process.env.BASE;
const token = process.env.WRITE_TOKEN;
const shots = process.env.SCREENSHOTS ?? "target/screenshots";
mkdirSync(shots, { recursive: true });

const problems = [];
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
});
const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
page.on("console", (message) => {
  if (message.type() === "error") problems.push(`console error: ${message.text()}`);
});
page.on("pageerror", (error) => problems.push(`page error: ${error}`));
page.on("request", (request) => {
  if (!request.url().startsWith(base)) problems.push(`request to another host: ${request.url()}`);
});
page.on("requestfailed", (request) => {
  // A navigation cancels what the page it leaves still loads (the tab icon): not a failure.
  if (request.failure()?.errorText !== "net::ERR_ABORTED") {
    problems.push(`failed: ${request.url()} (${request.failure()?.errorText})`);
  }
});
page.on("response", (response) => {
  if (response.status() >= 500) problems.push(`${response.status()} for ${response.url()}`);
});

async function visit(path, shot, expect) {
  const response = await page.goto(base + path);
  if (!response.ok()) problems.push(`${path}: ${response.status()}`);
  for (const text of expect) {
    if (!(await page.content()).includes(text)) problems.push(`${path}: no "${text}"`);
  }
  await accessible(path);
  if (shot) await page.screenshot({ path: `${shots}/${shot}.png`, fullPage: true });
}

async function accessible(path) {
  await page.evaluate(axeSource);
  const violations = await page.evaluate(async () =>
    (await axe.run(document, { runOnly: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"] })).violations
      .map((v) => `${v.id} (${v.nodes.length}): ${v.help} — ${v.nodes[0]?.target}`));
  for (const violation of violations) problems.push(`${path}: accessibility: ${violation}`);
}

function check(condition, message) {
  if (!condition) problems.push(message);
}

// Sign in: the form, then the fleet.
await visit("/ui/login", "login", ["Sign in"]);
await page.fill('input[name="token"]', token);
await page.click('button[type="submit"]');
await page.waitForURL(base + "/ui/");
check((await page.context().cookies()).some((c) => c.name === "flux_inputs_session" && c.httpOnly && c.sameSite === "Strict"),
  "an HttpOnly, SameSite=Strict session cookie");

await visit("/ui/", "fleet", ["Fleet", "lab-dev-01", "edge-prod-02"]);
await visit("/ui/?environment=prod", null, ["edge-prod-01"]);
await visit("/ui/clusters/edge-qa-01", "cluster", ["Components: desired and reported", "Feeds, as Flux receives them"]);
await visit("/ui/catalog", "catalog", ["Catalog", "cert-manager"]);
await visit("/ui/components/cert-manager", "component", ["Which version runs where", "Rollouts"]);
await visit("/ui/rollouts", "rollouts", ["New rollout"]);
await visit("/ui/audit", "audit", ["Audit"]);
await visit("/ui/tokens", "tokens", ["New token"]);

// An edit through its preview, in the component form: pin cert-manager on lab-dev-01.
await visit("/ui/clusters/lab-dev-01", null, ["Preview the change", "Advanced: the whole cluster as JSON"]);
check(await page.inputValue('input[name="c.0.id"]') === "cert-manager", "the first component row is cert-manager");
await page.fill('input[name="c.0.oci_tag"]', "v1.17.0");
await page.click('button:has-text("Preview the change")');
await page.waitForSelector("text=Nothing is saved yet");
await accessible("the preview");
await page.screenshot({ path: `${shots}/cluster-preview.png`, fullPage: true });
check((await page.content()).includes("<td>cert-manager</td>"), "the preview lists cert-manager as changed");
check((await page.content()).includes("platform_components[cert-manager].oci_tag"), "the preview shows the edited field");
await page.click('button:has-text("Save")');
await page.waitForSelector("text=Saved as audit revision");
const saved = Number(new URL(page.url()).searchParams.get("saved"));
check(saved > 0, "the saved revision is in the URL");

// Revert it from the audit page: it asks first.
await visit("/ui/audit", null, [`revision-${saved}`]);
await page.click(`#revision-${saved} a:has-text("Revert")`);
await page.waitForSelector(`text=Revert revision ${saved}`);
await page.screenshot({ path: `${shots}/audit-revert.png`, fullPage: true });
await page.click(`button:has-text("Revert revision ${saved}")`);
await page.waitForURL(/\/ui\/audit/);
await visit("/ui/clusters/lab-dev-01", null, []);
check(JSON.parse(await page.inputValue('textarea[name="document"]')).platform_components[0].oci_tag === null,
  "the revert put cert-manager back on the catalog tag");

// A rollout: planned first, created, started, paused, resumed.
await visit("/ui/rollouts", null, ["New rollout"]);
await page.fill('textarea[name="spec"]', JSON.stringify({
  id: "cm-browser", component: "cert-manager", target: { oci_tag: "v1.17.0" },
  waves: [{ environment: "dev" }, { environment: "qa" }, { environment: "prod" }], bake_seconds: 30,
}));
await page.click('button:has-text("Plan it")');
await page.waitForSelector("text=Nothing is stored yet");
await page.screenshot({ path: `${shots}/rollout-plan.png`, fullPage: true });
await page.click('button:has-text("Create rollout cm-browser")');
await page.waitForURL(base + "/ui/rollouts/cm-browser");
for (const [button, state] of [["Start", "running"], ["Pause", "paused"], ["Resume", "running"]]) {
  await page.click(`button:has-text("${button}")`);
  await page.waitForSelector(`strong:has-text("${state}")`);
}
await page.screenshot({ path: `${shots}/rollout.png`, fullPage: true });

// Overlays: one made through the API, seen on its page and on a cluster's, edited through
// the same preview as a cluster.
const created = await fetch(base + "/overlays", {
  method: "POST",
  headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
  body: JSON.stringify({
    id: "prod-pins", description: "prod stays on traefik 32", selector: { environment: "prod" },
    platform_components: [{ id: "traefik", oci_tag: "32.1.0" }],
    patches: { traefik: { "deployment.replicas": 3 } },
  }),
});
check(created.status === 201, `the overlay is created (${created.status})`);
await visit("/ui/overlays", "overlays", ["prod-pins", "environment=prod", "prod stays on traefik 32", "32.1.0"]);
check(await page.locator('tr:has-text("prod-pins") td:nth-child(4)').innerText() === "2",
  "the overlays page counts the two prod clusters it matches");
await page.click('a:has-text("prod-pins")');
await page.waitForURL(base + "/ui/overlays/prod-pins");
await visit("/ui/overlays/prod-pins", "overlay", ["2 matched", "edge-prod-01", "edge-prod-02", "deployment.replicas"]);
const overlay = JSON.parse(await page.inputValue('textarea[name="document"]'));
overlay.platform_components[0].oci_tag = "32.2.0";
await page.fill('textarea[name="document"]', JSON.stringify(overlay, null, 2));
await page.click('text=Preview the change');
await page.waitForSelector("text=Nothing is saved yet");
await page.screenshot({ path: `${shots}/overlay-preview.png`, fullPage: true });
const preview = await page.content();
check(preview.includes("alters the feeds of 2 cluster(s)"), "the preview counts both prod clusters");
check(preview.includes("edge-prod-02.k8s.example.com"), "the preview lists edge-prod-02");
await page.click('button:has-text("Save")');
await page.waitForSelector("text=Saved as audit revision");
await visit("/ui/clusters/edge-prod-02", "cluster-layers", ["Values and where they come from", "32.2.0"]);
check(await page.locator('tr:has-text("traefik") >> text=prod-pins').count() > 0,
  "the cluster page says traefik's tag comes from the overlay");

// A laptop screen (1280×800) shows at least 20 clusters of the fleet without scrolling:
// 24 more clusters through the API, then the rows whose bottom is inside the window counted.
for (let i = 1; i <= 24; i++) {
  const id = `shelf-dev-${String(i).padStart(2, "0")}`;
  const created = await fetch(`${base}/clusters`, {
    method: "POST",
    headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
    body: JSON.stringify({ id, cluster_name: id, cluster_dns: `${id}.k8s.example.com`, environment: "dev",
      labels: { site: "shelf", rack: `r${i % 3}` },
      platform_components: [{ id: "cert-manager", enabled: true }, { id: "podinfo", enabled: true }] }),
  });
  check(created.status === 201, `creating ${id}: ${created.status}`);
}
await page.setViewportSize({ width: 1280, height: 800 });
await visit("/ui/", "fleet-laptop", []);
const inView = await page.evaluate(() => [...document.querySelectorAll("main table tbody tr")]
  .filter((row) => row.getBoundingClientRect().bottom <= window.innerHeight).length);
check(inView >= 20, `the fleet shows ${inView} clusters on a 1280×800 screen (at least 20 wanted)`);
console.log(`fleet rows on a 1280×800 screen: ${inView}`);

// A phone: every page fits 390 px without sideways scrolling (a wide table scrolls in its box).
await page.setViewportSize({ width: 390, height: 844 });
for (const path of ["/ui/", "/ui/clusters/edge-qa-01", "/ui/catalog", "/ui/components/cert-manager",
                    "/ui/overlays", "/ui/rollouts",
                    "/ui/rollouts/cm-browser", "/ui/audit", "/ui/tokens"]) {
  await visit(path, null, []);
  const wide = await page.evaluate(() => document.documentElement.scrollWidth);
  check(wide <= 390, `${path}: ${wide} px wide in a 390 px window`);
}
await page.screenshot({ path: `${shots}/phone-tokens.png`, fullPage: true });
await visit("/ui/", "phone-fleet", []);
await visit("/ui/clusters/edge-qa-01", "phone-cluster", []);
await page.setViewportSize({ width: 1280, height: 900 });

// Keyboard: the sign-out button is reachable with Tab.
let reached = false;
for (let i = 0; i < 20 && !reached; i++) {
  await page.keyboard.press("Tab");
  reached = await page.evaluate(() => document.activeElement?.textContent?.trim() === "Sign out");
}
check(reached, "sign-out is reachable with the keyboard");
await page.keyboard.press("Enter");
await page.waitForURL(base + "/ui/login");

await browser.close();
if (problems.length > 0) {
  console.error(problems.join("\n"));
  process.exit(1);
}
console.log(`console: every page, an edit, a revert and a rollout's controls; screenshots in ${shots}`);
