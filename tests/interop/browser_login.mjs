// Drives headless Chromium through a browser login on oidc-provider's own pages
// (server.mjs with "dev_interactions": true): opens the authorization URL, signs in, consents,
// and follows the redirect to the client's loopback listener.
//
// Usage: node browser_login.mjs <authorization-url> <redirect-uri-prefix> <login>
//
// Prints `REACHED <url>` and the page text once the browser is at the redirect URI, then exits
// 0; exits 1 with the last page's text on stderr otherwise. CHROMIUM names the browser binary
// (default /usr/bin/chromium). Chromium runs with a new, empty profile directory, removed at
// the end.

import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { chromium } from 'playwright-core';

const [url, redirectPrefix, login] = process.argv.slice(2);
if (!url || !redirectPrefix || !login) {
  process.stderr.write('usage: node browser_login.mjs <url> <redirect-uri-prefix> <login>\n');
  process.exit(2);
}

const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'agent-oauth-chromium-'));
let context;
let code = 1;
try {
  context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
    timeout: 60_000,
  });
  const page = context.pages()[0] ?? await context.newPage();
  page.setDefaultTimeout(30_000);
  await page.goto(url);
  for (let step = 0; step < 6; step += 1) {
    if (page.url().startsWith(redirectPrefix)) break;
    if (await page.locator('input[name=login]').count()) {
      await page.fill('input[name=login]', login);
      await page.fill('input[name=password]', 'any-password');
      await Promise.all([page.waitForNavigation(), page.click('button[type=submit]')]);
    } else if (await page.locator('button[type=submit]').count()) {
      await Promise.all([page.waitForNavigation(), page.locator('button[type=submit]').first().click()]);
    } else {
      break;
    }
  }
  const text = await page.locator('body').innerText().catch(() => '');
  if (page.url().startsWith(redirectPrefix)) {
    process.stdout.write(`REACHED ${page.url()}\n${text}\n`);
    code = 0;
  } else {
    process.stderr.write(`browser stopped at ${page.url()}:\n${text}\n`);
  }
} catch (err) {
  process.stderr.write(`browser login failed: ${err.stack || err}\n`);
} finally {
  if (context) await context.close().catch(() => {});
  fs.rmSync(profile, { recursive: true, force: true });
}
process.exit(code);
