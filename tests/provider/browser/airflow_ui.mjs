// Looks at a running Airflow deployment as a person does, in Debian's Chromium (headless), driven by
// playwright-core: logs in, opens a failed task's log, a successful task's log, its "Spark application"
// link and its documentation, its Rendered Templates, and the connections page and form. Writes a
// screenshot of each page to the artifacts folder and prints what the pages show as one JSON line
// (`UI_REPORT {...}`), which tests/provider/test_deployment.py checks.
//
//   node airflow_ui.mjs SPEC.json
//
// SPEC: {"url", "user", "password", "artifacts", "chromium", "failed": {"dag", "run", "task"},
//        "succeeded": {"dag", "run", "task"}, "connection_id"}
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';

const spec = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const report = {};
const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'sparkpipe-chromium-'));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: spec.chromium,
  headless: true,
  args: [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
  ],
  viewport: { width: 1400, height: 1000 },
});
context.setDefaultTimeout(60000);
const page = context.pages()[0] ?? (await context.newPage());
const shot = async (name, options = {}) => {
  const file = path.join(spec.artifacts, name);
  await page.screenshot({ path: file, ...options });
  return file;
};
const taskPage = (t) => `${spec.url}/dags/${t.dag}/runs/${encodeURIComponent(t.run)}/tasks/${t.task}`;

try {
  // Log in with the Simple auth manager's form.
  await page.goto(`${spec.url}/`);
  await page.locator('input[type=password]').waitFor();
  await shot('01-login.png');
  await page.locator('input[name=username]').fill(spec.user);
  await page.locator('input[type=password]').fill(spec.password);
  await page.locator('button[type=submit]').click();
  await page.getByTestId('nav-dags-link').waitFor();
  report.login = { landed: page.url() };

  // A task's log: each line as shown (with its level), the sources the filter offers.
  const readLog = async (task, name, sourcesShot) => {
    await page.setViewportSize({ width: 1400, height: 2200 }); // the log list renders what is on screen
    await page.goto(taskPage(task));
    await page.getByTestId('virtualized-list').waitFor();
    await page.getByText('Post Execute').waitFor();
    await page.getByTestId('log-settings-button').click();
    const wrap = page.getByRole('menuitem', { name: /^(Wrap|Unwrap)/ });
    if ((await wrap.innerText()).startsWith('Wrap')) await wrap.click(); // the choice is remembered
    else await page.keyboard.press('Escape');
    const lines = await page.getByTestId('virtualized-list').locator('[data-testid^=virtualized-item]').allInnerTexts();
    await page.getByRole('combobox').filter({ hasText: 'All Sources' }).click();
    const sources = await page.getByRole('option').allInnerTexts();
    await page.keyboard.press('Escape');
    const file = await shot(name, { fullPage: true });
    if (sourcesShot) {
      // Each line's source (logger) shown: Spark's lines are "spark".
      await page.getByTestId('log-settings-button').click();
      await page.getByRole('menuitem', { name: /^Show Source/ }).click();
      await shot(sourcesShot, { fullPage: true });
      await page.getByTestId('log-settings-button').click();
      await page.getByRole('menuitem', { name: /^Hide Source/ }).click();
    }
    await page.setViewportSize({ width: 1400, height: 1000 });
    return { lines, sources, screenshot: file };
  };
  report.failed_log = await readLog(spec.failed, '02-failed-task-log.png', '02-failed-task-log-sources.png');
  report.succeeded_log = await readLog(spec.succeeded, '03-succeeded-task-log.png');

  // The "Spark application" link (the task instance's Details) and the page it opens.
  await page.goto(`${taskPage(spec.succeeded)}/details`);
  const link = page.getByRole('link', { name: 'Spark application' });
  await link.waitFor();
  const href = await link.getAttribute('href');
  await shot('04-spark-application-link.png');
  const [opened] = await Promise.all([context.waitForEvent('page'), link.click()]);
  await opened.waitForLoadState();
  let answered = await opened.evaluate(() => document.body.innerText);
  for (let i = 0; i < 60 && !answered.includes('Completed Jobs'); i++) {
    // The history server picks new event logs up on its next scan.
    await opened.waitForTimeout(1000);
    await opened.reload();
    answered = await opened.evaluate(() => document.body.innerText);
  }
  await opened.screenshot({ path: path.join(spec.artifacts, '05-spark-application.png') });
  report.link = { href, opened: opened.url(), title: await opened.title(), text: answered.slice(0, 3000) };
  await opened.close();

  // The task's documentation: the plan.
  await page.goto(`${spec.url}/dags/${spec.succeeded.dag}/tasks/${spec.succeeded.task}`);
  await page.getByTestId('markdown-button').click();
  const dialog = page.getByRole('dialog');
  await dialog.locator('table').first().waitFor();
  const tables = await dialog.locator('table').evaluateAll((found) =>
    found.map((table) => [...table.rows].map((row) => [...row.cells].map((cell) => cell.innerText.trim()))),
  );
  const box = await dialog.boundingBox();
  const overflow = await dialog.evaluate((node) => {
    const body = node.querySelector('[data-part=body]') ?? node;
    return body.scrollWidth - body.clientWidth;
  });
  await shot('06-task-documentation.png');
  report.documentation = { text: await dialog.innerText(), tables, width: box?.width, overflow };

  // Rendered Templates: the effective config.
  await page.goto(`${taskPage(spec.succeeded)}/rendered_templates`);
  await page.getByText('The effective config', { exact: false }).first().waitFor();
  report.rendered = { text: await page.getByTestId('main-content').innerText() };
  await shot('07-rendered-templates.png', { fullPage: true });

  // The returned metrics, as the XCom view shows them.
  await page.goto(`${taskPage(spec.succeeded)}/xcom`);
  await page.getByText('return_value', { exact: true }).waitFor();
  await page.getByRole('button', { name: 'Expand all extra JSON' }).click();
  await page.getByText('"outcome"', { exact: false }).first().waitFor();
  report.xcom = { text: await page.getByTestId('main-content').innerText() };
  await shot('08-xcom.png');

  // Connections: the examples' connection is listed; the form for a new one.
  await page.goto(`${spec.url}/connections`);
  await page.getByText(spec.connection_id, { exact: true }).waitFor();
  report.connections = { listed: await page.getByTestId('main-content').innerText() };
  await shot('09-connections.png');
  await page.getByText('Add Connection', { exact: true }).click();
  const form = page.getByRole('dialog');
  await form.locator('input[name=connection_id]').fill(spec.new_connection_id);
  const type = form.getByRole('combobox').first();
  await type.click();
  await page.keyboard.type('sparkpipe');
  await page.keyboard.press('Enter');
  await form.getByText('Extra Fields', { exact: true }).click();
  const runtime = form.locator('#element_runtime');
  await runtime.waitFor();
  report.form = {
    runtime_shown: await runtime.innerText(),
    height: (await form.boundingBox())?.height,
    text: await form.innerText(),
  };
  await runtime.click();
  report.form.runtime_choices = await page.getByRole('option').allInnerTexts();
  await page.getByRole('option').first().click(); // a person picks one (Escape would close the form)
  await shot('10-connection-form.png', { fullPage: true });
  await page.getByRole('button', { name: 'Save' }).click();
  await page.getByText(spec.new_connection_id, { exact: true }).waitFor();
} catch (error) {
  report.error = String(error?.stack ?? error);
  await shot('99-error.png').catch(() => {});
} finally {
  await context.close();
  fs.rmSync(profile, { recursive: true, force: true });
}
console.log(`UI_REPORT ${JSON.stringify(report)}`);
