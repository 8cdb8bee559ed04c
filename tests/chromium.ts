import { type Browser, chromium } from 'playwright-core';

/**
 * Debian's Chromium (installed by scripts/setup.sh), headless, as root, with no background networking:
 * the machine's closed network refuses Chromium's own connections otherwise.
 */
export const launchChromium = (): Promise<Browser> =>
  chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
